//! Login throttling: a sliding window of failed attempts per username and per client address,
//! with a lock-out that doubles as failures pile up.
//!
//! An attempt is recorded *before* its password is checked, and takes its turn (a time) only once
//! its record is visible to every reader. Attempts in flight take turns: one
//! goes ahead only while the settled failures plus the attempts in flight *before it* stay under
//! the limit; the others wait (at most `BURST_WAIT`) for those to settle and are then decided on
//! settled failures only. So a burst of guesses cannot all be checked before the first failure
//! counts, and a burst of correct logins is slowed, never refused. A success removes its own
//! record and, for the username, every earlier failure; a failure stays for the horizon (the
//! window × 16) and then drops out.
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
/// The longest an attempt waits for its turn behind attempts in flight before it is refused
/// (with `BUSY_RETRY`). Generous: a burst of logins on a loaded two-core machine settles one
/// argon2 check after another.
pub const BURST_WAIT: Duration = Duration::from_secs(10);
/// A waiting attempt reads the store again this often (sooner when an attempt settles on this
/// instance): other instances' attempts settle unannounced.
const POLL_EVERY: Duration = Duration::from_millis(200);
/// An attempt that waited `BURST_WAIT` in vain can retry almost at once.
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
    /// Woken whenever an attempt of this instance settles, so that waiting ones look again.
    settled: tokio::sync::Notify,
    /// Attempts of this instance settled so far: a waiting attempt that needs more settlements
    /// before it could possibly go does not read the store again at every one.
    settlements: std::sync::atomic::AtomicU64,
    /// Attempts refused here, for `/metrics`.
    refused: std::sync::atomic::AtomicU64,
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
    limit: u32,
}

/// A recorded attempt as read back from the store.
#[derive(Clone, Copy, Debug)]
struct Seen {
    at: DateTime<Utc>,
    /// Orders attempts of the same instant, the same way for every reader.
    id: Uuid,
    failed: bool,
}

