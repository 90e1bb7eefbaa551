//! Login throttling: a sliding window of failed attempts per username and per client address,
//! with a lock-out that doubles as failures pile up.
//!
//! An attempt is recorded *before* its password is checked and counts against the limit while it
//! is in flight, so a burst of simultaneous guesses cannot all slip through before the first
//! failure is written. A success removes its own record and, for the username, every earlier
//! failure; a failure stays for the horizon (the window × 16) and then drops out.
//!
//! The records live where every instance sees them: in the database, or in Redis when it is
//! configured. Adding instances does not multiply an attacker's attempts.

use std::{net::IpAddr, time::Duration};

use chrono::{DateTime, TimeDelta, Utc};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, sea_query::Expr,
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{names::Username, now};
use crate::entities::login_attempts;

/// The highest limit configuration accepts: the store reads up to `TIERS + 1` times the limit
/// of attempts per key, so the limit bounds the work of every login.
pub const MAX_LIMIT: u32 = 10_000;
/// The longest lock-out, as a multiple of the window; failures older than this are forgotten.
const HORIZON_WINDOWS: u32 = 16;
/// The lock-out doubles this many times (up to the horizon) after the first.
const DOUBLINGS: u32 = HORIZON_WINDOWS.ilog2();
/// An attempt refused only because others are still in flight can retry almost at once.
const BUSY_RETRY: Duration = Duration::from_secs(1);

#[derive(Clone, Debug)]
pub struct ThrottleConfig {
    /// Failures one username may collect within a window.
    pub per_username: u32,
    /// Failures one client address may collect within a window, across all usernames.
    pub per_address: u32,
    pub window: Duration,
}

