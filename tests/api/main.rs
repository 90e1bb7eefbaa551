mod helpers;

mod admin;
mod audit;
mod browser;
mod cli;
mod instances;
mod last_used;
mod nginx;
mod robustness;
mod session;
mod storage;
mod throttle;
mod tokens;
mod verify;
mod web;
