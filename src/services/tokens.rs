//! Tokens: issuance under the per-user limit, authentication of presented keys, listing and
//! revocation. Every owner-facing query is scoped by owner, so another user's token looks missing.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DbErr,
    EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, TransactionSession,
    TransactionTrait, sea_query::Expr,
};
use uuid::Uuid;

use super::{
    Invalid, Policy, has_control_characters, is_unique_violation, now,
    verification::{self, Revocation},
};
use crate::{
    auth::key::{KEY_PREFIX, TokenKey},
    entities::{
        tokens::{self, TokenKind},
        users,
    },
};

pub const TOKEN_NAME_MAX_CHARS: usize = 64;
/// How long an expired token stays, answering "Token has expired", before issuance clears it away.
const EXPIRED_KEPT_FOR: chrono::TimeDelta = chrono::TimeDelta::days(1);

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token not found")]
    NotFound,
    #[error("a token with this name already exists")]
    NameTaken,
    #[error("token limit reached: a user may hold at most {max} live tokens; delete one first")]
    LimitReached { max: u32 },
    #[error("{0}")]
    Invalid(#[from] Invalid),
    #[error("database error")]
    Db(#[from] DbErr),
}

/// Why a presented key was refused. The HTTP layer turns each into the contract's fixed message.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("Invalid or Inactive Token")]
    Invalid,
    #[error("Token has expired")]
    Expired,
    #[error("Invalid user")]
    InactiveUser,
    #[error("database error")]
    Db(#[from] DbErr),
}

/// A token name as its owner typed it: trimmed, 1–64 characters of any script, no control
/// characters, otherwise stored literally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenName(String);

impl TokenName {
    pub fn parse(text: &str) -> Result<TokenName, Invalid> {
        let text = text.trim();
        let length = text.chars().count();
        if length == 0 || length > TOKEN_NAME_MAX_CHARS {
            return Err(Invalid::new(
                "name",
                format!("must be 1 to {TOKEN_NAME_MAX_CHARS} characters"),
            ));
        }
        if has_control_characters(text) {
            return Err(Invalid::new("name", "must not contain control characters"));
        }
        Ok(TokenName(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

pub struct NewToken {
    /// `None` names the token after its key's display prefix ("session AbCd1234").
    pub name: Option<TokenName>,
    pub kind: TokenKind,
    /// `None`: never expires.
    pub lifetime: Option<chrono::TimeDelta>,
}

impl NewToken {
    /// A login's session token: named by the caller or after its key, expiring after the session TTL.
    pub fn session(policy: &Policy, name: Option<TokenName>) -> NewToken {
        let ttl = chrono::TimeDelta::from_std(policy.session_ttl).unwrap_or(chrono::TimeDelta::MAX);
        NewToken {
            name,
            kind: TokenKind::Session,
            lifetime: Some(ttl),
        }
    }

    pub fn device(name: TokenName, lifetime: Option<chrono::TimeDelta>) -> NewToken {
        NewToken {
            name: Some(name),
            kind: TokenKind::Device,
            lifetime,
        }
    }
}

/// A freshly issued token and its key. The key exists nowhere else: show it once.
#[derive(Debug)]
pub struct IssuedToken {
    pub token: tokens::Model,
    pub key: TokenKey,
}

/// The owner and token behind a presented key that passed every check. `user.password_hash` is
/// left empty: it is never needed past this point, and verifications are kept in memory.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub user: users::Model,
    pub token: tokens::Model,
}

impl tokens::Model {
    pub fn is_expired_at(&self, at: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|expires_at| expires_at <= at)
    }
}

fn live_at(at: DateTime<Utc>) -> Condition {
    Condition::any()
        .add(tokens::Column::ExpiresAt.is_null())
        .add(tokens::Column::ExpiresAt.gt(at))
}

/// Issues a token for `user`, enforcing the per-user limit: over it, a login evicts the user's
/// oldest session token, while a new device token is refused.
pub async fn issue<C>(
    db: &C,
    policy: &Policy,
    user: &users::Model,
    new: NewToken,
) -> Result<IssuedToken, TokenError>
where
    C: ConnectionTrait + TransactionTrait,
{
    let key = TokenKey::generate();
    let name = match new.name {
        Some(name) => name.0,
        None => format!("session {}", &key.display_prefix()[KEY_PREFIX.len()..]),
    };
    let txn = db.begin().await?;
    // Take the user's row lock first (a no-op write): concurrent issuances for one user then run
    // one after another, so the limit below cannot be overshot by racing requests. On SQLite the
    // write also takes the database write lock before anything is read, which avoids upgrade deadlocks.
    let locked = users::Entity::update_many()
        .col_expr(users::Column::IsActive, Expr::col(users::Column::IsActive))
        .filter(users::Column::Id.eq(user.id))
        .exec(&txn)
        .await?;
    if locked.rows_affected == 0 {
        return Err(TokenError::NotFound);
    }
    let at = now();
    // Expired tokens still answer "Token has expired" for a day; after that they are only
    // clutter. Removing them here keeps a user's rows bounded even when nobody runs `prune`.
    tokens::Entity::delete_many()
        .filter(tokens::Column::UserId.eq(user.id))
        .filter(tokens::Column::ExpiresAt.lte(at - EXPIRED_KEPT_FOR))
        .exec(&txn)
        .await?;
    let live = tokens::Entity::find()
        .filter(tokens::Column::UserId.eq(user.id))
        .filter(live_at(at))
        .count(&txn)
        .await?;
    let max = u64::from(policy.max_tokens_per_user);
    let mut evicted = Vec::new();
    if live >= max {
        // Usually one; more when the limit was lowered since these tokens were issued.
        let excess = live + 1 - max;
        evicted = evict_oldest_sessions(&txn, policy, user, &new.kind, at, excess).await?;
    }
    let token = tokens::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(user.id),
        name: Set(name),
        kind: Set(new.kind),
        key_digest: Set(key.digest().to_hex()),
        key_prefix: Set(key.display_prefix()),
        created_at: Set(at),
        // A lifetime too long to represent is as good as none.
        expires_at: Set(new
            .lifetime
            .and_then(|lifetime| at.checked_add_signed(lifetime))),
        last_used_at: Set(None),
    }
    .insert(&txn)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            TokenError::NameTaken
        } else {
            TokenError::Db(e)
        }
    })?;
    txn.commit().await?;
    // (The long-expired tokens deleted above need no announcement: expiry is checked on every use.)
    for id in evicted {
        verification::revoked(db, Revocation::Token(id)).await;
    }
    log::info!(
        "token issued: {} ({:?}) for user {}",
        token.id,
        token.kind,
        user.username
    );
    Ok(IssuedToken { token, key })
}

