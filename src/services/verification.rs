//! Token verification on the hot path: a bounded in-process cache of successful verifications,
//! keyed by key digest, which every revocation invalidates at once on this instance and, through
//! PostgreSQL `LISTEN`/`NOTIFY`, within milliseconds on every other instance sharing the database.
//!
//! Why this shape:
//! - Only successes are cached, and each entry keeps what a request needs (owner and token), so a
//!   hit answers without any I/O. Expiry is compared with the clock on every hit, so a cached
//!   token expires exactly when an uncached one does. A time-to-live bounds any staleness a bug
//!   could cause; it is a safety net, not the mechanism. The map compares digests, not keys:
//!   its timing could tell at most how much of a SHA-256 digest matched, which finds no key.
//! - Revocation points live in the services (`tokens::delete_own`, `users::set_active`, …) and
//!   end with one call to [`revoked`], after their change is committed. Callers need not remember
//!   anything, whichever handler (JSON API, web UI, CLI) reached the service.
//! - Other instances learn through `NOTIFY` on the connection that made the change (inside a
//!   transaction, PostgreSQL delivers it at commit, never before). Each instance keeps one
//!   dedicated `LISTEN` connection; while it is down the cache is neither read nor filled, and it
//!   is emptied when the connection is lost and again once it is back, so a missed notification
//!   can never leave a revoked token cached. SQLite has no second instance to tell.
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

use moka::future::Cache;
use sea_orm::{ConnectionTrait, DbBackend};
use uuid::Uuid;

use super::{
    last_used::LastUsed,
    now, sqlite_lookup,
    tokens::{self, AuthError, Authenticated},
};
use crate::auth::key::TokenKey;

/// The PostgreSQL notification channel revocations are announced on.
const CHANNEL: &str = "multitoken_revocations";
/// How long to wait before trying to listen again after the connection failed.
const RELISTEN_AFTER: Duration = Duration::from_millis(500);

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

impl Revocation {
    fn to_payload(self) -> String {
        match self {
            Revocation::Token(id) => format!("token:{id}"),
            Revocation::User(id) => format!("user:{id}"),
            Revocation::All => "all".to_owned(),
        }
    }

    fn from_payload(payload: &str) -> Option<Revocation> {
        match payload.split_once(':') {
            Some(("token", id)) => id.parse().ok().map(Revocation::Token),
            Some(("user", id)) => id.parse().ok().map(Revocation::User),
            None if payload == "all" => Some(Revocation::All),
            _ => None,
        }
    }
}

thread_local! {
    /// The verifier of the application whose HTTP worker runs on this thread. Each actix worker
    /// is one thread running one application, so two applications in one process (as in the
    /// tests) never see each other's cache: only `NOTIFY` connects them, as in production.
    static WORKER_VERIFIER: RefCell<Option<Arc<Verifier>>> = const { RefCell::new(None) };
}

/// Makes `verifier` the one [`revoked`] invalidates when called on this thread. Called once per
/// HTTP worker, from the app factory, which actix runs on the worker's own thread.
pub fn serve_on_this_thread(verifier: Arc<Verifier>) {
    WORKER_VERIFIER.with(|slot| *slot.borrow_mut() = Some(verifier));
}

/// Announces a revocation that `db` has just committed: this worker's cache forgets it now, other
/// instances when PostgreSQL delivers the notification. Never call it inside the transaction that
/// makes the change: the cache would forget a token other requests can still read, and re-cache it.
///
/// LOUD: every function that deletes tokens or changes a user's standing must end with this call,
/// or cached verifications keep answering for the revoked token until the cache's time-to-live.
pub async fn revoked(db: &impl ConnectionTrait, revocation: Revocation) {
    WORKER_VERIFIER.with(|slot| {
        if let Some(verifier) = slot.borrow().as_ref() {
            verifier.invalidate(revocation);
        }
    });
    if db.get_database_backend() == DbBackend::Postgres {
        // The payload is built from UUIDs and fixed words only: nothing to quote.
        let notify = format!("NOTIFY {CHANNEL}, '{}'", revocation.to_payload());
        if let Err(e) = db.execute_unprepared(&notify).await {
            // The change itself is committed; other instances catch up within the cache TTL.
            log::error!("could not announce {revocation:?} to other instances: {e}");
        }
    }
}

