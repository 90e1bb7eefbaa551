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

/// The statement that announces `payload`, delivered at the commit of its transaction. Payloads
/// are built from UUIDs and fixed words only: nothing to quote.
pub fn notify(payload: &str) -> String {
    format!("NOTIFY {CHANNEL}, '{payload}'")
}
