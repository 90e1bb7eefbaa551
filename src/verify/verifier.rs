//! The verification cache: a bounded in-process cache of successful verifications, keyed by key
//! digest, which every revocation invalidates at once on this instance and, through the
//! revocation bus (`revocations`), within milliseconds on every other instance.
//!
//! Why this shape:
//! - Only successes are cached, and each entry keeps what a request needs (owner and token), so a
//!   hit answers without any I/O. Expiry is compared with the clock on every hit, so a cached
//!   token expires exactly when an uncached one does. A time-to-live bounds any staleness a bug
//!   could cause; it is a safety net, not the mechanism. The map compares digests, not keys:
//!   its timing could tell at most how much of a SHA-256 digest matched, which finds no key.
//! - Nothing outside can forget to invalidate: a change to tokens is finished through
//!   `Revocations`, which commits and then calls [`Verifier::invalidate`].
//! - While revocations from other instances could be missed (PostgreSQL with its `LISTEN`
//!   connection down) the cache is neither read nor filled, and it is emptied when the connection
//!   is lost and again once it is back.
//! - Races: a request that read a token from the database just before a revocation must not put
//!   it back into the cache after the invalidation. Every invalidation bumps a generation counter;
//!   a filler reads the generation before its database lookup, stores it with the entry, and
//!   checks it again after inserting. A hit is refused when a revocation of its token or owner
//!   (or a full flush) carries a later generation than the entry.

use std::{
    cell::RefCell,
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering::SeqCst},
    },
    time::{Duration, Instant},
};

use chrono::Utc;
use moka::future::Cache;
use thread_local::ThreadLocal;
use uuid::Uuid;

use super::{
    checks::{self, Attempt, AuthError, Authenticated, Pending, Refusal},
    last_used::LastUsed,
    lookup::Lookup,
    rate_limit::{Exceeded, RateLimits, SharedLimits},
    refusals::Refusals,
};
use crate::{
    auth::key::{KeyDigest, TokenKey},
    metrics::Metrics,
    services::tokens::policy::pin_network,
};

/// What stopped being valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    /// One token (deleted, revoked, evicted).
    Token(Uuid),
    /// Every token of a user (logged out everywhere, deactivated, deleted).
    User(Uuid),
    /// Anything at all (pruning; a lost notification connection).
    All,
}

#[derive(Debug, Clone)]
pub struct VerifierConfig {
    /// Entries kept at most; 0 disables the cache.
    pub capacity: u64,
    /// Longest an entry is trusted.
    pub ttl: Duration,
}

#[derive(Hash, PartialEq, Eq)]
enum Subject {
    Token(Uuid),
    User(Uuid),
}

struct Mark {
    generation: u64,
    at: Instant,
}

/// Slots in each worker's near cache.
const NEAR_SLOTS: usize = 256;

/// One HTTP worker's copy of recent cache hits, in front of the shared cache: a hit here touches
/// no memory another worker writes (a shared-cache read records itself in a channel both workers
/// write, a measurable share of `/api/me/`). Direct-mapped by the digest's first byte (digests
/// are uniformly random): no hashing, no eviction policy; a collision replaces the older entry.
/// Entries are trusted exactly as shared ones are (`is_current`, one TTL from the lookup), so a
/// revocation reaches them without being told: nothing outside the worker's thread can touch
/// them, and nothing needs to.
struct Near {
    slots: Box<[NearSlot]>,
}

/// A digest and the answer for it.
type NearSlot = Option<([u8; 32], Authenticated)>;

impl Default for Near {
    fn default() -> Self {
        Near {
            slots: vec![None; NEAR_SLOTS].into_boxed_slice(),
        }
    }
}

impl Near {
    fn slot(&mut self, digest: &KeyDigest) -> &mut NearSlot {
        &mut self.slots[usize::from(digest.as_bytes()[0]) % NEAR_SLOTS]
    }
}

