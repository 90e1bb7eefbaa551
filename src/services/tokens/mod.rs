//! Tokens: issuance under the per-user limit (`issue`), listing (`query`), removal and
//! revocation (`remove`), expiry (`expiry`), each token's own limits (`policy`). Every
//! owner-facing query is scoped by owner, so another user's token looks missing. Checking a
//! presented key is not here: see `verify`.

mod expiry;
mod issue;
mod lifetime;
pub mod policy;
mod query;
mod remove;
mod rotate;
mod update;
pub mod usage;

pub use expiry::{prune, sweep_every, sweep_expired};
pub use issue::{issue, issue_in};
pub use lifetime::{Lifetime, MAX_LIFETIME_DAYS};
pub use query::{count_all, count_by_owner, find_own, find_with_owner, list_all, list_for};
pub use remove::{
    delete_all_own, delete_all_own_in, delete_own, end_session, revoke, revoke_all_for,
};
pub use rotate::{Grace, Rotated, RotatedBy, rotate};
pub use update::{TokenChange, update_own};

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, DbErr, QueryFilter};
use uuid::Uuid;

use super::{
    Invalid, Policy,
    audit::{self, Action, Actor, Event, Target},
};
use crate::{
    auth::key::TokenKey,
    entities::{
        tokens::{self, TokenKind},
        users,
    },
};

pub use super::names::{TOKEN_NAME_MAX_CHARS, TokenName};

/// How long an expired token stays, answering "Token has expired", before issuance clears it away.
pub(super) const EXPIRED_KEPT_FOR: chrono::TimeDelta = chrono::TimeDelta::days(1);

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
    #[error("{0}")]
    Policy(#[from] policy::PolicyError),
    #[error("database error")]
    Db(#[from] DbErr),
}

pub struct NewToken {
    /// `None` names the token after its key's display prefix ("session AbCd1234").
    pub name: Option<TokenName>,
    /// The first word of a generated name: "session" for API logins, "browser" for web sign-ins.
    pub generated_name_label: &'static str,
    pub kind: TokenKind,
    pub lifetime: Lifetime,
    /// A web sign-in may go one over the limit when device tokens alone fill it, so that the
    /// owner can still sign in and delete one.
    pub may_exceed_device_limit: bool,
    /// What the token may do, from where, how often; `None`: the deployment's defaults (a device
    /// token then gets `MULTITOKEN_DEVICE_IDLE_EXPIRY`).
    pub access: Option<policy::Policy>,
}

impl NewToken {
    /// A login's session token: named by the caller or after its key, expiring after the session TTL.
    pub fn session(policy: &Policy, name: Option<TokenName>) -> NewToken {
        NewToken {
            name,
            generated_name_label: "session",
            kind: TokenKind::Session,
            lifetime: Lifetime::from_duration(policy.session_ttl),
            may_exceed_device_limit: false,
            access: None,
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

    pub fn device(name: TokenName, lifetime: Lifetime) -> NewToken {
        NewToken {
            name: Some(name),
            ..NewToken::device_unnamed(lifetime)
        }
    }

    /// A device token whose name is chosen later (a pairing names it after the device).
    pub fn device_unnamed(lifetime: Lifetime) -> NewToken {
        NewToken {
            name: None,
            generated_name_label: "device",
            kind: TokenKind::Device,
            lifetime,
            may_exceed_device_limit: false,
            access: None,
        }
    }

    /// The same token with `access` as its policy.
    pub fn with_access(self, access: policy::Policy) -> NewToken {
        NewToken {
            access: Some(access),
            ..self
        }
    }
}

/// A freshly issued token and its key. The key exists nowhere else: show it once.
#[derive(Debug)]
pub struct IssuedToken {
    pub token: tokens::Model,
    pub key: TokenKey,
}

pub(super) fn live_at(at: DateTime<Utc>) -> Condition {
    Condition::any()
        .add(tokens::Column::ExpiresAt.is_null())
        .add(tokens::Column::ExpiresAt.gt(at))
}

/// Records one event per removed token of one owner.
pub(super) async fn record_removed(
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
