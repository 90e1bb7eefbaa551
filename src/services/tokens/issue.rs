//! Issuance under the per-user limit: over it, a login evicts the user's oldest session token,
//! while a new device token is refused.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, DatabaseConnection, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, sea_query::Expr,
};
use uuid::Uuid;

use super::{EXPIRED_KEPT_FOR, IssuedToken, NewToken, TokenError, live_at, policy, record_removed};
use crate::{
    auth::key::{KEY_PREFIX, TokenKey},
    db,
    entities::{
        tokens::{self, TokenKind},
        users,
    },
    services::{
        Policy,
        audit::{self, Action, Actor, Event, Target},
        is_unique_violation, names, now,
    },
    verify::{Revocation, Revocations, RevokingTransaction},
};

/// Issues a token for `user`, enforcing the per-user limit: over it, a login evicts the user's
/// oldest session token, while a new device token is refused.
pub async fn issue(
    db: &DatabaseConnection,
    revocations: &Revocations,
    policy: &Policy,
    actor: &Actor,
    user: &users::Model,
    new: NewToken,
) -> Result<IssuedToken, TokenError> {
    let txn = revocations.begin(db).await?;
    let issued = issue_in(&txn, policy, actor, user, new).await?;
    txn.commit().await?;
    log::info!(
        "token issued: {} ({:?}) for user {}",
        issued.token.id,
        issued.token.kind,
        user.username
    );
    Ok(issued)
}

/// `issue` inside a caller's transaction (a new user's signup token); sessions it evicts are
/// revoked when that transaction commits.
pub async fn issue_in(
    txn: &RevokingTransaction,
    policy: &Policy,
    actor: &Actor,
    user: &users::Model,
    new: NewToken,
) -> Result<IssuedToken, TokenError> {
    let key = TokenKey::generate();
    let name = match &new.name {
        Some(name) => name.as_str().to_owned(),
        None => format!(
            "{} {}",
            new.generated_name_label,
            &key.display_prefix()[KEY_PREFIX.len()..]
        ),
    };
    // Take the user's row lock first (a no-op write): concurrent issuances for one user then run
    // one after another, so the limit below cannot be overshot by racing requests. On SQLite the
    // write also takes the database write lock before anything is read, which avoids upgrade deadlocks.
    let locked = users::Entity::update_many()
        .col_expr(users::Column::IsActive, Expr::col(users::Column::IsActive))
        .filter(users::Column::Id.eq(user.id))
        .exec(txn)
        .await?;
    if locked.rows_affected == 0 {
        return Err(TokenError::NotFound);
    }
    let at = now();
    // Expired tokens still answer "Token has expired" for a day; after that they are only
    // clutter. Removing them here keeps a user's rows bounded even when nobody runs `prune`.
    let long_expired = db::delete_tokens(
        txn,
        Condition::all()
            .add(tokens::Column::UserId.eq(user.id))
            .add(tokens::Column::ExpiresAt.lte(at - EXPIRED_KEPT_FOR)),
    )
    .await?;
    record_removed(
        txn,
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
        .count(txn)
        .await?;
    let max = u64::from(policy.max_tokens_per_user);
    let mut evicted = Vec::new();
    if live >= max {
        // Usually one; more when the limit was lowered since these tokens were issued.
        let excess = live + 1 - max;
        evicted = evict_oldest_sessions(txn, policy, actor, user, &new, at, excess).await?;
    }
    let access = match (&new.access, new.kind) {
        (Some(access), _) => access.clone(),
        (None, TokenKind::Device) => {
            policy::Policy::idle_by_default(policy.device_idle_expiry_days)
        }
        (None, TokenKind::Session) => policy::Policy::default(),
    };
    let stored = access.encode();
    let token = tokens::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(user.id),
        // The unique index on (user_id, name_skeleton) refuses a look-alike: `NameTaken`.
        name_skeleton: Set(Some(names::skeleton(&name))),
        name: Set(name),
        kind: Set(new.kind),
        key_digest: Set(key.digest().to_hex()),
        key_prefix: Set(key.display_prefix()),
        created_at: Set(at),
        expires_at: Set(new.lifetime.expires_at(at)),
        last_used_at: Set(None),
        description: Set(stored.description),
        read_only: Set(stored.read_only),
        scopes: Set(stored.scopes),
        allowed_ips: Set(stored.allowed_ips),
        pin_ip: Set(stored.pin_ip),
        idle_expiry_days: Set(stored.idle_expiry_days),
        remaining_uses: Set(stored.remaining_uses),
        metadata: Set(stored.metadata),
        last_used_ip: Set(None),
        last_used_user_agent: Set(None),
        previous_key_digest: Set(None),
        previous_key_expires_at: Set(None),
        retire_previous_on_use: Set(false),
        rate_limit_per_minute: Set(stored.rate_limit_per_minute),
    }
    .insert(txn)
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
        txn,
        actor,
        Event::new(Action::TokenCreated, Target::token(&token, &user.username))
            .with_detail(format!("{}, {expiry}", token.kind.as_str())),
    )
    .await?;
    // (The long-expired tokens deleted above need no announcement: expiry is checked on every use.)
    for id in evicted {
        txn.revoke(Revocation::Token(id));
    }
    Ok(IssuedToken { token, key })
}

async fn evict_oldest_sessions(
    txn: &RevokingTransaction,
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
    let evicted = db::delete_tokens(
        txn,
        Condition::all().add(tokens::Column::Id.is_in(oldest.clone())),
    )
    .await?;
    let detail = Some("evicted: the oldest session over the token limit");
    record_removed(txn, actor, Action::TokenRevoked, evicted, user, detail).await?;
    log::info!(
        "tokens evicted (oldest sessions of user {}): {oldest:?}",
        user.username
    );
    Ok(oldest)
}