impl ThrottleConfig {
    fn horizon(&self) -> Duration {
        self.window * HORIZON_WINDOWS
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ThrottleError {
    #[error("too many login attempts; try again in {} seconds", .retry_after.as_secs())]
    Throttled { retry_after: Duration },
    #[error("database error")]
    Db(#[from] DbErr),
    #[error("login throttle store (Redis) unavailable: {0}")]
    Redis(#[from] redis::RedisError),
}

/// Where attempts are recorded.
enum Store {
    Database(DatabaseConnection),
    Redis {
        connection: ConnectionManager,
        prefix: String,
    },
}

pub struct LoginThrottle {
    config: ThrottleConfig,
    store: Store,
}

/// A login in progress, recorded under its keys until it is settled.
#[must_use = "settle the attempt with succeeded() or failed()"]
pub struct Attempt {
    records: Vec<Record>,
}

struct Record {
    id: Uuid,
    key: String,
    at: DateTime<Utc>,
    is_username: bool,
}

/// A recorded attempt as read back from the store.
#[derive(Clone, Copy, Debug)]
struct Seen {
    at: DateTime<Utc>,
    failed: bool,
}

impl LoginThrottle {
    /// Attempts are kept in `db`, or in Redis when `redis_url` is given (keys start with `prefix`).
    pub async fn connect(
        config: ThrottleConfig,
        db: DatabaseConnection,
        redis_url: Option<&str>,
        prefix: &str,
    ) -> Result<LoginThrottle, ThrottleError> {
        let store = match redis_url {
            None => Store::Database(db),
            Some(url) => {
                let client = redis::Client::open(url)?;
                // A login waits on these calls: with Redis gone it should fail within a second
                // or two, not after the default six reconnection attempts.
                let config = ConnectionManagerConfig::new()
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(200))
                    .set_connection_timeout(Some(Duration::from_secs(1)))
                    .set_response_timeout(Some(Duration::from_secs(1)));
                Store::Redis {
                    connection: ConnectionManager::new_with_config(client, config).await?,
                    prefix: prefix.to_owned(),
                }
            }
        };
        Ok(LoginThrottle { config, store })
    }

    /// Records a login attempt for `username` from `address`, or refuses it with how long to wait.
    pub async fn begin(
        &self,
        username: &str,
        address: Option<&str>,
    ) -> Result<Attempt, ThrottleError> {
        let at = now();
        let mut keys = vec![(username_key(username), true, self.config.per_username)];
        if let Some(address) = address {
            keys.push((address_key(address), false, self.config.per_address));
        }
        let mut attempt = Attempt {
            records: Vec::new(),
        };
        let mut wait = None;
        for (key, is_username, limit) in keys {
            let record = Record {
                id: Uuid::now_v7(),
                key,
                at,
                is_username,
            };
            let others = match self.record_and_read(&record, limit).await {
                Ok(others) => others,
                Err(e) => {
                    attempt.records.push(record);
                    self.withdraw(attempt).await;
                    return Err(e);
                }
            };
            attempt.records.push(record);
            let needed = wait_needed(&others, limit, &self.config, at);
            wait = wait.max(needed);
        }
        match wait {
            None => Ok(attempt),
            Some(retry_after) => {
                // A refused attempt checks no password, so it is no failure: it is withdrawn.
                self.withdraw(attempt).await;
                Err(ThrottleError::Throttled { retry_after })
            }
        }
    }

    /// The password was right: the username's failures are forgiven; the address keeps its own.
    /// Other attempts still in flight stay, to be settled on their own.
    pub async fn succeeded(&self, attempt: Attempt) -> Result<(), ThrottleError> {
        for record in &attempt.records {
            if record.is_username {
                self.forget_failures(&record.key).await?;
            }
            self.remove(record).await?;
        }
        Ok(())
    }

    /// The password was wrong (or the user unknown or inactive: all the same here).
    pub async fn failed(&self, attempt: Attempt) -> Result<(), ThrottleError> {
        for record in &attempt.records {
            self.mark_failed(record).await?;
        }
        Ok(())
    }

    /// Deletes attempts older than the horizon (Redis expires its own). Returns how many.
    pub async fn prune(&self) -> Result<u64, ThrottleError> {
        let Store::Database(db) = &self.store else {
            return Ok(0);
        };
        let cutoff = now() - delta(self.config.horizon());
        let done = login_attempts::Entity::delete_many()
            .filter(login_attempts::Column::AttemptedAt.lt(cutoff))
            .exec(db)
            .await?;
        Ok(done.rows_affected)
    }

    /// Removes the attempt's records after a refusal or an error. Best effort: a record left
    /// behind only counts as one more failure until the horizon.
    async fn withdraw(&self, attempt: Attempt) {
        for record in &attempt.records {
            if let Err(e) = self.remove(record).await {
                log::warn!("could not withdraw a login attempt record: {e}");
            }
        }
    }

    /// Adds the record (in flight) and returns the key's other attempts within the horizon.
    /// (Older ones are ignored here; `prune` deletes them from the database, Redis at once.)
    async fn record_and_read(
        &self,
        record: &Record,
        limit: u32,
    ) -> Result<Vec<Seen>, ThrottleError> {
        let horizon_start = record.at - delta(self.config.horizon());
        // Enough for the top tier of the back-off, plus the attempts in flight.
        let enough = u64::from(limit.min(MAX_LIMIT)) * u64::from(DOUBLINGS + 2);
        match &self.store {
            Store::Database(db) => {
                login_attempts::Entity::insert(login_attempts::ActiveModel {
                    id: Set(record.id),
                    throttle_key: Set(record.key.clone()),
                    attempted_at: Set(record.at),
                    failed: Set(false),
                })
                .exec_without_returning(db)
                .await?;
                let rows: Vec<(DateTime<Utc>, bool)> = login_attempts::Entity::find()
                    .select_only()
                    .column(login_attempts::Column::AttemptedAt)
                    .column(login_attempts::Column::Failed)
                    .filter(login_attempts::Column::ThrottleKey.eq(record.key.as_str()))
                    .filter(login_attempts::Column::AttemptedAt.gte(horizon_start))
                    .filter(login_attempts::Column::Id.ne(record.id))
                    .order_by_desc(login_attempts::Column::AttemptedAt)
                    .limit(enough)
                    .into_tuple()
                    .all(db)
                    .await?;
                Ok(rows
                    .into_iter()
                    .map(|(at, failed)| Seen { at, failed })
                    .collect())
            }
            Store::Redis { connection, prefix } => {
                let key = format!("{prefix}{}", record.key);
                let mut connection = connection.clone();
                let (members,): (Vec<(String, f64)>,) = redis::pipe()
                    .atomic()
                    .cmd("ZREMRANGEBYSCORE")
                    .arg(&key)
                    .arg("-inf")
                    .arg(format!("({}", horizon_start.timestamp_millis()))
                    .ignore()
                    .cmd("ZADD")
                    .arg(&key)
                    .arg(record.at.timestamp_millis())
                    .arg(in_flight_member(record.id))
                    .ignore()
                    .cmd("PEXPIRE")
                    .arg(&key)
                    .arg(self.config.horizon().as_millis() as u64)
                    .ignore()
                    .cmd("ZRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(enough)
                    .arg("REV")
                    .arg("WITHSCORES")
                    .query_async(&mut connection)
                    .await?;
                let own = record.id.to_string();
                Ok(members
                    .into_iter()
                    .filter(|(member, _)| !member.ends_with(&own))
                    .filter_map(|(member, score)| {
                        let at = DateTime::from_timestamp_millis(score as i64)?;
                        Some(Seen {
                            at,
                            failed: member.starts_with(FAILED),
                        })
                    })
                    .collect())
            }
        }
    }

    async fn mark_failed(&self, record: &Record) -> Result<(), ThrottleError> {
        match &self.store {
            Store::Database(db) => {
                login_attempts::Entity::update_many()
                    .col_expr(login_attempts::Column::Failed, Expr::value(true))
                    .filter(login_attempts::Column::Id.eq(record.id))
                    .exec(db)
                    .await?;
            }
            Store::Redis { connection, prefix } => {
                let key = format!("{prefix}{}", record.key);
                let mut connection = connection.clone();
                let () = redis::pipe()
                    .atomic()
                    .cmd("ZREM")
                    .arg(&key)
                    .arg(in_flight_member(record.id))
                    .ignore()
                    .cmd("ZADD")
                    .arg(&key)
                    .arg(record.at.timestamp_millis())
                    .arg(format!("{FAILED}{}", record.id))
                    .ignore()
                    .cmd("PEXPIRE")
                    .arg(&key)
                    .arg(self.config.horizon().as_millis() as u64)
                    .ignore()
                    .query_async(&mut connection)
                    .await?;
            }
        }
        Ok(())
    }

    async fn remove(&self, record: &Record) -> Result<(), ThrottleError> {
        match &self.store {
            Store::Database(db) => {
                login_attempts::Entity::delete_by_id(record.id)
                    .exec(db)
                    .await?;
            }
            Store::Redis { connection, prefix } => {
                let mut connection = connection.clone();
                let _: i64 = redis::cmd("ZREM")
                    .arg(format!("{prefix}{}", record.key))
                    .arg(in_flight_member(record.id))
                    .query_async(&mut connection)
                    .await?;
            }
        }
        Ok(())
    }

    async fn forget_failures(&self, key: &str) -> Result<(), ThrottleError> {
        match &self.store {
            Store::Database(db) => {
                login_attempts::Entity::delete_many()
                    .filter(login_attempts::Column::ThrottleKey.eq(key))
                    .filter(login_attempts::Column::Failed.eq(true))
                    .exec(db)
                    .await?;
            }
            Store::Redis { connection, prefix } => {
                let mut connection = connection.clone();
                let _: i64 = redis::Script::new(FORGET_FAILURES)
                    .key(format!("{prefix}{key}"))
                    .invoke_async(&mut connection)
                    .await?;
            }
        }
        Ok(())
    }
}

/// Removes the `f:` members of a sorted set in one step, leaving attempts in flight.
const FORGET_FAILURES: &str = r#"
local removed = 0
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if string.sub(member, 1, 2) == 'f:' then
    removed = removed + redis.call('ZREM', KEYS[1], member)
  end
end
return removed
"#;

/// Deletes attempts too old to matter, every `interval`, for as long as the server runs.
pub async fn prune_every(interval: Duration, throttle: std::sync::Arc<LoginThrottle>) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(e) = throttle.prune().await {
            log::warn!("pruning old login attempts failed: {e}");
        }
    }
}

/// Redis sorted-set members: the state, then the attempt's id.
const IN_FLIGHT: &str = "p:";
const FAILED: &str = "f:";

fn in_flight_member(id: Uuid) -> String {
    format!("{IN_FLIGHT}{id}")
}

/// How long a new attempt must wait, given the key's other recent attempts; `None` lets it in.
///
/// Locked out while the `limit` newest failures fall within one lock-out period. The period is
/// the window at first (a plain sliding window: `limit` failures per window) and doubles with
/// every further `limit` failures within the horizon. Attempts still in flight count as
/// failures until they are settled; one in flight for longer than a window died unsettled.
fn wait_needed(
    others: &[Seen],
    limit: u32,
    config: &ThrottleConfig,
    now: DateTime<Utc>,
) -> Option<Duration> {
    let limit = limit.max(1) as usize;
    let window_start = now - delta(config.window);
    let horizon_start = now - delta(config.horizon());
    let mut failures: Vec<DateTime<Utc>> = others
        .iter()
        .filter(|seen| seen.at >= horizon_start && (seen.failed || seen.at < window_start))
        .map(|seen| seen.at)
        .collect();
    failures.sort_unstable_by(|a, b| b.cmp(a));
    if failures.len() >= limit {
        let doublings = (failures.len() / limit - 1).min(DOUBLINGS as usize);
        let lockout = config.window * (1u32 << doublings);
        let until = failures[limit - 1] + delta(lockout);
        if until > now {
            return Some(whole_seconds(until - now));
        }
    }
    let recent_failures = failures.iter().filter(|at| **at >= window_start).count();
    let in_flight = others
        .iter()
        .filter(|seen| !seen.failed && seen.at >= window_start)
        .count();
    (recent_failures + in_flight >= limit).then_some(BUSY_RETRY)
}

/// Rounded up, and at least one second: what `Retry-After` can say.
fn whole_seconds(wait: TimeDelta) -> Duration {
    let millis = wait.num_milliseconds().max(1) as u64;
    Duration::from_secs(millis.div_ceil(1000))
}

fn delta(duration: Duration) -> TimeDelta {
    TimeDelta::from_std(duration).unwrap_or(TimeDelta::MAX)
}

/// A username as every spelling of it compares, digested: the store holds no list of the names
/// people tried, and every key has the same length whatever was typed.
fn username_key(username: &str) -> String {
    let folded = match Username::parse(username) {
        Ok(name) => name.key(),
        Err(_) => username.trim().to_lowercase(),
    };
    let digest = Sha256::digest(folded.as_bytes());
    format!("user:{}", &hex::encode(digest)[..32])
}

/// An IPv4 address as it is; an IPv6 address as its /64, since one client usually holds a
/// whole /64 and could otherwise rotate through it.
fn address_key(address: &str) -> String {
    match address.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => {
            let segments = v6.segments();
            format!(
                "addr:{:x}:{:x}:{:x}:{:x}::/64",
                segments[0], segments[1], segments[2], segments[3]
            )
        }
        Ok(IpAddr::V6(v6)) => format!("addr:{}", v6.to_canonical()),
        Ok(ip) => format!("addr:{ip}"),
        Err(_) => format!("addr:{}", address.chars().take(64).collect::<String>()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn config() -> ThrottleConfig {
        ThrottleConfig {
            per_username: 5,
            per_address: 20,
            window: MINUTE,
        }
    }

    fn failures_at(now: DateTime<Utc>, seconds_ago: &[i64]) -> Vec<Seen> {
        seconds_ago
            .iter()
            .map(|s| Seen {
                at: now - TimeDelta::seconds(*s),
                failed: true,
            })
            .collect()
    }

    #[test]
    fn the_limit_within_one_window_locks_until_the_oldest_of_them_leaves_it() {
        let now = Utc::now();
        let four = failures_at(now, &[1, 2, 3, 4]);
        assert_eq!(
            wait_needed(&four, 5, &config(), now),
            None,
            "4 of 5 allowed"
        );
        let five = failures_at(now, &[1, 2, 3, 4, 50]);
        assert_eq!(
            wait_needed(&five, 5, &config(), now),
            Some(Duration::from_secs(10)),
            "the failure 50 s ago leaves the 60 s window in 10 s"
        );
        let spread = failures_at(now, &[1, 2, 3, 4, 61]);
        assert_eq!(
            wait_needed(&spread, 5, &config(), now),
            None,
            "only 4 failures fall within the last minute"
        );
    }

    #[test]
    fn the_lockout_doubles_with_every_further_limit_of_failures_up_to_the_horizon() {
        let now = Utc::now();
        let ten = failures_at(now, &[1, 2, 3, 4, 100, 101, 102, 103, 104, 105]);
        assert_eq!(
            wait_needed(&ten, 5, &config(), now),
            Some(Duration::from_secs(20)),
            "ten failures: a two-minute lock-out from the fifth newest (100 s ago)"
        );
        let many: Vec<i64> = (0..200).map(|i| 1 + i * 4).collect();
        let wait = wait_needed(&failures_at(now, &many), 5, &config(), now).unwrap();
        assert!(
            wait <= MINUTE * HORIZON_WINDOWS && wait > MINUTE * 8,
            "the lock-out grows but never past the horizon: {wait:?}"
        );
    }

    #[test]
    fn attempts_in_flight_count_while_fresh_and_only_delay_for_a_second() {
        let now = Utc::now();
        let mut seen = failures_at(now, &[1, 2]);
        let in_flight = |s: i64| Seen {
            at: now - TimeDelta::seconds(s),
            failed: false,
        };
        seen.extend([in_flight(0), in_flight(0)]);
        assert_eq!(wait_needed(&seen, 5, &config(), now), None);
        seen.push(in_flight(0));
        assert_eq!(wait_needed(&seen, 5, &config(), now), Some(BUSY_RETRY));
        // An attempt in flight for longer than a window died unsettled: a failure.
        let stale = vec![in_flight(61); 5];
        assert_eq!(
            wait_needed(&stale, 5, &config(), now),
            None,
            "stale ones are failures older than the window"
        );
    }

    #[test]
    fn every_spelling_of_a_username_shares_one_key_and_no_key_reveals_it() {
        assert_eq!(username_key("Alice"), username_key(" alice "));
        assert_ne!(username_key("alice"), username_key("bob"));
        assert!(!username_key("alice").contains("alice"));
        assert_eq!(username_key(&"x".repeat(10_000)).len(), "user:".len() + 32);
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_slash_64() {
        assert_eq!(
            address_key("2001:db8:1:2:aaaa::1"),
            address_key("2001:db8:1:2:bbbb::2")
        );
        assert_ne!(
            address_key("2001:db8:1:2::1"),
            address_key("2001:db8:1:3::1")
        );
        assert_eq!(address_key("::ffff:10.0.0.1"), "addr:10.0.0.1");
        assert_eq!(address_key("10.0.0.1"), "addr:10.0.0.1");
    }
}
