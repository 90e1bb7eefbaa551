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
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering::SeqCst},
    },
    time::{Duration, Instant},
};

use chrono::Utc;
use moka::future::Cache;
use uuid::Uuid;

use super::{
    checks::{self, AuthError, Authenticated},
    last_used::LastUsed,
    lookup::Lookup,
};
use crate::auth::key::TokenKey;

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

/// Verifies presented keys: through the cache, else through the lookup; notes each use for
/// [`LastUsed`].
pub struct Verifier {
    cache: Option<Cache<[u8; 32], Authenticated>>,
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
            ttl: config.ttl,
            generation: AtomicU64::new(0),
            flushed: AtomicU64::new(0),
            marks: Mutex::new(HashMap::new()),
            latest_mark: AtomicU64::new(0),
            trusted: AtomicBool::new(!needs_listener),
            lookup,
            last_used: Arc::default(),
        }
    }

    pub fn last_used(&self) -> &Arc<LastUsed> {
        &self.last_used
    }

    /// Checks a key given as text (an `Authorization` header, an introspection request, a session
    /// cookie): parsed once, and refused before any lookup when malformed or mistyped.
    pub async fn verify_text(&self, presented: &str) -> Result<Authenticated, AuthError> {
        let key = TokenKey::parse(presented).map_err(|reason| {
            log::debug!("token refused before lookup: {reason:?}");
            AuthError::Invalid
        })?;
        self.verify(&key).await
    }

    /// Checks a parsed key: from the cache when it holds a current entry, else through the
    /// lookup and [`checks::accept`], caching the success. The digest is computed once, here.
    pub async fn verify(&self, key: &TokenKey) -> Result<Authenticated, AuthError> {
        let digest = key.digest();
        let cache = self.cache.as_ref().filter(|_| self.trusted.load(SeqCst));
        let Some(cache) = cache else {
            let authenticated = self.lookup.authenticate(&digest).await?;
            self.last_used.record(authenticated.token.id, Utc::now());
            return Ok(authenticated);
        };
        let cache_key = *digest.as_bytes();
        if let Some(entry) = cache.get(&cache_key).await {
            if self.is_current(&entry) {
                let at = Utc::now();
                let token = &entry.token;
                // Exact expiry on every hit: a cached token expires when an uncached one does.
                if checks::is_expired_at(token, at) {
                    log::debug!("token {} refused: expired", token.id);
                    return Err(AuthError::Expired);
                }
                self.last_used.record(token.id, at);
                return Ok(entry);
            }
            cache.invalidate(&cache_key).await;
        }
        let generation = self.generation.load(SeqCst);
        let authenticated = self.lookup.authenticate(&digest).await?.stamped(generation);
        self.last_used.record(authenticated.token.id, Utc::now());
        cache.insert(cache_key, authenticated.clone()).await;
        // Invalidate-then-check: a revocation made while we were reading (or inserting) has
        // bumped the generation; drop what we inserted rather than trust it. One made after this
        // check carries a later generation than the entry, so `is_current` refuses the entry.
        if self.generation.load(SeqCst) != generation || !self.trusted.load(SeqCst) {
            cache.invalidate(&cache_key).await;
        }
        Ok(authenticated)
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
        Lookup::new(sea_orm::DatabaseConnection::default(), "unused://")
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
            },
        )
    }

    /// What a filler does: read the generation, (look up the database,) build the entry.
    fn fill(verifier: &Verifier, user: Uuid, token: Uuid) -> Authenticated {
        authenticated(user, token).stamped(verifier.generation.load(SeqCst))
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
