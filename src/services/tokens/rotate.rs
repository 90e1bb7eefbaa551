//! Rotation: a token gets a new key and keeps its id, name and policy; its previous key keeps
//! working through a grace period (never past the token's own expiry), so a device can switch
//! without a moment locked out. Rotating again ends the previous key at once.

use std::time::Duration;

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter,
};
use uuid::Uuid;

use super::TokenError;
use crate::{
    auth::key::TokenKey,
    entities::{tokens, users},
    services::{
        Invalid,
        audit::{self, Action, Actor, Event, Target},
        now,
    },
    verify::{Revocation, Revocations},
};

/// The longest grace a rotation may give the previous key: a week.
pub const MAX_GRACE: Duration = Duration::from_secs(7 * 24 * 3600);
/// The grace when none is asked for: an hour.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);

/// How long the previous key keeps working, checked: `0` ends it at once (a leaked key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grace(Duration);

impl Grace {
    pub fn seconds(seconds: i64) -> Result<Grace, Invalid> {
        u64::try_from(seconds)
            .ok()
            .map(Duration::from_secs)
            .filter(|grace| *grace <= MAX_GRACE)
            .map(Grace)
            .ok_or_else(|| {
                Invalid::new(
                    "grace_seconds",
                    format!("must be between 0 and {}", MAX_GRACE.as_secs()),
                )
            })
    }

    pub fn as_secs(self) -> u64 {
        self.0.as_secs()
    }
}

impl Default for Grace {
    fn default() -> Grace {
        Grace(DEFAULT_GRACE)
    }
}

/// Whose tokens a rotation may touch: the owner's own (another's looks missing), the token
/// itself (a device rotating its own key, whose previous key then also ends at the new one's
/// first use) or, for an admin, any.
#[derive(Debug, Clone, Copy)]
pub enum RotatedBy<'a> {
    Owner(&'a users::Model),
    Itself,
    Admin,
}

/// A rotated token with its new key, shown once, and when its previous key stops working
/// (`None`: it already has).
#[derive(Debug)]
pub struct Rotated {
    pub token: tokens::Model,
    pub key: TokenKey,
    pub previous_key_expires_at: Option<DateTime<Utc>>,
}

/// Gives token `id` a new key. Finished through `Revocations`: every instance drops what it
/// cached of the token, so the previous key's grace (or its end, for `Grace(0)`) applies from
/// the next request on, within a second elsewhere.
pub async fn rotate(
    db: &DatabaseConnection,
    revocations: &Revocations,
    actor: &Actor,
    by: RotatedBy<'_>,
    id: Uuid,
    grace: Grace,
) -> Result<Rotated, TokenError> {
    let txn = revocations.begin(db).await?;
    let mut query = tokens::Entity::find_by_id(id).find_also_related(users::Entity);
    if let RotatedBy::Owner(owner) = by {
        query = query.filter(tokens::Column::UserId.eq(owner.id));
    }
    let retire_on_use = matches!(by, RotatedBy::Itself);
    let (token, owner) = match query.one(&txn).await? {
        Some((token, Some(owner))) => (token, owner),
        _ => return Err(TokenError::NotFound),
    };
    let at = now();
    // An expired token stays expired: a new key would not bring it back.
    if token.expires_at.is_some_and(|expires_at| expires_at <= at) {
        return Err(TokenError::NotFound);
    }
    let grace_ends = (grace.0 > Duration::ZERO).then(|| {
        // Microseconds, as every backend stores them: the answer says what the row holds.
        let ends = (at + TimeDelta::from_std(grace.0).unwrap_or(TimeDelta::MAX)).trunc_subsecs(6);
        token
            .expires_at
            .map_or(ends, |expires_at| expires_at.min(ends))
    });
    let key = TokenKey::generate();
    let previous_digest = token.key_digest.clone();
    let mut row: tokens::ActiveModel = token.into();
    row.key_digest = Set(key.digest().to_hex());
    row.key_prefix = Set(key.display_prefix());
    // The key replaced now gets the grace; one replaced before ends here, whatever was left
    // of its own.
    row.previous_key_digest = Set(grace_ends.map(|_| previous_digest));
    row.previous_key_expires_at = Set(grace_ends);
    row.retire_previous_on_use = Set(retire_on_use && grace_ends.is_some());
    let token = row.update(&txn).await?;
    audit::record(
        &txn,
        actor,
        Event::new(Action::TokenRotated, Target::token(&token, &owner.username))
            .with_detail(format!("grace {} s", grace.as_secs())),
    )
    .await?;
    txn.revoke(Revocation::Token(id));
    txn.commit().await?;
    log::info!("token key rotated: {id}, grace {} s", grace.as_secs());
    Ok(Rotated {
        token,
        key,
        previous_key_expires_at: grace_ends,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grace_is_zero_to_a_week() {
        assert_eq!(Grace::seconds(0).unwrap().as_secs(), 0);
        assert_eq!(Grace::seconds(604_800).unwrap().as_secs(), 604_800);
        assert_eq!(Grace::default().as_secs(), 3600);
        for bad in [-1, 604_801, i64::MAX] {
            assert_eq!(
                Grace::seconds(bad).unwrap_err().field,
                "grace_seconds",
                "{bad}"
            );
        }
    }
}
