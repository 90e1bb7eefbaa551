//! The channel that revocations travel on between instances, and how a token's revocation is
//! written in it: shared by `revocations` (which announces every finished change) and `lookup`
//! (which retires a rotated key from the verification path, where `Revocations` cannot be
//! reached). On PostgreSQL a `NOTIFY`; on MariaDB a row of `revocation_log`, polled by every
//! instance (`revocations::poll`); SQLite has no other instance to tell. Either way the
//! announcement is part of the transaction: delivered at its commit, never before, and not at
//! all on rollback.

use sea_orm::{ConnectionTrait, DbBackend, DbErr};
use uuid::Uuid;

/// The PostgreSQL notification channel revocations are announced on.
pub const CHANNEL: &str = "multitoken_revocations";

/// The payload announcing that token `id` changed: every instance drops what it cached of it.
pub fn token_payload(id: Uuid) -> String {
    format!("token:{id}")
}

/// Announces `payload` inside the transaction `txn`, with the time it was sent (`@` and
/// milliseconds since the epoch), so that listeners can tell how long delivery took. Payloads
/// are built from UUIDs, fixed words and digits only: nothing to quote.
pub async fn announce(txn: &impl ConnectionTrait, payload: &str) -> Result<(), DbErr> {
    let sent = chrono::Utc::now().timestamp_millis();
    match txn.get_database_backend() {
        DbBackend::Postgres => {
            txn.execute_unprepared(&format!("NOTIFY {CHANNEL}, '{payload}@{sent}'"))
                .await?;
        }
        DbBackend::MySql => {
            txn.execute_unprepared(&format!(
                "INSERT INTO revocation_log (payload) VALUES ('{payload}@{sent}')"
            ))
            .await?;
        }
        _ => {}
    }
    Ok(())
}

/// A payload as sent, and when (absent from a payload of an older instance).
pub fn sent_at(payload: &str) -> (&str, Option<i64>) {
    match payload.rsplit_once('@') {
        Some((payload, millis)) => (payload, millis.parse().ok()),
        None => (payload, None),
    }
}
