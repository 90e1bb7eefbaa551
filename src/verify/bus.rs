//! The PostgreSQL channel that revocations travel on, and how a token's revocation is written in
//! it: shared by `revocations` (which announces every finished change) and `lookup` (which
//! retires a rotated key from the verification path, where `Revocations` cannot be reached).

use uuid::Uuid;

/// The PostgreSQL notification channel revocations are announced on.
pub const CHANNEL: &str = "multitoken_revocations";

/// The payload announcing that token `id` changed: every instance drops what it cached of it.
pub fn token_payload(id: Uuid) -> String {
    format!("token:{id}")
}

/// The statement that announces `payload`, delivered at the commit of its transaction, with
/// the time it was sent (`@` and milliseconds since the epoch), so that listeners can tell how
/// long delivery took. Payloads are built from UUIDs, fixed words and digits only: nothing to
/// quote.
pub fn notify(payload: &str) -> String {
    let sent = chrono::Utc::now().timestamp_millis();
    format!("NOTIFY {CHANNEL}, '{payload}@{sent}'")
}

/// A payload as sent, and when (absent from a payload of an older instance).
pub fn sent_at(payload: &str) -> (&str, Option<i64>) {
    match payload.rsplit_once('@') {
        Some((payload, millis)) => (payload, millis.parse().ok()),
        None => (payload, None),
    }
}
