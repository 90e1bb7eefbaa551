//! SeaORM entities mirroring the migrations. Data only; behaviour lives in `services/`.
pub mod tokens;
pub mod users;