/// What an attempt may do, given the other attempts of one of its keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decision {
    /// Check the password.
    Go,
    /// Too many attempts before this one are still in flight: wait for them to settle.
    Wait,
    /// Locked out by settled failures, for this long.
    Refuse(Duration),
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
        Ok(LoginThrottle {
            config,
            store,
            settled: tokio::sync::Notify::new(),
            settlements: std::sync::atomic::AtomicU64::new(0),
            refused: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Records a login attempt for `username` from `address`, or refuses it with how long to wait.
    /// Waits (at most `BURST_WAIT`) while too many earlier attempts are still in flight.
    pub async fn begin(
        &self,
        username: &str,
        address: Option<&str>,
    ) -> Result<Attempt, ThrottleError> {
        let mut keys = vec![(username_key(username), true, self.config.per_username)];
        if let Some(address) = address {
            keys.push((address_key(address), false, self.config.per_address));
        }
        self.begin_keys(keys).await
    }

    /// Records an attempt to name a pairing code, made by `approver` from `address`: wrong codes
    /// count like failed logins, with the same limits, under keys of their own (a guessed code
    /// does not lock the approver out of signing in). A right code forgives nothing, since anyone
    /// can ask for a code of their own to name.
    pub async fn begin_pairing(
        &self,
        approver: Uuid,
        address: Option<&str>,
    ) -> Result<Attempt, ThrottleError> {
        let mut keys = vec![(
            format!("pair:user:{}", approver.simple()),
            false,
            self.config.per_username,
        )];
        if let Some(address) = address {
            keys.push((
                format!("pair:{}", address_key(address)),
                false,
                self.config.per_address,
            ));
        }
        self.begin_keys(keys).await
    }

    /// `keys`: (key, whether a success forgives its failures, limit).
    async fn begin_keys(&self, keys: Vec<(String, bool, u32)>) -> Result<Attempt, ThrottleError> {
        let at = whole_millis(now());
        let mut attempt = Attempt {
            records: Vec::new(),
        };
        // The records of one attempt differ only in the id's last bit, so that attempts take
        // their turns in one order on every key (else two could wait for each other).
        let attempt_id = Uuid::now_v7().as_u128() & !1;
        for (index, (key, is_username, limit)) in keys.into_iter().enumerate() {
            let record = Record {
                id: Uuid::from_u128(attempt_id | index as u128),
                key,
                at,
                is_username,
                limit,
            };
            let recorded = self.record(&record).await;
            attempt.records.push(record);
            if let Err(e) = recorded {
                self.withdraw(attempt).await;
                return Err(e);
            }
        }
        // The turn is taken only now that the records are visible (as in Lamport's bakery): an
        // attempt that takes a later turn then reads after this one is visible and counts it,
        // while one that took its turn earlier is seen here with a time no later than that.
        // (Taken before the insert, two racing attempts could each miss the other.)
        let ticket = whole_millis(now()).max(at);
        let mut settlements_at_read = self.settlements();
        let mut seen = Vec::new();
        for record in &mut attempt.records {
            record.at = ticket;
        }
        for record in &attempt.records {
            let read = match self.take_turn(record).await {
                Ok(()) => self.read_others(record).await,
                Err(e) => Err(e),
            };
            match read {
                Ok(others) => seen.push(others),
                Err(e) => {
                    self.withdraw(attempt).await;
                    return Err(e);
                }
            }
        }
        let deadline = tokio::time::Instant::now() + BURST_WAIT;
        loop {
            let mut decision = Decision::Go;
            for (record, others) in attempt.records.iter().zip(&seen) {
                let decided = decide(others, record, &self.config, now());
                decision = match (decision, decided) {
                    (Decision::Refuse(a), Decision::Refuse(b)) => Decision::Refuse(a.max(b)),
                    (Decision::Refuse(a), _) | (_, Decision::Refuse(a)) => Decision::Refuse(a),
                    (Decision::Wait, _) | (_, Decision::Wait) => Decision::Wait,
                    (Decision::Go, Decision::Go) => Decision::Go,
                };
            }
            let retry_after = match decision {
                Decision::Go => return Ok(attempt),
                Decision::Refuse(retry_after) => retry_after,
                Decision::Wait if tokio::time::Instant::now() >= deadline => BUSY_RETRY,
                Decision::Wait => {
                    // Each settlement here takes at most one attempt ahead out of flight: one
                    // far back in the queue sleeps through those it needs (other instances'
                    // settlements, and time moving the window, it sees at the next poll).
                    let needed = attempt
                        .records
                        .iter()
                        .zip(&seen)
                        .map(|(record, others)| {
                            settlements_needed(others, record, &self.config, now())
                        })
                        .max()
                        .unwrap_or(1);
                    let wake = deadline.min(tokio::time::Instant::now() + POLL_EVERY);
                    loop {
                        // Registered before the count is read, so no settlement slips between.
                        let settled = self.settled.notified();
                        tokio::pin!(settled);
                        settled.as_mut().enable();
                        if self.settlements() - settlements_at_read >= needed {
                            break;
                        }
                        tokio::select! {
                            () = settled => {}
                            () = tokio::time::sleep_until(wake) => break,
                        }
                    }
                    settlements_at_read = self.settlements();
                    seen.clear();
                    for record in &attempt.records {
                        match self.read_others(record).await {
                            Ok(others) => seen.push(others),
                            Err(e) => {
                                self.withdraw(attempt).await;
                                return Err(e);
                            }
                        }
                    }
                    continue;
                }
            };
            // A refused attempt checks no password, so it is no failure: it is withdrawn.
            self.refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.withdraw(attempt).await;
            return Err(ThrottleError::Throttled { retry_after });
        }
    }

    fn settlements(&self) -> u64 {
        self.settlements.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Counts a settlement and wakes the waiting attempts.
    fn settle(&self) {
        self.settlements
            .fetch_add(1, std::sync::atomic::Ordering::Release);
        self.settled.notify_waiters();
    }

    /// Attempts this instance refused since it started (logins and pairing codes).
    pub fn refused(&self) -> u64 {
        self.refused.load(std::sync::atomic::Ordering::Relaxed)
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
        self.settle();
        Ok(())
    }

    /// The password was wrong (or the user unknown or inactive: all the same here).
    pub async fn failed(&self, attempt: Attempt) -> Result<(), ThrottleError> {
        for record in &attempt.records {
            self.mark_failed(record).await?;
        }
        self.settle();
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
        self.settle();
    }

    /// Adds the record, in flight, at its provisional time.
    async fn record(&self, record: &Record) -> Result<(), ThrottleError> {
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
            }
            Store::Redis { connection, prefix } => {
                let key = format!("{prefix}{}", record.key);
                let mut connection = connection.clone();
                let () = redis::pipe()
                    .atomic()
                    .cmd("ZADD")
                    .arg(&key)
                    .arg(record.at.timestamp_millis())
                    .arg(in_flight_member(record.id))
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

    /// Moves the record to its turn (`record.at`, no earlier than its provisional time).
    async fn take_turn(&self, record: &Record) -> Result<(), ThrottleError> {
        match &self.store {
            Store::Database(db) => {
                login_attempts::Entity::update_many()
                    .col_expr(login_attempts::Column::AttemptedAt, Expr::value(record.at))
                    .filter(login_attempts::Column::Id.eq(record.id))
                    .exec(db)
                    .await?;
            }
            Store::Redis { connection, prefix } => {
                let mut connection = connection.clone();
                let _: i64 = redis::cmd("ZADD")
                    .arg(format!("{prefix}{}", record.key))
                    .arg("XX")
                    .arg(record.at.timestamp_millis())
                    .arg(in_flight_member(record.id))
                    .query_async(&mut connection)
                    .await?;
            }
        }
        Ok(())
    }

    /// The key's attempts other than `record` that decide it: the newest within the horizon,
    /// enough of them for the top tier of the back-off, and the oldest within the window up to
    /// `record`, enough to see whether `limit` attempts in flight are ahead of it. (Not locked
    /// out, fewer than `limit` failures fall within the window, so twice the limit suffices.)
    async fn read_others(&self, record: &Record) -> Result<Vec<Seen>, ThrottleError> {
        let at = now();
        let horizon_start = at - delta(self.config.horizon());
        let window_start = at - delta(self.config.window);
        let limit = u64::from(record.limit.clamp(1, MAX_LIMIT));
        let enough = limit * u64::from(DOUBLINGS + 2);
        let oldest = limit * 2;
        match &self.store {
            Store::Database(db) => {
                let query = || {
                    login_attempts::Entity::find()
                        .select_only()
                        .column(login_attempts::Column::Id)
                        .column(login_attempts::Column::AttemptedAt)
                        .column(login_attempts::Column::Failed)
                        .filter(login_attempts::Column::ThrottleKey.eq(record.key.as_str()))
                        .filter(login_attempts::Column::Id.ne(record.id))
                };
                let newest: Vec<(Uuid, DateTime<Utc>, bool)> = query()
                    .filter(login_attempts::Column::AttemptedAt.gte(horizon_start))
                    .order_by_desc(login_attempts::Column::AttemptedAt)
                    .limit(enough)
                    .into_tuple()
                    .all(db)
                    .await?;
                let ahead: Vec<(Uuid, DateTime<Utc>, bool)> = query()
                    .filter(login_attempts::Column::AttemptedAt.gte(window_start))
                    .filter(login_attempts::Column::AttemptedAt.lte(record.at))
                    .order_by_asc(login_attempts::Column::AttemptedAt)
                    .limit(oldest)
                    .into_tuple()
                    .all(db)
                    .await?;
                Ok(union(
                    newest
                        .into_iter()
                        .chain(ahead)
                        .map(|(id, at, failed)| Seen { at, id, failed }),
                ))
            }
            Store::Redis { connection, prefix } => {
                let key = format!("{prefix}{}", record.key);
                let mut connection = connection.clone();
                let (newest, ahead): (Scored, Scored) = redis::pipe()
                    .atomic()
                    .cmd("ZREMRANGEBYSCORE")
                    .arg(&key)
                    .arg("-inf")
                    .arg(format!("({}", horizon_start.timestamp_millis()))
                    .ignore()
                    .cmd("ZRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(enough)
                    .arg("REV")
                    .arg("WITHSCORES")
                    .cmd("ZRANGE")
                    .arg(&key)
                    .arg(window_start.timestamp_millis())
                    .arg(record.at.timestamp_millis())
                    .arg("BYSCORE")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(oldest)
                    .arg("WITHSCORES")
                    .query_async(&mut connection)
                    .await?;
                Ok(union(newest.into_iter().chain(ahead).filter_map(
                    |(member, score)| {
                        let at = DateTime::from_timestamp_millis(score as i64)?;
                        let id = Uuid::parse_str(member.get(IN_FLIGHT.len()..)?).ok()?;
                        Some(Seen {
                            at,
                            id,
                            failed: member.starts_with(FAILED),
                        })
                        .filter(|seen| seen.id != record.id)
                    },
                )))
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

/// Sorted-set members with their scores (milliseconds), as Redis answers them.
type Scored = Vec<(String, f64)>;

/// Attempts read twice (by both reads of `read_others`) counted once.
fn union(seen: impl Iterator<Item = Seen>) -> Vec<Seen> {
    let mut seen: Vec<Seen> = seen.collect();
    seen.sort_unstable_by_key(|seen| seen.id);
    seen.dedup_by_key(|seen| seen.id);
    seen
}

/// Redis sorted-set members: the state, then the attempt's id.
const IN_FLIGHT: &str = "p:";
const FAILED: &str = "f:";

fn in_flight_member(id: Uuid) -> String {
    format!("{IN_FLIGHT}{id}")
}

/// Whether an attempt may check its password, given the key's other recent attempts.
///
/// Locked out while the `limit` newest settled failures fall within one lock-out period. The
/// period is the window at first (a plain sliding window: `limit` failures per window) and
/// doubles with every further `limit` failures within the horizon. Otherwise the attempt goes
/// ahead while the recent failures plus the attempts still in flight *before it* stay under the
/// limit, and waits for them to settle when they do not. (One in flight for longer than a window
/// died unsettled: a failure.)
fn decide(others: &[Seen], own: &Record, config: &ThrottleConfig, now: DateTime<Utc>) -> Decision {
    let limit = own.limit.max(1) as usize;
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
            return Decision::Refuse(whole_seconds(until - now));
        }
    }
    let recent_failures = failures.iter().filter(|at| **at >= window_start).count();
    if recent_failures + in_flight_ahead(others, own, window_start) >= limit {
        Decision::Wait
    } else {
        Decision::Go
    }
}

/// The attempts in flight (within the window) that took their turn before `own`.
fn in_flight_ahead(others: &[Seen], own: &Record, window_start: DateTime<Utc>) -> usize {
    let turn = |at: DateTime<Utc>, id: Uuid| (at, id.as_u128() & !1);
    others
        .iter()
        .filter(|seen| !seen.failed && seen.at >= window_start)
        .filter(|seen| turn(seen.at, seen.id) < turn(own.at, own.id))
        .count()
}

/// How many settlements a waiting attempt needs at least before it could go: each takes one
/// attempt ahead of it out of flight (failures are not counted on: a success may forgive them
/// all at once). At least one.
fn settlements_needed(
    others: &[Seen],
    own: &Record,
    config: &ThrottleConfig,
    now: DateTime<Utc>,
) -> u64 {
    let limit = own.limit.max(1) as usize;
    let ahead = in_flight_ahead(others, own, now - delta(config.window));
    (ahead + 1).saturating_sub(limit).max(1) as u64
}

/// Whole milliseconds, as Redis scores hold them: every reader then orders alike.
fn whole_millis(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(at.timestamp_millis()).unwrap_or(at)
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
                id: Uuid::now_v7(),
                failed: true,
            })
            .collect()
    }

    /// A new attempt under a limit of 5, made at `now`.
    fn own(now: DateTime<Utc>) -> Record {
        Record {
            id: Uuid::now_v7(),
            key: username_key("alice"),
            at: now,
            is_username: true,
            limit: 5,
        }
    }

    fn decided(others: &[Seen], now: DateTime<Utc>) -> Decision {
        decide(others, &own(now), &config(), now)
    }

    #[test]
    fn the_limit_within_one_window_locks_until_the_oldest_of_them_leaves_it() {
        let now = Utc::now();
        let four = failures_at(now, &[1, 2, 3, 4]);
        assert_eq!(decided(&four, now), Decision::Go, "4 of 5 allowed");
        let five = failures_at(now, &[1, 2, 3, 4, 50]);
        assert_eq!(
            decided(&five, now),
            Decision::Refuse(Duration::from_secs(10)),
            "the failure 50 s ago leaves the 60 s window in 10 s"
        );
        let spread = failures_at(now, &[1, 2, 3, 4, 61]);
        assert_eq!(
            decided(&spread, now),
            Decision::Go,
            "only 4 failures fall within the last minute"
        );
    }

    #[test]
    fn the_lockout_doubles_with_every_further_limit_of_failures_up_to_the_horizon() {
        let now = Utc::now();
        let ten = failures_at(now, &[1, 2, 3, 4, 100, 101, 102, 103, 104, 105]);
        assert_eq!(
            decided(&ten, now),
            Decision::Refuse(Duration::from_secs(20)),
            "ten failures: a two-minute lock-out from the fifth newest (100 s ago)"
        );
        let many: Vec<i64> = (0..200).map(|i| 1 + i * 4).collect();
        let Decision::Refuse(wait) = decided(&failures_at(now, &many), now) else {
            panic!("200 failures lock the username out");
        };
        assert!(
            wait <= MINUTE * HORIZON_WINDOWS && wait > MINUTE * 8,
            "the lock-out grows but never past the horizon: {wait:?}"
        );
    }

    #[test]
    fn attempts_in_flight_before_this_one_make_it_wait_and_later_ones_do_not_count() {
        let now = Utc::now();
        let mut seen = failures_at(now, &[1, 2]);
        let in_flight = |at: DateTime<Utc>| Seen {
            at,
            id: Uuid::now_v7(),
            failed: false,
        };
        let earlier = now - TimeDelta::milliseconds(5);
        seen.extend([in_flight(earlier), in_flight(earlier)]);
        assert_eq!(
            decided(&seen, now),
            Decision::Go,
            "2 failures + 2 ahead of 5"
        );
        let later = now + TimeDelta::milliseconds(5);
        seen.extend([in_flight(later), in_flight(later), in_flight(later)]);
        assert_eq!(
            decided(&seen, now),
            Decision::Go,
            "attempts after this one wait for it, not it for them"
        );
        seen.push(in_flight(earlier));
        assert_eq!(
            decided(&seen, now),
            Decision::Wait,
            "2 failures + 3 ahead fill the limit: wait for them to settle, do not refuse"
        );
        // Only settled failures refuse: however many are in flight, a correct password waits.
        let crowd: Vec<Seen> = (0..100).map(|_| in_flight(earlier)).collect();
        assert_eq!(decided(&crowd, now), Decision::Wait);
        // An attempt in flight for longer than a window died unsettled: a failure.
        let stale = vec![in_flight(now - TimeDelta::seconds(61)); 5];
        assert_eq!(
            decided(&stale, now),
            Decision::Go,
            "stale ones are failures older than the window"
        );
    }

    #[test]
    fn one_attempts_records_take_their_turn_in_the_same_place_on_every_key() {
        let now = Utc::now();
        let base = Uuid::now_v7().as_u128() & !1;
        let mut second_key = own(now);
        second_key.id = Uuid::from_u128(base | 1);
        let first_key = Seen {
            at: now,
            id: Uuid::from_u128(base),
            failed: false,
        };
        let four_ahead: Vec<Seen> = (0..4)
            .map(|_| Seen {
                at: now - TimeDelta::milliseconds(1),
                id: Uuid::now_v7(),
                failed: false,
            })
            .chain([first_key])
            .collect();
        assert_eq!(
            decide(&four_ahead, &second_key, &config(), now),
            Decision::Go,
            "the attempt's own record on another key is not ahead of it"
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

    #[test]
    fn a_waiting_attempt_sleeps_through_the_settlements_it_cannot_go_before() {
        let now = Utc::now();
        let in_flight = |ms_ago: i64| Seen {
            at: now - TimeDelta::milliseconds(ms_ago),
            id: Uuid::now_v7(),
            failed: false,
        };
        let needed = |others: &[Seen]| settlements_needed(others, &own(now), &config(), now);
        // Limit 5: with 12 ahead, 8 must settle before 4 are left ahead and it could go.
        let twelve: Vec<Seen> = (1..=12).map(in_flight).collect();
        assert_eq!(needed(&twelve), 8);
        assert_eq!(decided(&twelve, now), Decision::Wait);
        // Failures (which a success may forgive) and later attempts do not count: re-read at
        // the next settlement.
        let mut few = failures_at(now, &[1, 2, 3, 4, 5]);
        few.extend((1..=2).map(in_flight));
        few.push(Seen {
            at: now + TimeDelta::milliseconds(5),
            id: Uuid::now_v7(),
            failed: false,
        });
        assert_eq!(needed(&few), 1);
        assert_eq!(needed(&[]), 1, "at least one");
    }
}
