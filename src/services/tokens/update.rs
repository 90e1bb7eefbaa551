//! Changing a token's name and policy after it was issued.

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter,
};
use uuid::Uuid;

use super::{
    TokenError, TokenName,
    policy::{Policy, PolicyPatch},
};
use crate::{
    entities::{tokens, users},
    services::{
        audit::{self, Action, Actor, Event, Target},
        is_unique_violation, names,
    },
    verify::{Revocation, Revocations},
};

/// A change to one of the owner's tokens: `None` / `Keep` leaves a field as it is.
pub struct TokenChange {
    pub name: Option<TokenName>,
    pub access: PolicyPatch,
}

/// Applies `change` to the owner's token `id` (another user's looks missing). Finished through
/// `Revocations`, so every instance drops what it cached of the token and the next request sees
/// the new policy.
pub async fn update_own(
    db: &DatabaseConnection,
    revocations: &Revocations,
    actor: &Actor,
    owner: &users::Model,
    id: Uuid,
    change: TokenChange,
) -> Result<tokens::Model, TokenError> {
    let txn = revocations.begin(db).await?;
    let token = tokens::Entity::find_by_id(id)
        .filter(tokens::Column::UserId.eq(owner.id))
        .one(&txn)
        .await?
        .ok_or(TokenError::NotFound)?;
    let access = Policy::of(&token).apply(change.access)?;
    let stored = access.encode();
    let mut row: tokens::ActiveModel = token.into();
    if let Some(name) = change.name {
        row.name_skeleton = Set(Some(names::skeleton(name.as_str())));
        row.name = Set(name.as_str().to_owned());
    }
    row.description = Set(stored.description);
    row.read_only = Set(stored.read_only);
    row.scopes = Set(stored.scopes);
    row.allowed_ips = Set(stored.allowed_ips);
    row.pin_ip = Set(stored.pin_ip);
    row.idle_expiry_days = Set(stored.idle_expiry_days);
    row.rate_limit_per_minute = Set(stored.rate_limit_per_minute);
    row.metadata = Set(stored.metadata);
    let updated = row.update(&txn).await.map_err(|e| {
        if is_unique_violation(&e) {
            TokenError::NameTaken
        } else {
            TokenError::Db(e)
        }
    })?;
    audit::record(
        &txn,
        actor,
        Event::new(
            Action::TokenUpdated,
            Target::token(&updated, &owner.username),
        ),
    )
    .await?;
    txn.revoke(Revocation::Token(id));
    txn.commit().await?;
    log::info!("token updated by owner: {id}");
    Ok(updated)
}
