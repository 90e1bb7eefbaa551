//! What a looked-up token must pass before it is accepted, wherever its row came from (the pool,
//! the direct SQLite read) and whether or not the answer is then cached. Per-token policy checks
//! (read-only, scopes, networks, uses) belong in [`accept`], after the owner's state.

use std::{
    net::IpAddr,
    sync::{Arc, OnceLock},
    time::Instant,
};

use bytes::Bytes;

use chrono::{DateTime, Utc};

use crate::{
    auth::key::KeyDigest,
    entities::{tokens, users},
    services::tokens::policy::Policy,
    verify::last_used::Client,
};

/// Why a presented key was refused. The HTTP layer turns each into the contract's fixed message.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("Invalid or Inactive Token")]
    Invalid,
    #[error("Token has expired")]
    Expired,
    #[error("Invalid user")]
    InactiveUser,
    /// A read-only token on a request that writes.
    #[error("This token is read-only")]
    ReadOnly,
    /// The token lacks a scope the request requires.
    #[error("Insufficient scope")]
    InsufficientScope,
    /// Over the token's own rate limit; nothing was counted or taken.
    #[error("Rate limit exceeded")]
    RateLimited(crate::verify::rate_limit::Exceeded),
    #[error("database error")]
    Db(#[from] sea_orm::DbErr),
}

/// The owner and token behind a presented key that passed every check. `user.password_hash` is
/// left empty: it is never needed past this point, and verifications are kept in memory. Shared,
/// not copied: a cache hit hands out the cached answer itself, one reference count touched (rows
/// copied, or several counts shared by the HTTP workers, cost `/api/me/` measurably).
#[derive(Debug, Clone)]
pub struct Authenticated(Arc<Verified>);

/// What an [`Authenticated`] reads as: `caller.user`, `caller.token`.
#[derive(Debug)]
pub struct Verified {
    pub user: users::Model,
    pub token: tokens::Model,
    /// The token's policy, read from its row once per lookup.
    pub access: Policy,
    /// The key presented is the one the token had before its last rotation, accepted until the
    /// grace ends (`token.expires_at` then says when). Answers say so (`X-Token-Rotated`).
    pub previous_key: bool,
    /// The verifier's generation read before the lookup that produced this answer.
    pub(super) generation: u64,
    /// When that generation was read: the cache trusts the answer for one TTL from here.
    pub(super) looked_up: Instant,
    /// This answer as the HTTP layer writes it for the caller (`/api/me/`'s body), made at its
    /// first use and shared by every later hit on the same cached answer, so a device polling
    /// `/api/me/` shares bytes instead of serializing them again. It never outlives what it
    /// shows: a new lookup or a use taken makes a new answer with an empty one, and a re-stamp
    /// empties it.
    pub(crate) rendered: OnceLock<Bytes>,
}

impl std::ops::Deref for Authenticated {
    type Target = Verified;

    fn deref(&self) -> &Verified {
        &self.0
    }
}

impl Authenticated {
    pub fn new(user: users::Model, token: tokens::Model) -> Authenticated {
        let access = Policy::of(&token);
        Authenticated::with_access(user, token, access, false)
    }

    /// As `new`, with the token's policy already read; `previous_key`: presented with the key it
    /// had before its last rotation.
    fn with_access(
        user: users::Model,
        token: tokens::Model,
        access: Policy,
        previous_key: bool,
    ) -> Authenticated {
        Authenticated(Arc::new(Verified {
            access,
            previous_key,
            user,
            token,
            generation: 0,
            looked_up: Instant::now(),
            rendered: OnceLock::new(),
        }))
    }

    /// This answer after one of its token's uses was taken, `left` remaining: what the caller
    /// is told. A copy (limited tokens already pay a write per use); the cache keeps its own.
    pub(super) fn after_use(&self, left: i64) -> Authenticated {
        let mut token = self.token.clone();
        token.remaining_uses = Some(left);
        Authenticated(Arc::new(Verified {
            user: self.user.clone(),
            access: self.access.with_remaining_uses(left),
            previous_key: self.previous_key,
            token,
            generation: self.generation,
            looked_up: self.looked_up,
            rendered: OnceLock::new(),
        }))
    }

