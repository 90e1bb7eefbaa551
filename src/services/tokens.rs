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
    Invalid, Policy,
    audit::{self, Action, Actor, Event, Target},
    is_unique_violation, now,
    verification::{self, Revocation},
};
use crate::{
    auth::key::{KEY_PREFIX, KeyDigest, TokenKey},
    entities::{
        tokens::{self, TokenKind},
        users,
    },
};

pub use super::names::{TOKEN_NAME_MAX_CHARS, TokenName};

/// A token may live at most this long when it expires at all (100 years), however it is asked for.
pub const MAX_LIFETIME_DAYS: u32 = 36_500;
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

pub struct NewToken {
    /// `None` names the token after its key's display prefix ("session AbCd1234").
    pub name: Option<TokenName>,
    /// The first word of a generated name: "session" for API logins, "browser" for web sign-ins.
    pub generated_name_label: &'static str,
    pub kind: TokenKind,
    /// `None`: never expires.
    pub lifetime: Option<chrono::TimeDelta>,
    /// A web sign-in may go one over the limit when device tokens alone fill it, so that the
    /// owner can still sign in and delete one.
    pub may_exceed_device_limit: bool,
}

impl NewToken {
    /// A login's session token: named by the caller or after its key, expiring after the session TTL.
    pub fn session(policy: &Policy, name: Option<TokenName>) -> NewToken {
        let ttl = chrono::TimeDelta::from_std(policy.session_ttl).unwrap_or(chrono::TimeDelta::MAX);
        NewToken {
            name,
            generated_name_label: "session",
            kind: TokenKind::Session,
            lifetime: Some(ttl),
            may_exceed_device_limit: false,
        }
    }

    /// The session token behind a web sign-in: the browser's cookie carries its key.
    pub fn browser_session(policy: &Policy) -> NewToken {
        NewToken {
            generated_name_label: "browser",
            may_exceed_device_limit: true,
            ..NewToken::session(policy, None)
        }
    }

