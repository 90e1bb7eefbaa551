mod helpers;
// Shared with the other test binary; each uses a part of it.
#[allow(dead_code)]
#[path = "../common/test_database.rs"]
mod test_database;

mod admin;
mod audit;
mod browser;
mod burst;
mod caddy;
mod checkboxes;
mod cli;
mod forms;
mod instances;
mod last_used;
mod me;
mod names;
mod nginx;
mod pairing;
mod policy;
mod prometheus;
mod rate_limit;
mod robustness;
mod rotation;
mod security;
mod session;
mod storage;
mod throttle;
mod tokens;
mod upstream;
mod usage;
mod verify;
mod web;