async fn evict_oldest_sessions(
    txn: &impl ConnectionTrait,
    policy: &Policy,
    user: &users::Model,
    kind: &TokenKind,
    at: DateTime<Utc>,
    count: u64,
) -> Result<Vec<Uuid>, TokenError> {
    let limit = TokenError::LimitReached {
        max: policy.max_tokens_per_user,
    };
    if *kind != TokenKind::Session {
        return Err(limit);
    }
    let oldest: Vec<Uuid> = tokens::Entity::find()
        .select_only()
        .column(tokens::Column::Id)
        .filter(tokens::Column::UserId.eq(user.id))
        .filter(tokens::Column::Kind.eq(TokenKind::Session))
        .filter(live_at(at))
        .order_by_asc(tokens::Column::CreatedAt)
        .order_by_asc(tokens::Column::Id)
        .limit(count)
        .into_tuple()
        .all(txn)
        .await?;
    // Only device tokens left to make room: those are never evicted, so the login is refused.
    if (oldest.len() as u64) < count {
        return Err(limit);
    }
    tokens::Entity::delete_many()
        .filter(tokens::Column::Id.is_in(oldest.clone()))
        .exec(txn)
        .await?;
    log::info!(
        "tokens evicted (oldest sessions of user {}): {oldest:?}",
        user.username
    );
    Ok(oldest)
}

/// Checks a presented key: shape and checksum first (no I/O), then the stored digest, expiry and
/// the owner's state. Reads only: requests go through `verification::Verifier`, which caches the
/// answer and notes the use for `last_used`.
pub async fn authenticate(
    db: &impl ConnectionTrait,
    presented: &str,
) -> Result<Authenticated, AuthError> {
    let key = TokenKey::parse(presented).map_err(|reason| {
        log::debug!("token refused before lookup: {reason:?}");
        AuthError::Invalid
    })?;
    let digest = key.digest();
    let (token, user) = tokens::Entity::find()
        .filter(tokens::Column::KeyDigest.eq(digest.to_hex()))
        .find_also_related(users::Entity)
        .one(db)
        .await?
        .ok_or(AuthError::Invalid)?;
    // The index found the row by digest; this constant-time check is the one that decides.
    if !digest.matches_hex(&token.key_digest) {
        return Err(AuthError::Invalid);
    }
    let at = now();
    if token.is_expired_at(at) {
        log::debug!("token {} refused: expired", token.id);
        return Err(AuthError::Expired);
    }
    let user = user.ok_or(AuthError::Invalid)?;
    if !user.is_active {
        log::debug!("token {} refused: user {} inactive", token.id, user.id);
        return Err(AuthError::InactiveUser);
    }
    let user = users::Model {
        password_hash: String::new(),
        ..user
    };
    Ok(Authenticated { user, token })
}