    pub fn device(name: TokenName, lifetime: Option<chrono::TimeDelta>) -> NewToken {
        NewToken {
            name: Some(name),
            generated_name_label: "device",
            kind: TokenKind::Device,
            lifetime,
            may_exceed_device_limit: false,
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
    actor: &Actor,
    user: &users::Model,
    new: NewToken,
) -> Result<IssuedToken, TokenError>
where
    C: ConnectionTrait + TransactionTrait,
{
    let key = TokenKey::generate();
    let name = match &new.name {
        Some(name) => name.as_str().to_owned(),
        None => format!(
            "{} {}",
            new.generated_name_label,
            &key.display_prefix()[KEY_PREFIX.len()..]
        ),
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
    let long_expired = tokens::Entity::delete_many()
        .filter(tokens::Column::UserId.eq(user.id))
        .filter(tokens::Column::ExpiresAt.lte(at - EXPIRED_KEPT_FOR))
        .exec_with_returning(&txn)
        .await?;
    record_removed(
        &txn,
        &Actor::system(),
        Action::TokenExpired,
        long_expired,
        user,
        None,
    )
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
        evicted = evict_oldest_sessions(&txn, policy, actor, user, &new, at, excess).await?;
    }
    let token = tokens::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(user.id),
        // The unique index on (user_id, name_skeleton) refuses a look-alike: `NameTaken`.
        name_skeleton: Set(Some(super::names::skeleton(&name))),
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
    let expiry = match token.expires_at {
        Some(at) => format!("expires {}", at.format("%Y-%m-%d %H:%M UTC")),
        None => "never expires".to_owned(),
    };
    audit::record(
        &txn,
        actor,
        Event::new(Action::TokenCreated, Target::token(&token, &user.username))
            .with_detail(format!("{}, {expiry}", token.kind.as_str())),
    )
    .await?;
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
    actor: &Actor,
    user: &users::Model,
    new: &NewToken,
    at: DateTime<Utc>,
    count: u64,
) -> Result<Vec<Uuid>, TokenError> {
    let limit = TokenError::LimitReached {
        max: policy.max_tokens_per_user,
    };
    if new.kind != TokenKind::Session {
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
    // Only device tokens left to make room: those are never evicted, so the login is refused
    // (a web sign-in excepted, which evicts what sessions there are and goes over).
    if (oldest.len() as u64) < count && !new.may_exceed_device_limit {
        return Err(limit);
    }
    let evicted = tokens::Entity::delete_many()
        .filter(tokens::Column::Id.is_in(oldest.clone()))
        .exec_with_returning(txn)
        .await?;
    let detail = Some("evicted: the oldest session over the token limit");
    record_removed(txn, actor, Action::TokenRevoked, evicted, user, detail).await?;
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
    let digest = presented_digest(presented)?;
    let (token, user) = tokens::Entity::find()
        .filter(tokens::Column::KeyDigest.eq(digest.to_hex()))
        .find_also_related(users::Entity)
        .one(db)
        .await?
        .ok_or(AuthError::Invalid)?;
    accept(&digest, token, user)
}

/// The digest of a presented key, checked for shape and checksum first: a mistyped key never
/// costs a lookup.
pub fn presented_digest(presented: &str) -> Result<KeyDigest, AuthError> {
    let key = TokenKey::parse(presented).map_err(|reason| {
        log::debug!("token refused before lookup: {reason:?}");
        AuthError::Invalid
    })?;
    Ok(key.digest())
}

/// The checks after a lookup by digest, wherever the row came from (the pool, or the direct
/// SQLite read): digest, expiry, owner's state. The password hash is dropped: nothing past this
/// point needs it, and verifications are kept in memory. (So are the name skeletons.)
pub fn accept(
    digest: &KeyDigest,
    token: tokens::Model,
    user: Option<users::Model>,
) -> Result<Authenticated, AuthError> {
    // The index found the row by digest; this constant-time check is the one that decides.
    if !digest.matches_hex(&token.key_digest) {
        return Err(AuthError::Invalid);
    }
    if token.is_expired_at(now()) {
        log::debug!("token {} refused: expired", token.id);
        return Err(AuthError::Expired);
    }
    let user = user.ok_or(AuthError::Invalid)?;
    if !user.is_active {
        log::debug!("token {} refused: user {} inactive", token.id, user.id);
        return Err(AuthError::InactiveUser);
    }
    // Skeletons only matter when names are created: both lookups leave them out alike.
    let user = users::Model {
        password_hash: String::new(),
        username_skeleton: None,
        ..user
    };
    let token = tokens::Model {
        name_skeleton: None,
        ..token
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

/// One of the owner's tokens; someone else's is `NotFound`.
pub async fn find_own(
    db: &impl ConnectionTrait,
    owner: Uuid,
    id: Uuid,
) -> Result<tokens::Model, TokenError> {
    tokens::Entity::find_by_id(id)
        .filter(tokens::Column::UserId.eq(owner))
        .one(db)
        .await?
        .ok_or(TokenError::NotFound)
}

/// Any token with its owner (admin).
pub async fn find_with_owner(
    db: &impl ConnectionTrait,
    id: Uuid,
) -> Result<(tokens::Model, users::Model), TokenError> {
    match tokens::Entity::find_by_id(id)
        .find_also_related(users::Entity)
        .one(db)
        .await?
    {
        Some((token, Some(owner))) => Ok((token, owner)),
        _ => Err(TokenError::NotFound),
    }
}

/// Records one event per removed token of one owner.
async fn record_removed(
    db: &impl ConnectionTrait,
    actor: &Actor,
    action: Action,
    removed: Vec<tokens::Model>,
    owner: &users::Model,
    detail: Option<&str>,
) -> Result<(), DbErr> {
    let events = removed
        .iter()
        .map(|token| {
            let event = Event::new(action, Target::token(token, &owner.username));
            match detail {
                Some(detail) => event.with_detail(detail),
                None => event,
            }
        })
        .collect();
    audit::record_all(db, actor, events).await
}

/// Why an owner removed a token, for the audit log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removal {
    Deleted,
    LoggedOut,
    /// A web sign-in unused for longer than the idle limit.
    IdleTimeout,
}

/// Deletes one of the owner's tokens; someone else's token is `NotFound`, never "forbidden".
pub async fn delete_own<C>(
    db: &C,
    actor: &Actor,
    owner: &users::Model,
    id: Uuid,
    why: Removal,
) -> Result<tokens::Model, TokenError>
where
    C: ConnectionTrait + TransactionTrait,
{
    let txn = db.begin().await?;
    let removed = tokens::Entity::delete_many()
        .filter(tokens::Column::Id.eq(id))
        .filter(tokens::Column::UserId.eq(owner.id))
        .exec_with_returning(&txn)
        .await?;
    let Some(deleted) = removed.first().cloned() else {
        return Err(TokenError::NotFound);
    };
    let detail = match why {
        Removal::Deleted => Some("deleted by owner"),
        Removal::LoggedOut => Some("logged out"),
        Removal::IdleTimeout => Some("signed out: idle"),
    };
    record_removed(&txn, actor, Action::TokenRevoked, removed, owner, detail).await?;
    txn.commit().await?;
    verification::revoked(db, Revocation::Token(id)).await;
    log::info!("token deleted by owner: {id}");
    Ok(deleted)
}

/// Ends a session (logout, idle time-out, a sign-in replaced): `delete_own`, except that a token
/// already gone, revoked meanwhile by someone else, counts as ended.
pub async fn end_session<C>(
    db: &C,
    actor: &Actor,
    owner: &users::Model,
    id: Uuid,
    why: Removal,
) -> Result<(), TokenError>
where
    C: ConnectionTrait + TransactionTrait,
{
    match delete_own(db, actor, owner, id, why).await {
        Ok(_) | Err(TokenError::NotFound) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Which of a user's tokens "sign out everywhere" removes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Everywhere {
    /// Session tokens (logins and browsers); device tokens stay.
    Sessions,
    /// Session tokens except the one in use, which stays signed in.
    SessionsExcept(Uuid),
    /// Every token, sessions and devices alike.
    AllTokens,
}

/// Logs out everywhere: deletes the owner's session tokens, and device tokens too when asked.
pub async fn delete_all_own<C>(
    db: &C,
    actor: &Actor,
    owner: &users::Model,
    scope: Everywhere,
) -> Result<u64, TokenError>
where
    C: ConnectionTrait + TransactionTrait,
{
    let txn = db.begin().await?;
    let count = delete_all_own_in(&txn, actor, owner, scope).await?;
    txn.commit().await?;
    if count > 0 {
        verification::revoked(db, Revocation::User(owner.id)).await;
    }
    Ok(count)
}

/// `delete_all_own` inside a caller's transaction, which announces the revocation itself once
/// committed (an announcement from inside could let a request re-cache a token still visible).
pub async fn delete_all_own_in(
    txn: &impl ConnectionTrait,
    actor: &Actor,
    owner: &users::Model,
    scope: Everywhere,
) -> Result<u64, TokenError> {
    let mut query = tokens::Entity::delete_many().filter(tokens::Column::UserId.eq(owner.id));
    match scope {
        Everywhere::Sessions => query = query.filter(tokens::Column::Kind.eq(TokenKind::Session)),
        Everywhere::SessionsExcept(kept) => {
            query = query
                .filter(tokens::Column::Kind.eq(TokenKind::Session))
                .filter(tokens::Column::Id.ne(kept))
        }
        Everywhere::AllTokens => {}
    }
    let removed = query.exec_with_returning(txn).await?;
    let count = removed.len() as u64;
    let detail = match scope {
        Everywhere::AllTokens => "all tokens revoked",
        _ => "signed out everywhere",
    };
    record_removed(
        txn,
        actor,
        Action::TokenRevoked,
        removed,
        owner,
        Some(detail),
    )
    .await?;
    log::info!(
        "user {} logged out everywhere: {count} tokens deleted",
        owner.id
    );
    Ok(count)
}

/// Admin: every token (optionally one user's, optionally one kind), newest first, with its owner.
pub async fn list_all(
    db: &impl ConnectionTrait,
    filter: &TokenFilter,
    limit: u64,
    offset: u64,
) -> Result<Vec<(tokens::Model, users::Model)>, TokenError> {
    let rows = filter
        .apply(tokens::Entity::find().find_also_related(users::Entity))
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

/// Admin: how many tokens match a filter (for paging).
pub async fn count_all(db: &impl ConnectionTrait, filter: &TokenFilter) -> Result<u64, TokenError> {
    Ok(filter.apply(tokens::Entity::find()).count(db).await?)
}

/// Narrows an admin listing.
#[derive(Clone, Debug, Default)]
pub struct TokenFilter {
    pub owner: Option<Uuid>,
    pub kind: Option<TokenKind>,
}

impl TokenFilter {
    fn apply<Q: QueryFilter>(&self, mut query: Q) -> Q {
        if let Some(owner) = self.owner {
            query = query.filter(tokens::Column::UserId.eq(owner));
        }
        if let Some(kind) = self.kind {
            query = query.filter(tokens::Column::Kind.eq(kind));
        }
        query
    }
}

/// Token counts per user id, for the admin's user list.
pub async fn count_by_owner(
    db: &impl ConnectionTrait,
) -> Result<std::collections::HashMap<Uuid, u64>, TokenError> {
    let counts: Vec<(Uuid, i64)> = tokens::Entity::find()
        .select_only()
        .column(tokens::Column::UserId)
        .column_as(tokens::Column::Id.count(), "count")
        .group_by(tokens::Column::UserId)
        .into_tuple()
        .all(db)
        .await?;
    Ok(counts
        .into_iter()
        .map(|(owner, count)| (owner, u64::try_from(count).unwrap_or(0)))
        .collect())
}

/// Admin: deletes any token.
pub async fn revoke<C>(db: &C, actor: &Actor, id: Uuid) -> Result<(), TokenError>
where
    C: ConnectionTrait + TransactionTrait,
{
    let txn = db.begin().await?;
    // The write comes first: on SQLite a read before it could not upgrade to a write lock.
    let removed = tokens::Entity::delete_many()
        .filter(tokens::Column::Id.eq(id))
        .exec_with_returning(&txn)
        .await?;
    let Some(token) = removed.first() else {
        return Err(TokenError::NotFound);
    };
    let owner = users::Entity::find_by_id(token.user_id)
        .one(&txn)
        .await?
        .ok_or(TokenError::NotFound)?;
    let detail = Some("revoked by admin");
    record_removed(&txn, actor, Action::TokenRevoked, removed, &owner, detail).await?;
    txn.commit().await?;
    verification::revoked(db, Revocation::Token(id)).await;
    log::info!("token revoked by admin: {id}");
    Ok(())
}

/// Admin: deletes every token of a user, sessions and devices alike.
pub async fn revoke_all_for<C>(
    db: &C,
    actor: &Actor,
    owner: &users::Model,
) -> Result<u64, TokenError>
where
    C: ConnectionTrait + TransactionTrait,
{
    delete_all_own(db, actor, owner, Everywhere::AllTokens).await
}

/// Deletes every expired token (`prune`).
pub async fn prune<C>(db: &C, actor: &Actor) -> Result<u64, TokenError>
where
    C: ConnectionTrait + TransactionTrait,
{
    remove_expired_before(db, actor, Action::TokenPruned, now()).await
}

/// Deletes tokens that expired more than a day ago: the service's own clean-up, run periodically.
pub async fn sweep_expired<C>(db: &C) -> Result<u64, TokenError>
where
    C: ConnectionTrait + TransactionTrait,
{
    remove_expired_before(
        db,
        &Actor::system(),
        Action::TokenExpired,
        now() - EXPIRED_KEPT_FOR,
    )
    .await
}

/// Sweeps now, then every `interval`, until aborted. Instances sharing a database may sweep at
/// once: each row is deleted (and recorded) only once.
pub async fn sweep_every<C>(interval: std::time::Duration, db: C)
where
    C: ConnectionTrait + TransactionTrait,
{
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(e) = sweep_expired(&db).await {
            log::warn!("expired-token sweep failed: {e:?}");
        }
    }
}

async fn remove_expired_before<C>(
    db: &C,
    actor: &Actor,
    action: Action,
    before: DateTime<Utc>,
) -> Result<u64, TokenError>
where
    C: ConnectionTrait + TransactionTrait,
{
    let txn = db.begin().await?;
    let removed = tokens::Entity::delete_many()
        .filter(tokens::Column::ExpiresAt.lte(before))
        .exec_with_returning(&txn)
        .await?;
    let count = removed.len() as u64;
    let mut owner_ids: Vec<Uuid> = removed.iter().map(|token| token.user_id).collect();
    owner_ids.sort_unstable();
    owner_ids.dedup();
    let mut owners = std::collections::HashMap::new();
    // In chunks: a statement may carry only so many parameters.
    for chunk in owner_ids.chunks(500) {
        let found = users::Entity::find()
            .filter(users::Column::Id.is_in(chunk.to_vec()))
            .all(&txn)
            .await?;
        owners.extend(found.into_iter().map(|user| (user.id, user.username)));
    }
    let events = removed
        .iter()
        .map(|token| {
            let owner = owners.get(&token.user_id).map_or("?", String::as_str);
            Event::new(action, Target::token(token, owner))
        })
        .collect();
    audit::record_all(&txn, actor, events).await?;
    txn.commit().await?;
    // Expired tokens are refused on every cache hit anyway; pruning flushes the cache all the same.
    if count > 0 && action == Action::TokenPruned {
        verification::revoked(db, Revocation::All).await;
    }
    if count > 0 {
        log::info!("expired tokens removed ({}): {count}", action.code());
    }
    Ok(count)
}
