//! Pairing a device: the OAuth device grant (RFC 8628), ending in a named device token in the
//! approver's list. The device asks for a pair of codes (`start`) and polls with the long one
//! (`poll`); a signed-in person names the short one (`look_up`, `approve`, `deny`) and chooses
//! the token's name and policy. The token is made at approval, with a key nobody sees; the device
//! gets a fresh key when it collects the token, exactly once, so no key is ever stored.
//!
//! Both codes are kept as digests. Naming a wrong code counts like a failed login.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect, sea_query::Expr,
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{
    Policy,
    audit::{self, Action, Actor, Event, Target},
    is_unique_violation, now,
    throttle::{LoginThrottle, ThrottleError},
    tokens::{self, NewToken, TokenError, TokenName},
};
use crate::{
    auth::{
        key::TokenKey,
        random::{random_from, random_hex},
    },
    entities::{pairings, tokens as token_rows, users},
    verify::{Revocation, Revocations},
};

/// RFC 8628 §6.1: consonants only (no vowels, so no words), no look-alikes such as 0 and O.
pub const USER_CODE_ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";
const USER_CODE_LEN: usize = 8;
/// 256 bits: the device code is the device's only credential until it holds its key.
const DEVICE_CODE_BYTES: usize = 32;
/// RFC 8628 §3.5: a device told to slow down waits this much longer from then on.
pub const SLOW_DOWN_STEP_SECONDS: i32 = 5;
/// Expired pairings stay this long (a late poll answers `expired_token`), then are deleted.
const KEPT_AFTER_EXPIRY: TimeDelta = TimeDelta::days(1);
/// Pairings one address may have waiting at once: asking needs no key, so without a bound
/// anyone could fill the table. A household or a fleet being set up stays far below it.
pub const MAX_PENDING_PER_ADDRESS: u64 = 20;

/// How long codes live and how often a device may poll.
#[derive(Clone, Debug)]
pub struct PairingConfig {
    pub ttl: Duration,
    pub interval: Duration,
}

const PENDING: &str = "pending";
const APPROVED: &str = "approved";
const DENIED: &str = "denied";
const COLLECTED: &str = "collected";

#[derive(Debug, thiserror::Error)]
pub enum PairingError {
    /// Unknown, expired, approved or denied: the approver is told no more than that.
    #[error("unknown, expired or already used pairing code")]
    UnknownCode,
    /// `MAX_PENDING_PER_ADDRESS` pairings from this address wait already; the oldest ends after
    /// `retry_after`.
    #[error("too many pairings are waiting for approval from this address")]
    TooManyPending { retry_after: Duration },
    #[error(transparent)]
    Throttle(#[from] ThrottleError),
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("database error")]
    Db(#[from] DbErr),
}

/// The short code a person types: eight letters of `USER_CODE_ALPHABET`, shown `XXXX-XXXX`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserCode(String);

impl UserCode {
    fn generate() -> UserCode {
        UserCode(random_from(USER_CODE_ALPHABET, USER_CODE_LEN))
    }

    /// Typed in any case, with or without the dash and spaces; `None` when it cannot be a code.
    pub fn parse(text: &str) -> Option<UserCode> {
        let code: String = text
            .chars()
            .filter(|c| *c != '-' && !c.is_whitespace())
            .map(|c| c.to_ascii_uppercase())
            .collect();
        let valid =
            code.len() == USER_CODE_LEN && code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b));
        valid.then_some(UserCode(code))
    }

    pub fn display(&self) -> String {
        format!("{}-{}", &self.0[..4], &self.0[4..])
    }

    fn digest(&self) -> String {
        hex::encode(Sha256::digest(format!("user-code:{}", self.0)))
    }
}

fn device_code_digest(code: &str) -> String {
    hex::encode(Sha256::digest(format!("device-code:{code}")))
}

/// What a device is told when it asks to be paired.
pub struct Started {
    pub device_code: String,
    pub user_code: UserCode,
    pub expires_in: Duration,
    pub interval: Duration,
}

