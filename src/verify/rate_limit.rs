//! Per-token rate limits, counted in this instance's memory (N instances allow up to N times a
//! token's limit), or in Redis when `MULTITOKEN_REDIS_URL` is set (`SharedLimits`: every
//! instance counts against the one limit, on Redis's clock). A token without a limit never
//! reaches this file.
//!
//! The algorithm is GCRA (the generic cell rate algorithm, as in ATM networks and `governor`):
//! each token keeps one number, the time at which its bucket would be empty again (its
//! "theoretical arrival time"). A request adds one emission interval (a minute / the limit) to it;
//! it is let through while that stays within one minute of now. So a token may spend its whole
//! minute's worth at once and then one more every interval, with no timers and no sweeping
//! windows, and the state per token is one integer under a lock shared by few tokens.

use std::{
    collections::HashMap,
    hash::{Hash, Hasher},
    sync::Mutex,
    time::{Duration, Instant},
};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use uuid::Uuid;

/// The window a limit is counted in.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Independent locks: tokens hash to one; two busy tokens rarely share one.
const SHARDS: usize = 64;
/// A shard holding this many tokens forgets those whose buckets have emptied.
const SHARD_TIDY_AT: usize = 4096;

/// A request over its token's limit, with what the client is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exceeded {
    /// Requests per minute.
    pub limit: u32,
    /// When the next request would be let through.
    pub retry_after: Duration,
}

pub struct RateLimits {
    /// Measured from here, in nanoseconds: monotonic, so a clock change lets nothing through.
    epoch: Instant,
    shards: Box<[Mutex<HashMap<Uuid, Bucket>>]>,
    /// Counters every instance shares; without them (or while Redis does not answer) the
    /// memory above counts.
    shared: Option<SharedLimits>,
}

/// One token's state: when its bucket is empty again, at the limit it was counted with.
#[derive(Clone, Copy)]
struct Bucket {
    empty_at: u64,
    per_minute: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            epoch: Instant::now(),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            shared: None,
        }
    }
}

impl RateLimits {
    /// Limits counted in Redis, shared by every instance that names the same Redis and prefix.
    pub fn shared(shared: SharedLimits) -> RateLimits {
        RateLimits {
            shared: Some(shared),
            ..RateLimits::default()
        }
    }

    /// Whether counting needs Redis (and so cannot be done without waiting).
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// Counts one request of `token` against `per_minute` in this instance's memory, or says
    /// when to come back.
    pub fn take(&self, token: Uuid, per_minute: u32) -> Result<(), Exceeded> {
        self.take_at(token, per_minute, Instant::now())
    }

    /// As `take`, in Redis when the limits are shared. Redis not answering does not lock every
    /// limited token out: this instance counts on its own meanwhile (and says so in the log).
    pub async fn take_anywhere(&self, token: Uuid, per_minute: u32) -> Result<(), Exceeded> {
        let Some(shared) = &self.shared else {
            return self.take(token, per_minute);
        };
        match shared.take(token, per_minute).await {
            Ok(counted) => counted,
            Err(e) => {
                log::warn!("rate limits store (Redis) unavailable, counting on this instance: {e}");
                self.take(token, per_minute)
            }
        }
    }

    fn take_at(&self, token: Uuid, per_minute: u32, at: Instant) -> Result<(), Exceeded> {
        let window = WINDOW.as_nanos() as u64;
        let interval = window / u64::from(per_minute.max(1));
        let now = at.saturating_duration_since(self.epoch).as_nanos() as u64;
        let mut shard = self.shard(token).lock().unwrap_or_else(|e| e.into_inner());
        if shard.len() >= SHARD_TIDY_AT {
            shard.retain(|_, bucket| bucket.empty_at > now);
        }
        let empty_at = match shard.get(&token) {
            None => now,
            Some(bucket) if bucket.empty_at <= now => now,
            Some(bucket) if bucket.per_minute == per_minute => bucket.empty_at,
            // The owner changed the limit: the requests still counted are counted anew at
            // the new rate, so a raised limit lets more through at once.
            Some(bucket) => {
                let old_interval = window / u64::from(bucket.per_minute.max(1));
                let outstanding = (bucket.empty_at - now).div_ceil(old_interval.max(1));
                now + outstanding * interval
            }
        };
        let next = empty_at + interval;
        if next - now > window {
            // Refused requests take nothing: the bucket stays as it was.
            return Err(Exceeded {
                limit: per_minute,
                retry_after: Duration::from_nanos(next - now - window),
            });
        }
        shard.insert(
            token,
            Bucket {
                empty_at: next,
                per_minute,
            },
        );
        Ok(())
    }