    /// The same answer, marked with the generation its lookup started at, read at `looked_up`
    /// (for the cache).
    pub(super) fn stamped(mut self, generation: u64, looked_up: Instant) -> Authenticated {
        match Arc::get_mut(&mut self.0) {
            Some(verified) => {
                verified.generation = generation;
                verified.looked_up = looked_up;
                verified.rendered = OnceLock::new();
                self
            }
            None => Authenticated(Arc::new(Verified {
                user: self.user.clone(),
                token: self.token.clone(),
                access: self.access.clone(),
                previous_key: self.previous_key,
                generation,
                looked_up,
                rendered: OnceLock::new(),
            })),
        }
    }
}

/// A cached answer, unless its token has expired since: a cached token expires exactly when an
/// uncached one does.
pub fn unexpired(entry: Authenticated, at: DateTime<Utc>) -> Result<Authenticated, AuthError> {
    if is_expired_at(&entry.token, at) {
        log::debug!("token {} refused: expired", entry.token.id);
        return Err(AuthError::Expired);
    }
    Ok(entry)
}

/// A token expires at its `expires_at`, not a moment later, cached or not.
pub fn is_expired_at(token: &tokens::Model, at: DateTime<Utc>) -> bool {
    token.expires_at.is_some_and(|expires_at| expires_at <= at)
}

/// The checks after a lookup by digest: digest, expiry, owner's state. The password hash is
/// dropped: nothing past this point needs it, and verifications are kept in memory. (So are the
/// name skeletons.)
pub fn accept(
    digest: &KeyDigest,
    token: tokens::Model,
    user: Option<users::Model>,
) -> Result<Authenticated, AuthError> {
    // The index found the row by digest; these constant-time checks are the ones that decide.
    let at = Utc::now();
    let (token, previous) = if digest.matches_hex(&token.key_digest) {
        (token, false)
    } else if token
        .previous_key_digest
        .as_deref()
        .is_some_and(|previous| digest.matches_hex(previous))
    {
        // The previous key of a rotated token: it expires when its grace does (never later
        // than the token), so every expiry check and `X-Token-Expires-At` speak of the grace.
        let grace_ends = token.previous_key_expires_at.unwrap_or(at);
        let expires_at = Some(token.expires_at.map_or(grace_ends, |at| at.min(grace_ends)));
        (
            tokens::Model {
                expires_at,
                ..token
            },
            true,
        )
    } else {
        return Err(AuthError::Invalid);
    };
    if is_expired_at(&token, at) {
        log::debug!("token {} refused: expired", token.id);
        return Err(AuthError::Expired);
    }
    let user = user.ok_or(AuthError::Invalid)?;
    if !user.is_active {
        log::debug!("token {} refused: user {} inactive", token.id, user.id);
        return Err(AuthError::InactiveUser);
    }
    // The policy is read here, once per lookup; it is checked in `admit`, on every request (idle
    // expiry too, so that its refusals are recorded like the others').
    let access = Policy::of(&token);
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
    Ok(Authenticated::with_access(user, token, access, previous))
}

/// What a request asks of the key it presents, beyond being valid.
#[derive(Clone, Copy, Debug)]
pub enum Attempt<'a> {
    /// Someone asks whether the key is valid (introspection): no address, method or scope
    /// applies, and no use is taken.
    Inspect,
    /// The key's holder uses it.
    Use(Use<'a>),
}

#[derive(Clone, Copy, Debug)]
pub struct Use<'a> {
    /// Where the request comes from (the client address, proxies resolved).
    pub address: Option<IpAddr>,
    /// The request changes something (any method but GET, HEAD, OPTIONS, apart from the few a
    /// read-only token may make on itself).
    pub writes: bool,
    /// Scopes the request requires (forward-auth's `?scope=`).
    pub scopes: &'a [&'a str],
    /// The request's `User-Agent`, shown to the owner as the last use's.
    pub agent: Option<&'a str>,
}

