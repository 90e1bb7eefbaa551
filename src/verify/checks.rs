//! What a looked-up token must pass before it is accepted, wherever its row came from (the pool,
//! the direct SQLite read) and whether or not the answer is then cached. Per-token policy checks
//! (read-only, scopes, networks, uses) belong in [`accept`], after the owner's state.

use std::{sync::Arc, time::Instant};

use chrono::{DateTime, Utc};

use crate::{
    auth::key::KeyDigest,
    entities::{tokens, users},
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
    /// The verifier's generation read before the lookup that produced this answer.
    pub(super) generation: u64,
    /// When that generation was read: the cache trusts the answer for one TTL from here.
    pub(super) looked_up: Instant,
}

impl std::ops::Deref for Authenticated {
    type Target = Verified;

    fn deref(&self) -> &Verified {
        &self.0
    }
}

impl Authenticated {
    pub fn new(user: users::Model, token: tokens::Model) -> Authenticated {
        Authenticated(Arc::new(Verified {
            user,
            token,
            generation: 0,
            looked_up: Instant::now(),
        }))
    }

    /// The same answer, marked with the generation its lookup started at, read at `looked_up`
    /// (for the cache).
    pub(super) fn stamped(mut self, generation: u64, looked_up: Instant) -> Authenticated {
        match Arc::get_mut(&mut self.0) {
            Some(verified) => {
                verified.generation = generation;
                verified.looked_up = looked_up;
                self
            }
            None => Authenticated(Arc::new(Verified {
                user: self.user.clone(),
                token: self.token.clone(),
                generation,
                looked_up,
            })),
        }
    }
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
    // The index found the row by digest; this constant-time check is the one that decides.
    if !digest.matches_hex(&token.key_digest) {
        return Err(AuthError::Invalid);
    }
    if is_expired_at(&token, Utc::now()) {
        log::debug!("token {} refused: expired", token.id);
        return Err(AuthError::Expired);
    }
    let user = user.ok_or(AuthError::Invalid)?;
    if !user.is_active {
        log::debug!("token {} refused: user {} inactive", token.id, user.id);
        return Err(AuthError::InactiveUser);
    }
    // Per-token policy checks go here: after the owner, before the token is accepted (and cached).
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
    Ok(Authenticated::new(user, token))
}
