//! Database schema migrations. Each migration runs unchanged on SQLite, PostgreSQL and MariaDB;
//! the last one adjusts what the schema helpers make on MariaDB (times, character set).
pub use sea_orm_migration::prelude::*;

mod m20261129_000001_create_users;
mod m20261129_000002_create_tokens;
mod m20261129_000003_create_audit_events;
mod m20261129_000004_create_login_attempts;
mod m20261202_000005_add_name_skeletons;
mod m20261202_000006_add_token_policy;
mod m20261202_000007_index_audit_events_by_target;
mod m20261203_000008_add_previous_key;
mod m20261203_000009_create_pairings;
mod m20261203_000010_add_rate_limit;
mod m20261203_000011_create_token_usage;
mod m20261203_000012_add_audit_repeats;
mod m20261203_000013_mariadb;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261129_000001_create_users::Migration),
            Box::new(m20261129_000002_create_tokens::Migration),
            Box::new(m20261129_000003_create_audit_events::Migration),
            Box::new(m20261129_000004_create_login_attempts::Migration),
            Box::new(m20261202_000005_add_name_skeletons::Migration),
            Box::new(m20261202_000006_add_token_policy::Migration),
            Box::new(m20261202_000007_index_audit_events_by_target::Migration),
            Box::new(m20261203_000008_add_previous_key::Migration),
            Box::new(m20261203_000009_create_pairings::Migration),
            Box::new(m20261203_000010_add_rate_limit::Migration),
            Box::new(m20261203_000011_create_token_usage::Migration),
            Box::new(m20261203_000012_add_audit_repeats::Migration),
            Box::new(m20261203_000013_mariadb::Migration),
        ]
    }
}
