//! SeaORM entities mirroring the migrations. Data only; behaviour lives in `services/`.
pub mod audit_events;
pub mod login_attempts;
pub mod pairings;
pub mod token_usage;
pub mod tokens;
pub mod users;