impl Attempt<'_> {
    /// Who makes the attempt, as the last use records it.
    pub fn client(&self) -> Client<'_> {
        match self {
            Attempt::Inspect => Client::default(),
            Attempt::Use(used) => Client {
                address: used.address,
                agent: used.agent,
            },
        }
    }
}

/// What `admit` leaves to the verifier, which holds the database: pinning the token to its first
/// address, taking one of its uses.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pending {
    pub pin_to: Option<IpAddr>,
    pub take_use: bool,
    /// The first use of a self-rotated token's new key: its previous key ends now.
    pub retire_previous: bool,
}

/// Why a token's policy refused an attempt: told to the client only as the contract's error,
/// recorded for the owner (`refusals`) with its code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Refusal {
    OutsideNetworks,
    PinnedElsewhere,
    NoUsesLeft,
    IdleExpired,
    ReadOnly,
    MissingScope,
    RateLimited,
}

impl Refusal {
    /// The reason as the audit log and the token page show it.
    pub fn code(self) -> &'static str {
        match self {
            Refusal::OutsideNetworks => "outside its allowed networks",
            Refusal::PinnedElsewhere => "pinned to another address",
            Refusal::NoUsesLeft => "no uses left",
            Refusal::IdleExpired => "unused too long",
            Refusal::ReadOnly => "read-only token, a write",
            Refusal::MissingScope => "missing scope",
            Refusal::RateLimited => "over its rate limit",
        }
    }

    /// What the client is told.
    pub fn error(self) -> AuthError {
        match self {
            Refusal::OutsideNetworks | Refusal::PinnedElsewhere | Refusal::NoUsesLeft => {
                AuthError::Invalid
            }
            Refusal::IdleExpired => AuthError::Expired,
            Refusal::ReadOnly => AuthError::ReadOnly,
            Refusal::MissingScope => AuthError::InsufficientScope,
            // The verifier answers a rate limit with the limiter's own numbers; this is the
            // longest any limited client waits.
            Refusal::RateLimited => AuthError::RateLimited(crate::verify::rate_limit::Exceeded {
                limit: 1,
                retry_after: crate::verify::rate_limit::WINDOW,
            }),
        }
    }
}

/// The request-dependent checks, run on every request on the cached answer (no I/O): idle
/// expiry, networks, read-only, scopes, uses left; in that order, so a key used from the wrong
/// place says only "invalid".
pub fn admit(
    verified: &Verified,
    attempt: &Attempt<'_>,
    at: DateTime<Utc>,
) -> Result<Pending, Refusal> {
    let access = &verified.access;
    if access.idle_expiry_days().is_some() {
        let last_active = verified
            .token
            .last_used_at
            .unwrap_or(verified.token.created_at);
        if access.is_idle_expired(last_active, at) {
            return Err(Refusal::IdleExpired);
        }
    }
    let Attempt::Use(used) = attempt else {
        return Ok(Pending::default());
    };
    let mut pending = Pending::default();
    if access.awaits_pin() {
        // No address to pin to cannot be let through: the pin is the token's only network.
        pending.pin_to = Some(used.address.ok_or(Refusal::OutsideNetworks)?);
    } else if !access.allows(used.address) {
        return Err(if access.pin_ip() {
            Refusal::PinnedElsewhere
        } else {
            Refusal::OutsideNetworks
        });
    }
    if used.writes && access.read_only() {
        return Err(Refusal::ReadOnly);
    }
    if !access.has_scopes(used.scopes) {
        return Err(Refusal::MissingScope);
    }
    if let Some(remaining) = access.remaining_uses() {
        if remaining == 0 {
            return Err(Refusal::NoUsesLeft);
        }
        pending.take_use = true;
    }
    pending.retire_previous = verified.token.retire_previous_on_use
        && !verified.previous_key
        && verified.token.previous_key_digest.is_some();
    Ok(pending)
}
