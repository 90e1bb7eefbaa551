//! What the two direct lookups (`sqlite`, `postgres`) share: the one statement of a cache miss,
//! and why a direct path could not answer (the caller then asks through the shared pool).

/// The token with its owner, by digest: its current key's, or during a rotation's grace its
/// previous key's (both unique, both indexed). `$1` is the digest's hex on both backends (SQLite
/// reads `$1` as its first parameter, both times). `benches/hotpath` gives pgbench this statement
/// as it stands here.
pub const LOOKUP_SQL: &str = "SELECT t.id, t.user_id, t.name, t.kind, t.key_digest, t.key_prefix, \
     t.created_at, t.expires_at, t.last_used_at, u.username, u.username_key, u.is_admin, \
     u.is_active, u.created_at, t.description, t.read_only, t.scopes, t.allowed_ips, t.pin_ip, \
     t.idle_expiry_days, t.remaining_uses, t.metadata, t.previous_key_digest, \
     t.previous_key_expires_at, t.retire_previous_on_use, t.rate_limit_per_minute \
     FROM tokens t JOIN users u ON u.id = t.user_id \
     WHERE t.key_digest = $1 OR t.previous_key_digest = $1";

/// Why a direct lookup could not answer.
#[derive(Debug)]
pub struct Unanswered(pub String);

impl<E: std::fmt::Display> From<E> for Unanswered {
    fn from(error: E) -> Unanswered {
        Unanswered(error.to_string())
    }
}