#[derive(Debug, Clone)]
pub struct VerifierConfig {
    /// Entries kept at most; 0 disables the cache.
    pub capacity: u64,
    /// Longest an entry is trusted.
    pub ttl: Duration,
}

struct Cached {
    authenticated: Authenticated,
    /// The generation read before the database lookup that produced this entry.
    generation: u64,
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

/// Verifies presented keys through the cache, and records their use for [`LastUsed`].
pub struct Verifier {
    cache: Option<Cache<[u8; 32], Arc<Cached>>>,
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
    last_used: Arc<LastUsed>,
    /// The SQLite file, read directly on a miss (see `sqlite_lookup`).
    sqlite_file: Option<String>,
}

impl Verifier {
    /// `needs_listener`: other instances may revoke (PostgreSQL); the cache stays off until
    /// [`listen`] has subscribed.
    pub fn new(
        config: &VerifierConfig,
        needs_listener: bool,
        last_used: Arc<LastUsed>,
        sqlite_file: Option<String>,
    ) -> Self {
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
            last_used,
            sqlite_file,
        }
    }

    pub fn last_used(&self) -> &LastUsed {
        &self.last_used
    }

    /// Checks a presented key: from the cache when it holds a current entry, else through
    /// [`tokens::authenticate`], caching the success.
    pub async fn verify(
        &self,
        db: &impl ConnectionTrait,
        presented: &str,
    ) -> Result<Authenticated, AuthError> {
        let cache = self.cache.as_ref().filter(|_| self.trusted.load(SeqCst));
        let Some(cache) = cache else {
            let authenticated = self.lookup(db, presented).await?;
            self.last_used.record(authenticated.token.id, now());
            return Ok(authenticated);
        };
        let key = TokenKey::parse(presented).map_err(|reason| {
            log::debug!("token refused before lookup: {reason:?}");
            AuthError::Invalid
        })?;
        let digest = *key.digest().as_bytes();
        if let Some(entry) = cache.get(&digest).await {
            if self.is_current(&entry) {
                let at = now();
                let token = &entry.authenticated.token;
                // Exact expiry on every hit: a cached token expires when an uncached one does.
                if token.is_expired_at(at) {
                    log::debug!("token {} refused: expired", token.id);
                    return Err(AuthError::Expired);
                }
                self.last_used.record(token.id, at);
                return Ok(entry.authenticated.clone());
            }
            cache.invalidate(&digest).await;
        }
        let generation = self.generation.load(SeqCst);
        let authenticated = self.lookup(db, presented).await?;
        self.last_used.record(authenticated.token.id, now());
        let entry = Arc::new(Cached {
            authenticated: authenticated.clone(),
            generation,
        });
        cache.insert(digest, entry).await;
        // Invalidate-then-check: a revocation made while we were reading (or inserting) has
        // bumped the generation; drop what we inserted rather than trust it. One made after this
        // check carries a later generation than the entry, so `is_current` refuses the entry.
        if self.generation.load(SeqCst) != generation || !self.trusted.load(SeqCst) {
            cache.invalidate(&digest).await;
        }
        Ok(authenticated)
    }

    /// The database's answer: on SQLite read on this thread, else (or when that cannot answer)
    /// through the pool.
    async fn lookup(
        &self,
        db: &impl ConnectionTrait,
        presented: &str,
    ) -> Result<Authenticated, AuthError> {
        if let Some(file) = &self.sqlite_file {
            match sqlite_lookup::authenticate(file, presented) {
                Ok(answer) => return answer,
                Err(why) => log::warn!("direct SQLite lookup fell back to the pool: {}", why.0),
            }
        }
        tokens::authenticate(db, presented).await
    }