/// Verifies presented keys: through the cache, else through the lookup; notes each use for
/// [`LastUsed`].
pub struct Verifier {
    cache: Option<Cache<[u8; 32], Authenticated>>,
    /// Each worker thread's near cache (empty, and never read, when `cache` is off).
    near: ThreadLocal<RefCell<Near>>,
    ttl: Duration,
    generation: AtomicU64,
    /// The generation of the last full flush: older entries are stale.
    flushed: AtomicU64,
    /// Recent revocations of one token or one user, with their generation. Kept for one TTL:
    /// every entry they could concern has expired by then.
    marks: Mutex<HashMap<Subject, Mark>>,
    /// The newest generation among `marks`: an entry at least this new needs no look at them, so
    /// most cache hits never take the lock.
    latest_mark: AtomicU64,
    /// False while revocations from other instances could be missed (PostgreSQL with no
    /// `LISTEN` connection): the cache is then bypassed.
    trusted: AtomicBool,
    lookup: Lookup,
    last_used: Arc<LastUsed>,
    refusals: Arc<Refusals>,
    /// Per-token rate limits, counted in this instance's memory.
    rate_limits: RateLimits,
    /// Hits, misses and refusals, for `/metrics`.
    metrics: Arc<Metrics>,
}

impl Verifier {
    /// `needs_listener`: other instances may revoke (PostgreSQL); the cache stays off until the
    /// revocation listener has subscribed.
    pub fn new(config: &VerifierConfig, needs_listener: bool, lookup: Lookup) -> Self {
        let cache = (config.capacity > 0).then(|| {
            Cache::builder()
                .max_capacity(config.capacity)
                .time_to_live(config.ttl)
                .build()
        });
        Verifier {
            cache,
            near: ThreadLocal::new(),
            ttl: config.ttl,
            generation: AtomicU64::new(0),
            flushed: AtomicU64::new(0),
            marks: Mutex::new(HashMap::new()),
            latest_mark: AtomicU64::new(0),
            trusted: AtomicBool::new(!needs_listener),
            lookup,
            last_used: Arc::default(),
            refusals: Arc::default(),
            rate_limits: RateLimits::default(),
            metrics: Arc::default(),
        }
    }