    fn shard(&self, token: Uuid) -> &Mutex<HashMap<Uuid, Bucket>> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        token.hash(&mut hasher);
        &self.shards[(hasher.finish() as usize) % SHARDS]
    }
}

/// GCRA in Redis, atomically, on Redis's own clock (instances' clocks may differ). KEYS[1]: the
/// token's counter; ARGV: the emission interval and the window, in microseconds. Answers 0 when
/// the request is let through, else the microseconds to wait. The counter expires when its
/// bucket is empty, so idle tokens leave nothing behind.
const GCRA_SCRIPT: &str = r"
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local interval = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local empty_at = tonumber(redis.call('GET', KEYS[1]) or '0')
if empty_at < now then empty_at = now end
local next = empty_at + interval
if next - now > window then
  return math.max(1, next - now - window)
end
redis.call('SET', KEYS[1], string.format('%d', next), 'PX', math.max(1, math.ceil((next - now) / 1000)))
return 0
";

/// The counters in Redis.
pub struct SharedLimits {
    connection: ConnectionManager,
    prefix: String,
    script: redis::Script,
}

impl SharedLimits {
    /// Keys start with `prefix` (`MULTITOKEN_REDIS_PREFIX`), then `rate:`.
    pub async fn connect(url: &str, prefix: &str) -> Result<SharedLimits, redis::RedisError> {
        let client = redis::Client::open(url)?;
        // On the hot path: with Redis gone, give up within a second and count locally.
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200))
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(1)));
        Ok(SharedLimits {
            connection: ConnectionManager::new_with_config(client, config).await?,
            prefix: prefix.to_owned(),
            script: redis::Script::new(GCRA_SCRIPT),
        })
    }

    async fn take(
        &self,
        token: Uuid,
        per_minute: u32,
    ) -> Result<Result<(), Exceeded>, redis::RedisError> {
        let window = WINDOW.as_micros() as u64;
        let interval = window / u64::from(per_minute.max(1));
        let wait: u64 = self
            .script
            .key(format!("{}rate:{}", self.prefix, token.simple()))
            .arg(interval)
            .arg(window)
            .invoke_async(&mut self.connection.clone())
            .await?;
        Ok(if wait == 0 {
            Ok(())
        } else {
            Err(Exceeded {
                limit: per_minute,
                retry_after: Duration::from_micros(wait),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minutes_worth_goes_at_once_then_one_per_interval() {
        let limits = RateLimits::default();
        let token = Uuid::now_v7();
        let start = limits.epoch + Duration::from_secs(3600);
        for n in 0..6 {
            assert_eq!(limits.take_at(token, 6, start), Ok(()), "request {n} of 6");
        }
        let refused = limits.take_at(token, 6, start).unwrap_err();
        assert_eq!(refused.limit, 6);
        assert_eq!(
            refused.retry_after,
            Duration::from_secs(10),
            "one interval (60 s / 6)"
        );
        assert!(
            limits
                .take_at(token, 6, start + Duration::from_secs(9))
                .is_err(),
            "refusals take nothing, and the interval has not passed"
        );
        assert_eq!(
            limits.take_at(token, 6, start + Duration::from_secs(10)),
            Ok(())
        );
        assert!(
            limits
                .take_at(token, 6, start + Duration::from_secs(10))
                .is_err()
        );
        // A quiet minute refills the bucket completely, and no more.
        let later = start + Duration::from_secs(120);
        for n in 0..6 {
            assert_eq!(
                limits.take_at(token, 6, later),
                Ok(()),
                "after a pause, {n}"
            );
        }
        assert!(limits.take_at(token, 6, later).is_err());
    }

    #[test]
    fn tokens_are_counted_apart_and_a_raised_limit_applies_at_once() {
        let limits = RateLimits::default();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let at = limits.epoch + Duration::from_secs(60);
        assert_eq!(limits.take_at(a, 1, at), Ok(()));
        assert!(limits.take_at(a, 1, at).is_err());
        assert_eq!(limits.take_at(b, 1, at), Ok(()), "b has its own bucket");
        assert_eq!(
            limits.take_at(a, 120, at),
            Ok(()),
            "the owner raised a's limit"
        );
    }
}