    fn is_current(&self, entry: &Cached) -> bool {
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
        let authenticated = &entry.authenticated;
        !revoked_since(&Subject::Token(authenticated.token.id))
            && !revoked_since(&Subject::User(authenticated.user.id))
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

    fn set_trusted(&self, trusted: bool) {
        // Emptied on both edges: entries from before a gap may have missed a revocation.
        self.invalidate(Revocation::All);
        self.trusted.store(trusted, SeqCst);
        self.invalidate(Revocation::All);
    }
}

/// Keeps a dedicated `LISTEN` connection to PostgreSQL and applies other instances' revocations
/// (and this instance's own, harmlessly, a second time). Runs until aborted.
pub async fn listen(database_url: String, verifier: Arc<Verifier>) {
    use sea_orm::sqlx::postgres::PgListener;
    loop {
        let mut listener = match PgListener::connect(&database_url).await {
            Ok(listener) => listener,
            Err(e) => {
                log::warn!("revocation listener cannot connect (cache bypassed meanwhile): {e}");
                tokio::time::sleep(RELISTEN_AFTER).await;
                continue;
            }
        };
        // Reconnection is ours to make, so that every gap is seen and the cache emptied.
        listener.eager_reconnect(false);
        if let Err(e) = listener.listen(CHANNEL).await {
            log::warn!("revocation listener cannot LISTEN (cache bypassed meanwhile): {e}");
            tokio::time::sleep(RELISTEN_AFTER).await;
            continue;
        }
        verifier.set_trusted(true);
        log::debug!("revocation listener subscribed to {CHANNEL}");
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => match Revocation::from_payload(notification.payload()) {
                    Some(revocation) => verifier.invalidate(revocation),
                    None => {
                        log::warn!("unknown revocation notice {:?}", notification.payload());
                        verifier.invalidate(Revocation::All);
                    }
                },
                Ok(None) => {
                    log::warn!(
                        "revocation listener lost its connection; cache emptied, reconnecting"
                    );
                    break;
                }
                Err(e) => {
                    log::warn!("revocation listener failed ({e}); cache emptied, reconnecting");
                    break;
                }
            }
        }
        verifier.set_trusted(false);
        drop(listener);
        tokio::time::sleep(RELISTEN_AFTER).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entities::{tokens::TokenKind, users};

    fn authenticated(user: Uuid, token: Uuid) -> Authenticated {
        let at = now();
        Authenticated {
            user: users::Model {
                id: user,
                username: "alice".into(),
                username_key: "alice".into(),
                username_skeleton: None,
                password_hash: String::new(),
                is_admin: false,
                is_active: true,
                created_at: at,
            },
            token: crate::entities::tokens::Model {
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
        }
    }

    /// What a filler does: read the generation, (look up the database,) build the entry.
    fn fill(verifier: &Verifier, user: Uuid, token: Uuid) -> Cached {
        Cached {
            authenticated: authenticated(user, token),
            generation: verifier.generation.load(SeqCst),
        }
    }

    #[test]
    fn an_entry_read_before_a_revocation_is_refused_whenever_it_was_inserted() {
        let config = VerifierConfig {
            capacity: 10,
            ttl: Duration::from_secs(60),
        };
        let verifier = Verifier::new(&config, false, Arc::default(), None);
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
        let verifier = Verifier::new(&config, true, Arc::default(), None);
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

    #[test]
    fn revocations_survive_the_trip_through_a_notification() {
        let id = Uuid::now_v7();
        for revocation in [Revocation::Token(id), Revocation::User(id), Revocation::All] {
            assert_eq!(
                Revocation::from_payload(&revocation.to_payload()),
                Some(revocation)
            );
        }
        assert_eq!(Revocation::from_payload("token:not-a-uuid"), None);
        assert_eq!(Revocation::from_payload("something else"), None);
    }
}
