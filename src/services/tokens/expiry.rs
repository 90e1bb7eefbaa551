//! Expiry: `prune` on the command line, and the service's own periodic sweep of tokens that
//! expired more than a day ago.

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter};
use uuid::Uuid;

use super::{EXPIRED_KEPT_FOR, TokenError};
use crate::{
    db,
    entities::{tokens, users},
    services::{
        audit::{self, Action, Actor, Event, Target},
        now,
    },
    verify::{Revocation, Revocations},
};

/// Deletes every expired token (`prune`).
pub async fn prune(
    db: &DatabaseConnection,
    revocations: &Revocations,
    actor: &Actor,
) -> Result<u64, TokenError> {
    remove_expired_before(db, revocations, actor, Action::TokenPruned, now()).await
}

/// Deletes tokens that expired more than a day ago: the service's own clean-up, run periodically.
pub async fn sweep_expired(
    db: &DatabaseConnection,
    revocations: &Revocations,
) -> Result<u64, TokenError> {
    remove_expired_before(
        db,
        revocations,
        &Actor::system(),
        Action::TokenExpired,
        now() - EXPIRED_KEPT_FOR,
    )
    .await
}

/// Sweeps now, then every `interval`, until aborted. Instances sharing a database may sweep at
/// once: each row is deleted (and recorded) only once.
pub async fn sweep_every(
    interval: std::time::Duration,
    db: DatabaseConnection,
    revocations: Revocations,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(e) = sweep_expired(&db, &revocations).await {
            log::warn!("expired-token sweep failed: {e:?}");
        }
    }
}

async fn remove_expired_before(
    db: &DatabaseConnection,
    revocations: &Revocations,
    actor: &Actor,
    action: Action,
    before: DateTime<Utc>,
) -> Result<u64, TokenError> {
    let txn = revocations.begin(db).await?;
    let removed = db::delete_tokens(
        &txn,
        Condition::all().add(tokens::Column::ExpiresAt.lte(before)),
    )
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
    // Expired tokens are refused on every cache hit anyway; pruning flushes the cache all the same.
    if count > 0 && action == Action::TokenPruned {
        txn.revoke(Revocation::All);
    }
    txn.commit().await?;
    if count > 0 {
        log::info!("expired tokens removed ({}): {count}", action.code());
    }
    Ok(count)
}