/// The owner's tokens, newest first.
pub async fn list_for(
    db: &impl ConnectionTrait,
    owner: Uuid,
) -> Result<Vec<tokens::Model>, TokenError> {
    Ok(tokens::Entity::find()
        .filter(tokens::Column::UserId.eq(owner))
        .order_by_desc(tokens::Column::CreatedAt)
        .order_by_desc(tokens::Column::Id)
        .all(db)
        .await?)
}

/// Deletes one of the owner's tokens; someone else's token is `NotFound`, never "forbidden".
pub async fn delete_own(
    db: &impl ConnectionTrait,
    owner: Uuid,
    id: Uuid,
) -> Result<(), TokenError> {
    let done = tokens::Entity::delete_many()
        .filter(tokens::Column::Id.eq(id))
        .filter(tokens::Column::UserId.eq(owner))
        .exec(db)
        .await?;
    if done.rows_affected == 0 {
        return Err(TokenError::NotFound);
    }
    verification::revoked(db, Revocation::Token(id)).await;
    log::info!("token deleted by owner: {id}");
    Ok(())
}

/// Logs out everywhere: deletes the owner's session tokens, and device tokens too when asked.
pub async fn delete_all_own(
    db: &impl ConnectionTrait,
    owner: Uuid,
    include_devices: bool,
) -> Result<u64, TokenError> {
    let mut query = tokens::Entity::delete_many().filter(tokens::Column::UserId.eq(owner));
    if !include_devices {
        query = query.filter(tokens::Column::Kind.eq(TokenKind::Session));
    }
    let done = query.exec(db).await?;
    verification::revoked(db, Revocation::User(owner)).await;
    log::info!(
        "user {owner} logged out everywhere: {} tokens deleted",
        done.rows_affected
    );
    Ok(done.rows_affected)
}

/// Admin: every token (optionally one user's), newest first, with its owner.
pub async fn list_all(
    db: &impl ConnectionTrait,
    owner: Option<Uuid>,
    limit: u64,
    offset: u64,
) -> Result<Vec<(tokens::Model, users::Model)>, TokenError> {
    let mut query = tokens::Entity::find().find_also_related(users::Entity);
    if let Some(owner) = owner {
        query = query.filter(tokens::Column::UserId.eq(owner));
    }
    let rows = query
        .order_by_desc(tokens::Column::CreatedAt)
        .order_by_desc(tokens::Column::Id)
        .limit(limit)
        .offset(offset)
        .all(db)
        .await?;
    // The foreign key guarantees an owner; a row without one is mid-deletion and not worth showing.
    Ok(rows
        .into_iter()
        .filter_map(|(token, user)| Some((token, user?)))
        .collect())
}

/// Admin: deletes any token.
pub async fn revoke(db: &impl ConnectionTrait, id: Uuid) -> Result<(), TokenError> {
    let done = tokens::Entity::delete_by_id(id).exec(db).await?;
    if done.rows_affected == 0 {
        return Err(TokenError::NotFound);
    }
    verification::revoked(db, Revocation::Token(id)).await;
    log::info!("token revoked by admin: {id}");
    Ok(())
}

/// Admin: deletes every token of a user, sessions and devices alike.
pub async fn revoke_all_for(db: &impl ConnectionTrait, owner: Uuid) -> Result<u64, TokenError> {
    delete_all_own(db, owner, true).await
}

/// Deletes every expired token.
pub async fn prune(db: &impl ConnectionTrait) -> Result<u64, TokenError> {
    let done = tokens::Entity::delete_many()
        .filter(tokens::Column::ExpiresAt.lte(now()))
        .exec(db)
        .await?;
    if done.rows_affected > 0 {
        verification::revoked(db, Revocation::All).await;
    }
    log::info!("expired tokens pruned: {}", done.rows_affected);
    Ok(done.rows_affected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_kept_literally() {
        assert_eq!(
            TokenName::parse("  Küche 🌡️ sensor ").unwrap().as_str(),
            "Küche 🌡️ sensor"
        );
        assert_eq!(
            TokenName::parse(&"é".repeat(64))
                .unwrap()
                .as_str()
                .chars()
                .count(),
            64
        );
    }

    #[test]
    fn names_refuse_empty_long_and_control_characters() {
        for bad in ["", "   ", &"x".repeat(65), "a\u{0}b", "line\nbreak"] {
            assert!(TokenName::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
