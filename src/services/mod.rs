//! The domain: rules, owner scoping and transactions. Knows nothing of HTTP.
pub mod audit;
pub mod login;
pub mod name_skeletons;
pub mod names;
pub mod overview;
pub mod pairing;
pub mod throttle;
pub mod tokens;
pub mod users;

use std::time::Duration;

/// The rules that shape issuance, from configuration.
#[derive(Clone, Debug)]
pub struct Policy {
    pub session_ttl: Duration,
    pub max_tokens_per_user: u32,
    pub token_on_signup: bool,
    /// The idle expiry a new device token gets unless its creator says otherwise.
    pub device_idle_expiry_days: Option<u32>,
}

/// A field that failed validation, with a message fit to show the person who typed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    pub field: &'static str,
    pub message: String,
}

impl Invalid {
    pub fn new(field: &'static str, message: impl Into<String>) -> Invalid {
        Invalid {
            field,
            message: message.into(),
        }
    }
}

/// A unique index refused the row: a domain conflict (409), never a server error.
fn is_unique_violation(error: &sea_orm::DbErr) -> bool {
    matches!(
        error.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}

pub(crate) fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

/// The start of `at`'s hour (UTC): the unit usage is counted and charted in.
pub fn hour_start(at: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    use chrono::Timelike;
    at.with_minute(0)
        .and_then(|at| at.with_second(0))
        .and_then(|at| at.with_nanosecond(0))
        .unwrap_or(at)
}

/// Runs `task` now, then every `interval`, until aborted: the periodic clean-ups (expired
/// pairings, usage history and audit events past their retention). What it removed is logged at debug level, a failure
/// as a warning; the next round tries again.
pub async fn repeat_every<Task, Run, E>(
    interval: std::time::Duration,
    what: &'static str,
    task: Task,
) where
    Task: Fn() -> Run,
    Run: std::future::Future<Output = Result<u64, E>>,
    E: std::fmt::Display,
{
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match task().await {
            Ok(0) => {}
            Ok(count) => log::debug!("{what}: {count} removed"),
            Err(e) => log::warn!("{what} failed (tried again next time): {e}"),
        }
    }
}
