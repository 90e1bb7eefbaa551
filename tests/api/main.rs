mod helpers;

mod admin;
mod cli;
mod robustness;
mod session;
mod storage;
mod tokens;