/// Starts a pairing for a device that calls itself `suggested_name`, asking from `address`.
pub async fn start(
    db: &DatabaseConnection,
    config: &PairingConfig,
    suggested_name: Option<TokenName>,
    address: Option<String>,
) -> Result<Started, PairingError> {
    let at = now();
    if let Some(address) = &address {
        let waiting = pairings::Entity::find()
            .filter(pairings::Column::DeviceAddress.eq(address.as_str()))
            .filter(pairings::Column::State.eq(PENDING))
            .filter(pairings::Column::ExpiresAt.gt(at))
            .order_by_asc(pairings::Column::ExpiresAt)
            .limit(MAX_PENDING_PER_ADDRESS)
            .all(db)
            .await?;
        if waiting.len() as u64 >= MAX_PENDING_PER_ADDRESS {
            let retry_after = (waiting[0].expires_at - at).to_std().unwrap_or_default();
            return Err(PairingError::TooManyPending {
                retry_after: retry_after.max(Duration::from_secs(1)),
            });
        }
    }
    let ttl = TimeDelta::from_std(config.ttl).unwrap_or(TimeDelta::MAX);
    // A user code is 20^8 ≈ 2.6e10: a clash with a live one is rare, but cheap to survive.
    let mut attempts_left = 3;
    loop {
        let device_code = random_hex(DEVICE_CODE_BYTES);
        let user_code = UserCode::generate();
        let inserted = pairings::ActiveModel {
            id: Set(Uuid::now_v7()),
            device_code_digest: Set(device_code_digest(&device_code)),
            user_code_digest: Set(user_code.digest()),
            suggested_name: Set(suggested_name.as_ref().map(|n| n.as_str().to_owned())),
            device_address: Set(address.clone()),
            created_at: Set(at),
            expires_at: Set(at + ttl),
            interval_seconds: Set(i32::try_from(config.interval.as_secs()).unwrap_or(i32::MAX)),
            last_polled_at: Set(None),
            state: Set(PENDING.to_owned()),
            token_id: Set(None),
        }
        .insert(db)
        .await;
        match inserted {
            Ok(_) => {
                return Ok(Started {
                    device_code,
                    user_code,
                    expires_in: config.ttl,
                    interval: config.interval,
                });
            }
            Err(e) if is_unique_violation(&e) && attempts_left > 0 => attempts_left -= 1,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Deletes pairings that expired more than `KEPT_AFTER_EXPIRY` ago (the periodic sweep); returns
/// how many.
pub async fn prune(db: &impl ConnectionTrait) -> Result<u64, DbErr> {
    let done = pairings::Entity::delete_many()
        .filter(pairings::Column::ExpiresAt.lt(now() - KEPT_AFTER_EXPIRY))
        .exec(db)
        .await?;
    Ok(done.rows_affected)
}

/// A pairing waiting for its approver, as the approval page shows it.
pub struct Pending {
    pub user_code: UserCode,
    pub suggested_name: Option<String>,
    pub device_address: Option<String>,
    pub expires_at: DateTime<Utc>,
}

/// The pending pairing of `code`, named by `approver`: a wrong code counts as a failed attempt
/// for the approver and their address.
pub async fn look_up(
    db: &DatabaseConnection,
    throttle: &LoginThrottle,
    approver: &Actor,
    code: &str,
) -> Result<Pending, PairingError> {
    let (row, code) = find_pending_throttled(db, throttle, approver, code).await?;
    Ok(Pending {
        user_code: code,
        suggested_name: row.suggested_name,
        device_address: row.device_address,
        expires_at: row.expires_at,
    })
}

/// What an approver says: the code the device shows, and the device token to give it (named
/// after the device's suggestion, or its code, when it has no name).
pub struct Approval<'a> {
    pub code: &'a str,
    pub token: NewToken,
}

/// Approves a pairing: `user` gets the device token, which the device collects on its next poll.
pub async fn approve(
    db: &DatabaseConnection,
    revocations: &Revocations,
    policy: &Policy,
    throttle: &LoginThrottle,
    approver: &Actor,
    user: &users::Model,
    approval: Approval<'_>,
) -> Result<token_rows::Model, PairingError> {
    let Approval {
        code,
        token: mut new,
    } = approval;
    let (pairing, code) = find_pending_throttled(db, throttle, approver, code).await?;
    if new.name.is_none() {
        let fallback = format!("device {}", code.display());
        new.name = Some(
            match pairing.suggested_name.as_deref().map(TokenName::parse) {
                Some(Ok(name)) => name,
                _ => TokenName::parse(&fallback).map_err(TokenError::from)?,
            },
        );
    }
    let txn = revocations.begin(db).await?;
    // The key made here is dropped unseen: the device gets its own when it collects the token.
    let issued = tokens::issue_in(&txn, policy, approver, user, new).await?;
    let claimed = pairings::Entity::update_many()
        .col_expr(pairings::Column::State, Expr::value(APPROVED))
        .col_expr(pairings::Column::TokenId, Expr::value(issued.token.id))
        .filter(pairings::Column::Id.eq(pairing.id))
        .filter(pairings::Column::State.eq(PENDING))
        .filter(pairings::Column::ExpiresAt.gt(now()))
        .exec(&txn)
        .await?;
    if claimed.rows_affected == 0 {
        // Approved or denied by a concurrent request; dropping `txn` rolls the token back.
        return Err(PairingError::UnknownCode);
    }
    let device = match &pairing.device_address {
        Some(address) => format!("device at {address}"),
        None => "device address unknown".to_owned(),
    };
    audit::record(
        &txn,
        approver,
        Event::new(
            Action::DevicePaired,
            Target::token(&issued.token, &user.username),
        )
        .with_detail(device),
    )
    .await?;
    txn.commit().await?;
    log::info!(
        "device paired: token {} for user {}",
        issued.token.id,
        user.username
    );
    Ok(issued.token)
}

/// Refuses the pairing of `code`: the device's next poll answers `access_denied`.
pub async fn deny(
    db: &DatabaseConnection,
    throttle: &LoginThrottle,
    approver: &Actor,
    code: &str,
) -> Result<(), PairingError> {
    let (pairing, _) = find_pending_throttled(db, throttle, approver, code).await?;
    let denied = set_state(db, pairing.id, PENDING, DENIED).await?;
    if denied {
        Ok(())
    } else {
        Err(PairingError::UnknownCode)
    }
}

/// Why a poll gets no token (RFC 8628 §3.5 names them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotYet {
    /// Not approved yet: poll again after the interval.
    Pending,
    /// Polled before the interval passed: from now on wait this many seconds.
    SlowDown {
        interval: i32,
    },
    Denied,
    Expired,
    /// Unknown, or already collected.
    InvalidGrant,
}

impl NotYet {
    /// The RFC's error code.
    pub fn code(self) -> &'static str {
        match self {
            NotYet::Pending => "authorization_pending",
            NotYet::SlowDown { .. } => "slow_down",
            NotYet::Denied => "access_denied",
            NotYet::Expired => "expired_token",
            NotYet::InvalidGrant => "invalid_grant",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error("{}", .0.code())]
    NotYet(NotYet),
    #[error("database error")]
    Db(#[from] DbErr),
}

/// The device's token, with its key: shown this once.
pub struct Collected {
    pub token: token_rows::Model,
    pub key: TokenKey,
    pub owner: users::Model,
}

/// The device asks whether its pairing was approved; once it was, it gets the token's key,
/// exactly once.
pub async fn poll(
    db: &DatabaseConnection,
    revocations: &Revocations,
    device_code: &str,
) -> Result<Collected, PollError> {
    let not_yet = |reason| Err(PollError::NotYet(reason));
    let Some(pairing) = pairings::Entity::find()
        .filter(pairings::Column::DeviceCodeDigest.eq(device_code_digest(device_code)))
        .one(db)
        .await?
    else {
        return not_yet(NotYet::InvalidGrant);
    };
    let at = now();
    match pairing.state.as_str() {
        COLLECTED => return not_yet(NotYet::InvalidGrant),
        DENIED => return not_yet(NotYet::Denied),
        _ if at >= pairing.expires_at => return not_yet(NotYet::Expired),
        PENDING => return not_yet(pace(db, &pairing, at).await?),
        _ => {}
    }
    let txn = revocations.begin(db).await?;
    if !set_state(&txn, pairing.id, APPROVED, COLLECTED).await? {
        return not_yet(NotYet::InvalidGrant);
    }
    let token = match pairing.token_id {
        Some(id) => token_rows::Entity::find_by_id(id).one(&txn).await?,
        None => None,
    };
    let Some(token) = token else {
        // The owner deleted the token before the device came for it.
        txn.commit().await?;
        return not_yet(NotYet::Denied);
    };
    let key = TokenKey::generate();
    let mut keyed: token_rows::ActiveModel = token.into();
    keyed.key_digest = Set(key.digest().to_hex());
    keyed.key_prefix = Set(key.display_prefix());
    let token = keyed.update(&txn).await?;
    let owner = users::Entity::find_by_id(token.user_id)
        .one(&txn)
        .await?
        .ok_or(PollError::NotYet(NotYet::Denied))?;
    txn.revoke(Revocation::Token(token.id));
    txn.commit().await?;
    log::info!("paired device collected token {}", token.id);
    Ok(Collected { token, key, owner })
}

/// A pending pairing's poll: too soon after the last one, the device must slow down.
async fn pace(
    db: &DatabaseConnection,
    pairing: &pairings::Model,
    at: DateTime<Utc>,
) -> Result<NotYet, DbErr> {
    let too_soon = pairing
        .last_polled_at
        .is_some_and(|last| at - last < TimeDelta::seconds(i64::from(pairing.interval_seconds)));
    let interval = if too_soon {
        pairing
            .interval_seconds
            .saturating_add(SLOW_DOWN_STEP_SECONDS)
    } else {
        pairing.interval_seconds
    };
    pairings::Entity::update_many()
        .col_expr(pairings::Column::LastPolledAt, Expr::value(at))
        .col_expr(pairings::Column::IntervalSeconds, Expr::value(interval))
        .filter(pairings::Column::Id.eq(pairing.id))
        .exec(db)
        .await?;
    Ok(if too_soon {
        NotYet::SlowDown { interval }
    } else {
        NotYet::Pending
    })
}

async fn find_pending_throttled(
    db: &DatabaseConnection,
    throttle: &LoginThrottle,
    approver: &Actor,
    code: &str,
) -> Result<(pairings::Model, UserCode), PairingError> {
    let approver_id = approver.user_id.unwrap_or_default();
    let attempt = throttle
        .begin_pairing(approver_id, approver.address.as_deref())
        .await?;
    let found = match UserCode::parse(code) {
        Some(code) => pairings::Entity::find()
            .filter(pairings::Column::UserCodeDigest.eq(code.digest()))
            .filter(pairings::Column::State.eq(PENDING))
            .filter(pairings::Column::ExpiresAt.gt(now()))
            .one(db)
            .await
            .map(|row| row.map(|row| (row, code))),
        None => Ok(None),
    };
    match found {
        Ok(Some(found)) => {
            throttle.succeeded(attempt).await?;
            Ok(found)
        }
        Ok(None) => {
            throttle.failed(attempt).await?;
            Err(PairingError::UnknownCode)
        }
        Err(e) => {
            // Not the approver's fault: settled as a success, which forgives nothing here.
            throttle.succeeded(attempt).await?;
            Err(e.into())
        }
    }
}

/// Moves a pairing from `from` to `to`; false when it was no longer in `from`.
async fn set_state(
    db: &impl ConnectionTrait,
    id: Uuid,
    from: &str,
    to: &str,
) -> Result<bool, DbErr> {
    let moved = pairings::Entity::update_many()
        .col_expr(pairings::Column::State, Expr::value(to))
        .filter(pairings::Column::Id.eq(id))
        .filter(pairings::Column::State.eq(from))
        .exec(db)
        .await?;
    Ok(moved.rows_affected == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes_are_typed_in_any_case_with_or_without_dash_and_spaces() {
        let code = UserCode::parse("BCDF-GHJK").expect("canonical form");
        assert_eq!(code.display(), "BCDF-GHJK");
        for typed in ["bcdfghjk", "bcdf-ghjk", " BcDf GhJk ", "b-c-d-f-g-h-j-k"] {
            assert_eq!(UserCode::parse(typed), Some(code.clone()), "{typed:?}");
        }
        for bad in [
            "",
            "BCDF-GHJ",
            "BCDF-GHJKL",
            "ABCD-EFGH",
            "BCDF-GHJ1",
            "ＢCDF-GHJK",
        ] {
            assert_eq!(UserCode::parse(bad), None, "{bad:?} is no code");
        }
    }

    #[test]
    fn generated_user_codes_use_the_alphabet_only() {
        for _ in 0..200 {
            let code = UserCode::generate();
            assert_eq!(UserCode::parse(&code.display()), Some(code.clone()));
        }
    }

    #[test]
    fn the_two_codes_digest_apart() {
        assert_ne!(
            device_code_digest("BCDFGHJK"),
            UserCode("BCDFGHJK".into()).digest()
        );
    }
}
