mod helpers;

mod admin;
mod audit;
mod browser;
mod cli;
mod robustness;
mod session;
mod storage;
mod tokens;
mod web;