    /// Counts into `metrics` (the instance's, which `/metrics` reports).
    pub fn counting_into(mut self, metrics: Arc<Metrics>) -> Verifier {
        self.metrics = metrics;
        self
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn last_used(&self) -> &Arc<LastUsed> {
        &self.last_used
    }

    /// Attempts refused by tokens' policies, waiting to be recorded.
    pub fn refusals(&self) -> &Arc<Refusals> {
        &self.refusals
    }

    /// The digest of a key given as text (an `Authorization` header, an introspection request,
    /// a session cookie): parsed once, and refused before any lookup when malformed or mistyped.
    pub fn digest_of(presented: &str) -> Result<KeyDigest, AuthError> {
        match TokenKey::parse(presented) {
            Ok(key) => Ok(key.digest()),
            Err(reason) => {
                log::debug!("token refused before lookup: {reason:?}");
                Err(AuthError::Invalid)
            }
        }
    }

    /// Checks a key given as text: [`Self::digest_of`], then as [`Self::verify`] does.
    pub async fn verify_text(
        &self,
        presented: &str,
        attempt: &Attempt<'_>,
    ) -> Result<Authenticated, AuthError> {
        let digest = Self::digest_of(presented)?;
        self.verify_digest(&digest, attempt).await
    }

    /// The answer without waiting, when this worker's own copy of recent hits holds a current
    /// one (checked exactly as a shared-cache hit is) and the attempt needs no database work
    /// (no use to take, no pin to set); `None` means ask [`Self::verify_digest`].
    pub fn answer_now(
        &self,
        digest: &KeyDigest,
        attempt: &Attempt<'_>,
    ) -> Option<Result<Authenticated, AuthError>> {
        self.cache.as_ref()?;
        if !self.trusted.load(SeqCst) {
            return None;
        }
        let mut near = self.near.get_or_default().borrow_mut();
        let slot = near.slot(digest);
        let entry = match slot {
            Some((held, entry)) if held == digest.as_bytes() => entry.clone(),
            _ => return None,
        };
        if !self.is_current(&entry) || entry.looked_up.elapsed() >= self.ttl {
            *slot = None;
            return None;
        }
        drop(near);
        self.metrics.near_hits.add_one();
        let at = Utc::now();
        let entry = match checks::unexpired(entry, at) {
            Ok(entry) => entry,
            Err(expired) => return Some(Err(expired)),
        };
        Some(match self.admit(&entry, attempt, at) {
            Ok(pending) if pending == Pending::default() => {
                if self.counts_elsewhere(&entry, attempt) {
                    return None;
                }
                if let Err(over) = self.within_rate_here(&entry, attempt, at) {
                    return Some(Err(over));
                }
                self.last_used.record(entry.token.id, at, attempt.client());
                Ok(entry)
            }
            Ok(_) => return None,
            Err(refused) => Err(refused),
        })
    }

    /// Checks a digest for `attempt`: from this worker's near cache, the shared cache or the
    /// lookup, then the request's own checks (`checks::admit`), a pin or a use taken if the
    /// token's policy asks for one, and the use noted.
    pub async fn verify_digest(
        &self,
        digest: &KeyDigest,
        attempt: &Attempt<'_>,
    ) -> Result<Authenticated, AuthError> {
        if let Some(answer) = self.answer_now(digest, attempt) {
            return answer;
        }
        let entry = self.find(digest).await?;
        let mut pending = self.admit(&entry, attempt, Utc::now())?;
        let entry = match pending.pin_to {
            None => entry,
            Some(address) => {
                let network = pin_network(address).to_string();
                if self.lookup.pin(entry.token.id, &network).await? {
                    log::info!("token {} pinned to {network}", entry.token.id);
                }
                // Pinned here or by another first use: either way the row has changed. Check
                // again against it as it is now.
                self.invalidate(Revocation::Token(entry.token.id));
                let entry = self.find(digest).await?;
                pending = self.admit(&entry, attempt, Utc::now())?;
                if pending.pin_to.is_some() {
                    return Err(AuthError::Invalid);
                }
                entry
            }
        };
        // Before a use is taken: a request over the rate limit costs a limited-use token nothing.
        self.within_rate(&entry, attempt, Utc::now()).await?;
        let entry = if pending.take_use {
            match self.lookup.take_use(entry.token.id).await? {
                Some(left) => entry.after_use(left),
                None => {
                    return Err(self.refused(&entry, Refusal::NoUsesLeft, attempt, Utc::now()));
                }
            }
        } else {
            entry
        };
        if pending.retire_previous {
            // The device has the new key: the previous one ends here and, through the bus, on
            // every other instance. The row changed either way (another use may have won).
            if self.lookup.retire_previous(entry.token.id).await? {
                log::info!(
                    "token {}: previous key retired by the new key's first use",
                    entry.token.id
                );
            }
            self.invalidate(Revocation::Token(entry.token.id));
        }
        self.last_used
            .record(entry.token.id, Utc::now(), attempt.client());
        Ok(entry)
    }

    /// `checks::admit`, with a refusal recorded for the token's owner.
    fn admit(
        &self,
        entry: &Authenticated,
        attempt: &Attempt<'_>,
        at: chrono::DateTime<Utc>,
    ) -> Result<Pending, AuthError> {
        checks::admit(entry, attempt, at)
            .map_err(|refusal| self.refused(entry, refusal, attempt, at))
    }

    /// The limit a use of this token is counted against (introspection only asks, and takes
    /// none). A token without a limit costs one comparison.
    fn limit_of(entry: &Authenticated, attempt: &Attempt<'_>) -> Option<u32> {
        match attempt {
            Attempt::Use(_) => entry.access.rate_limit_per_minute(),
            Attempt::Inspect => None,
        }
    }

    /// The use must be counted in Redis, which the near path cannot wait for.
    fn counts_elsewhere(&self, entry: &Authenticated, attempt: &Attempt<'_>) -> bool {
        self.rate_limits.is_shared() && Self::limit_of(entry, attempt).is_some()
    }

    /// The token's rate limit, counted in this instance's memory.
    fn within_rate_here(
        &self,
        entry: &Authenticated,
        attempt: &Attempt<'_>,
        at: chrono::DateTime<Utc>,
    ) -> Result<(), AuthError> {
        let Some(limit) = Self::limit_of(entry, attempt) else {
            return Ok(());
        };
        let counted = self.rate_limits.take(entry.token.id, limit);
        self.over_rate(entry, attempt, at, counted)
    }

    /// The token's rate limit, counted where the limits are kept (Redis when shared).
    async fn within_rate(
        &self,
        entry: &Authenticated,
        attempt: &Attempt<'_>,
        at: chrono::DateTime<Utc>,
    ) -> Result<(), AuthError> {
        if !self.counts_elsewhere(entry, attempt) {
            return self.within_rate_here(entry, attempt, at);
        }
        let Some(limit) = Self::limit_of(entry, attempt) else {
            return Ok(());
        };
        let counted = self.rate_limits.take_anywhere(entry.token.id, limit).await;
        self.over_rate(entry, attempt, at, counted)
    }

    /// A count's outcome as the verifier answers it; a refusal noted for the owner.
    fn over_rate(
        &self,
        entry: &Authenticated,
        attempt: &Attempt<'_>,
        at: chrono::DateTime<Utc>,
        counted: Result<(), Exceeded>,
    ) -> Result<(), AuthError> {
        counted.map_err(|exceeded| {
            Metrics::count(&self.metrics.rate_limited);
            self.last_used.record_refusal(entry.token.id, at);
            self.refusals
                .note(entry, Refusal::RateLimited, attempt.client().address, at);
            AuthError::RateLimited(exceeded)
        })
    }

    /// Counts rate limits in Redis, shared with every instance that uses it.
    pub fn sharing_rate_limits(mut self, shared: SharedLimits) -> Verifier {
        self.rate_limits = RateLimits::shared(shared);
        self
    }

    fn refused(
        &self,
        entry: &Authenticated,
        refusal: Refusal,
        attempt: &Attempt<'_>,
        at: chrono::DateTime<Utc>,
    ) -> AuthError {
        log::debug!("token {} refused: {}", entry.token.id, refusal.code());
        self.last_used.record_refusal(entry.token.id, at);
        self.refusals
            .note(entry, refusal, attempt.client().address, at);
        refusal.error()
    }

    /// The answer for a digest, unexpired, before the request's own checks: through the shared
    /// cache, else the lookup and [`checks::accept`], caching the success.
    async fn find(&self, digest: &KeyDigest) -> Result<Authenticated, AuthError> {
        let cache = self.cache.as_ref().filter(|_| self.trusted.load(SeqCst));
        let Some(cache) = cache else {
            self.metrics.misses.add_one();
            return self.lookup.authenticate(digest).await;
        };
        let cache_key = *digest.as_bytes();
        if let Some(entry) = cache.get(&cache_key).await {
            if self.is_current(&entry) {
                self.metrics.shared_hits.add_one();
                self.keep_near(digest, &entry);
                return checks::unexpired(entry, Utc::now());
            }
            cache.invalidate(&cache_key).await;
        }
        self.metrics.misses.add_one();
        let (generation, looked_up) = (self.generation.load(SeqCst), Instant::now());
        let authenticated = self
            .lookup
            .authenticate(digest)
            .await?
            .stamped(generation, looked_up);
        cache.insert(cache_key, authenticated.clone()).await;
        // Invalidate-then-check: a revocation made while we were reading (or inserting) has
        // bumped the generation; drop what we inserted rather than trust it. One made after this
        // check carries a later generation than the entry, so `is_current` refuses the entry.
        if self.generation.load(SeqCst) != generation || !self.trusted.load(SeqCst) {
            cache.invalidate(&cache_key).await;
        } else {
            self.keep_near(digest, &authenticated);
        }
        Ok(authenticated)
    }

    /// Copies a current entry into this worker's near cache.
    fn keep_near(&self, digest: &KeyDigest, entry: &Authenticated) {
        let mut near = self.near.get_or_default().borrow_mut();
        *near.slot(digest) = Some((*digest.as_bytes(), entry.clone()));
    }

    fn is_current(&self, entry: &Authenticated) -> bool {
        if entry.generation < self.flushed.load(SeqCst) {
            return false;
        }
        if entry.generation >= self.latest_mark.load(SeqCst) {
            return true;
        }
        let marks = self
            .marks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let revoked_since = |subject: &Subject| {
            marks
                .get(subject)
                .is_some_and(|mark| mark.generation > entry.generation)
        };
        !revoked_since(&Subject::Token(entry.token.id))
            && !revoked_since(&Subject::User(entry.user.id))
    }

    /// Forgets what `revocation` concerns, for every later request on this instance.
    pub fn invalidate(&self, revocation: Revocation) {
        let Some(cache) = &self.cache else {
            return;
        };
        let generation = self.generation.fetch_add(1, SeqCst) + 1;
        let subject = match revocation {
            Revocation::Token(id) => Subject::Token(id),
            Revocation::User(id) => Subject::User(id),
            Revocation::All => {
                self.flushed.fetch_max(generation, SeqCst);
                cache.invalidate_all();
                return;
            }
        };
        let mut marks = self
            .marks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if marks.len() >= 1024 {
            let ttl = self.ttl;
            marks.retain(|_, mark| mark.at.elapsed() <= ttl);
        }
        marks.insert(
            subject,
            Mark {
                generation,
                at: Instant::now(),
            },
        );
        // Raised only once the mark is in place, so a hit that skips the lock has none to miss.
        self.latest_mark.fetch_max(generation, SeqCst);
    }

    /// Called by the revocation listener as its connection comes and goes.
    pub fn set_trusted(&self, trusted: bool) {
        // Emptied on both edges: entries from before a gap may have missed a revocation.
        self.invalidate(Revocation::All);
        self.trusted.store(trusted, SeqCst);
        self.invalidate(Revocation::All);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entities::{tokens::TokenKind, users};

    /// These tests never reach the database.
    fn unused_lookup() -> Lookup {
        Lookup::new(
            sea_orm::DatabaseConnection::default(),
            "unused://",
            Default::default(),
        )
    }

    fn authenticated(user: Uuid, token: Uuid) -> Authenticated {
        let at = Utc::now();
        Authenticated::new(
            users::Model {
                id: user,
                username: "alice".into(),
                username_key: "alice".into(),
                username_skeleton: None,
                password_hash: String::new(),
                is_admin: false,
                is_active: true,
                created_at: at,
            },
            crate::entities::tokens::Model {
                id: token,
                user_id: user,
                name: "t".into(),
                name_skeleton: None,
                kind: TokenKind::Device,
                key_digest: String::new(),
                key_prefix: String::new(),
                created_at: at,
                expires_at: None,
                last_used_at: None,
                description: String::new(),
                read_only: false,
                scopes: String::new(),
                allowed_ips: String::new(),
                pin_ip: false,
                idle_expiry_days: None,
                remaining_uses: None,
                metadata: "{}".into(),
                last_used_ip: None,
                last_used_user_agent: None,
                previous_key_digest: None,
                previous_key_expires_at: None,
                retire_previous_on_use: false,
                rate_limit_per_minute: None,
            },
        )
    }

    /// What a filler does: read the generation, (look up the database,) build the entry.
    fn fill(verifier: &Verifier, user: Uuid, token: Uuid) -> Authenticated {
        authenticated(user, token).stamped(verifier.generation.load(SeqCst), Instant::now())
    }

    #[test]
    fn an_entry_read_before_a_revocation_is_refused_whenever_it_was_inserted() {
        let config = VerifierConfig {
            capacity: 10,
            ttl: Duration::from_secs(60),
        };
        let verifier = Verifier::new(&config, false, unused_lookup());
        let (alice, bob) = (Uuid::now_v7(), Uuid::now_v7());
        let (token, other_token, bobs_token) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());

        // Read from the database before the revocation, put in the cache after it.
        let stale = fill(&verifier, alice, token);
        let unrelated = fill(&verifier, alice, other_token);
        let bobs = fill(&verifier, bob, bobs_token);
        verifier.invalidate(Revocation::Token(token));
        assert!(!verifier.is_current(&stale), "the revoked token's entry");
        assert!(
            verifier.is_current(&unrelated),
            "another token of the same user"
        );
        assert!(
            verifier.is_current(&fill(&verifier, alice, token)),
            "read after the revocation: the database's answer then is current"
        );

        verifier.invalidate(Revocation::User(alice));
        assert!(
            !verifier.is_current(&unrelated),
            "every token of a revoked user"
        );
        assert!(verifier.is_current(&bobs), "another user's");

        verifier.invalidate(Revocation::All);
        assert!(
            !verifier.is_current(&bobs),
            "a flush refuses everything older"
        );
        assert!(verifier.is_current(&fill(&verifier, bob, bobs_token)));
    }

    #[test]
    fn a_workers_near_copy_is_refused_like_the_shared_entry() {
        let config = VerifierConfig {
            capacity: 10,
            ttl: Duration::from_millis(300),
        };
        let verifier = Verifier::new(&config, false, unused_lookup());
        let (alice, token) = (Uuid::now_v7(), Uuid::now_v7());
        let digest = TokenKey::generate().digest();
        let other_digest = std::iter::repeat_with(|| TokenKey::generate().digest())
            .find(|other| other.as_bytes()[0] == digest.as_bytes()[0] && other != &digest)
            .expect("one key in 256 lands in the same slot");
        let answered = |verifier: &Verifier, digest: &KeyDigest| {
            verifier
                .answer_now(digest, &Attempt::Inspect)
                .map(|answer| answer.is_ok())
        };

        verifier.keep_near(&digest, &fill(&verifier, alice, token));
        assert_eq!(
            answered(&verifier, &digest),
            Some(true),
            "a kept entry answers"
        );
        assert_eq!(
            answered(&verifier, &other_digest),
            None,
            "another digest is not answered by it, even in the same slot"
        );
        verifier.invalidate(Revocation::Token(token));
        assert_eq!(
            answered(&verifier, &digest),
            None,
            "a revocation reaches the near copy without anyone telling it"
        );

        verifier.keep_near(&digest, &fill(&verifier, alice, token));
        verifier.invalidate(Revocation::All);
        assert_eq!(answered(&verifier, &digest), None, "a flush reaches it too");

        verifier.keep_near(&digest, &fill(&verifier, alice, token));
        verifier.set_trusted(false);
        verifier.keep_near(&digest, &fill(&verifier, alice, token));
        assert_eq!(
            answered(&verifier, &digest),
            None,
            "while revocations could be missed, nothing is answered from memory"
        );
        verifier.set_trusted(true);

        verifier.keep_near(&digest, &fill(&verifier, alice, token));
        assert_eq!(answered(&verifier, &digest), Some(true));
        std::thread::sleep(Duration::from_millis(350));
        assert_eq!(
            answered(&verifier, &digest),
            None,
            "one TTL after its lookup the near copy is no longer trusted"
        );

        let elsewhere = std::thread::scope(|scope| {
            verifier.keep_near(&digest, &fill(&verifier, alice, token));
            scope.spawn(|| answered(&verifier, &digest)).join().unwrap()
        });
        assert_eq!(elsewhere, None, "each worker thread has its own near cache");
    }

    #[test]
    fn a_verifier_waiting_for_its_listener_does_not_trust_its_cache() {
        let config = VerifierConfig {
            capacity: 10,
            ttl: Duration::from_secs(60),
        };
        let verifier = Verifier::new(&config, true, unused_lookup());
        assert!(
            !verifier.trusted.load(SeqCst),
            "untrusted until LISTEN succeeds"
        );
        let entry = fill(&verifier, Uuid::now_v7(), Uuid::now_v7());
        verifier.set_trusted(true);
        assert!(
            !verifier.is_current(&entry),
            "entries from before the subscription are dropped"
        );
    }
}
