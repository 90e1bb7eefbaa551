//! What the direct lookups (`sqlite`, `postgres`, `mariadb`) share: the one statement of a cache
//! miss, the reading of its row on the database servers, and why a direct path could not answer
//! (the caller then asks through the shared pool).

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveEnum,
    sqlx::{ColumnIndex, Decode, Row, Type},
};
use uuid::Uuid;

use crate::entities::{
    tokens::{self, TokenKind},
    users,
};

/// The token with its owner, by digest: its current key's, or during a rotation's grace its
/// previous key's (both unique, both indexed). `$digest` is the placeholder for the digest's hex,
/// which differs by backend. `benches/hotpath` gives pgbench and mariadb-slap this statement as
/// it stands here.
macro_rules! lookup_sql {
    ($digest:literal) => {
        concat!(
            "SELECT t.id, t.user_id, t.name, t.kind, t.key_digest, t.key_prefix, \
             t.created_at, t.expires_at, t.last_used_at, u.username, u.username_key, u.is_admin, \
             u.is_active, u.created_at, t.description, t.read_only, t.scopes, t.allowed_ips, t.pin_ip, \
             t.idle_expiry_days, t.remaining_uses, t.metadata, t.previous_key_digest, \
             t.previous_key_expires_at, t.retire_previous_on_use, t.rate_limit_per_minute \
             FROM tokens t JOIN users u ON u.id = t.user_id \
             WHERE t.key_digest = ",
            $digest,
            " OR t.previous_key_digest = ",
            $digest
        )
    };
}

/// PostgreSQL and SQLite: `$1`, the first parameter, both times.
pub const LOOKUP_SQL: &str = lookup_sql!("$1");
/// MariaDB: a `?` per use, so the digest is bound twice.
pub const LOOKUP_SQL_MARIADB: &str = lookup_sql!("?");

/// Why a direct lookup could not answer.
#[derive(Debug)]
pub struct Unanswered(pub String);

impl<E: std::fmt::Display> From<E> for Unanswered {
    fn from(error: E) -> Unanswered {
        Unanswered(error.to_string())
    }
}

/// The token and owner in a row of `LOOKUP_SQL` read through sqlx (PostgreSQL, MariaDB): the
/// columns by position, as the statement lists them.
pub fn decode<'r, R>(row: &'r R) -> Result<(tokens::Model, users::Model), Unanswered>
where
    R: Row,
    usize: ColumnIndex<R>,
    Uuid: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    DateTime<Utc>: Decode<'r, R::Database> + Type<R::Database>,
    bool: Decode<'r, R::Database> + Type<R::Database>,
    i32: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let stored: String = row.try_get(3)?;
    let kind = TokenKind::try_from_value(&stored)
        .map_err(|_| Unanswered(format!("unknown token kind {stored:?}")))?;
    let token = tokens::Model {
        id: row.try_get(0)?,
        user_id: row.try_get(1)?,
        name: row.try_get(2)?,
        name_skeleton: None, // not read: `checks::accept` drops it
        kind,
        key_digest: row.try_get(4)?,
        key_prefix: row.try_get(5)?,
        created_at: row.try_get(6)?,
        expires_at: row.try_get(7)?,
        last_used_at: row.try_get(8)?,
        description: row.try_get(14)?,
        read_only: row.try_get(15)?,
        scopes: row.try_get(16)?,
        allowed_ips: row.try_get(17)?,
        pin_ip: row.try_get(18)?,
        idle_expiry_days: row.try_get(19)?,
        remaining_uses: row.try_get(20)?,
        metadata: row.try_get(21)?,
        // Not read: written back by `last_used`, never needed to verify.
        last_used_ip: None,
        last_used_user_agent: None,
        previous_key_digest: row.try_get(22)?,
        previous_key_expires_at: row.try_get(23)?,
        retire_previous_on_use: row.try_get(24)?,
        rate_limit_per_minute: row.try_get(25)?,
    };
    let user = users::Model {
        id: token.user_id,
        username: row.try_get(9)?,
        username_key: row.try_get(10)?,
        username_skeleton: None, // not read: `checks::accept` drops it
        // Never needed past authentication (`checks::accept` drops it too).
        password_hash: String::new(),
        is_admin: row.try_get(11)?,
        is_active: row.try_get(12)?,
        created_at: row.try_get(13)?,
    };
    Ok((token, user))
}
