//! Revocation as an API: a transaction that removes tokens or changes a user's standing is begun
//! and finished through [`Revocations`], which commits it and then announces what it revoked, to
//! this instance's cache at once and to every other instance through PostgreSQL `NOTIFY`. No
//! caller can forget the announcement, or make it too early (inside the transaction, a request
//! could re-cache a token other requests can still read).
//!
//! Other instances learn through `NOTIFY` issued inside the transaction: PostgreSQL delivers it at
//! commit, never before, and not at all on rollback. Each instance keeps one dedicated `LISTEN`
//! connection ([`listen`]); while it is down the cache is bypassed (see `verifier`). MariaDB has
//! no `NOTIFY`: the transaction inserts a row into `revocation_log` instead, visible at commit
//! like the notification, and every instance reads the recent rows every 200 ms ([`poll`]).
//! A table rather than Redis pub/sub: it needs nothing beyond the database, and it is
//! transactional, so an announcement can neither come before its commit nor survive a rollback.
//! SQLite has no second instance to tell.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, ExecResult,
    QueryResult, SqliteTransactionMode, Statement, TransactionOptions, TransactionTrait,
};

use super::{
    bus::{self, CHANNEL},
    verifier::{Revocation, Verifier},
};
use crate::metrics::Metrics;
/// How long to wait before trying to listen again after the connection failed.
const RELISTEN_AFTER: Duration = Duration::from_millis(500);

/// Begins the transactions that revoke. The server's announces to its own verifier too; the
/// command line's ([`Revocations::none`]) has no cache of its own and only notifies.
#[derive(Clone)]
pub struct Revocations {
    local: Option<Arc<Verifier>>,
}

impl Revocations {
    /// For a process that verifies nothing itself (the command line).
    pub fn none() -> Revocations {
        Revocations { local: None }
    }

    /// For a server whose verifier must forget what is revoked.
    pub fn announcing_to(verifier: Arc<Verifier>) -> Revocations {
        Revocations {
            local: Some(verifier),
        }
    }

    /// A transaction whose revocations are announced when, and only when, it commits.
    ///
    /// On SQLite it is a write transaction from its `BEGIN` (`IMMEDIATE`): these transactions
    /// read before they write, and a deferred one that read while another connection committed
    /// a write (a last-used flush, say) could not upgrade and would fail at once with "database
    /// is locked", busy timeout or not. Begun immediate, it queues behind the writer instead.
    pub async fn begin(&self, db: &DatabaseConnection) -> Result<RevokingTransaction, DbErr> {
        let options = TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..TransactionOptions::default()
        };
        Ok(RevokingTransaction {
            txn: db.begin_with_options(options).await?,
            revoked: Mutex::new(Vec::new()),
            local: self.local.clone(),
        })
    }
}

/// A database transaction that collects what it revokes. Dropped without
/// [`commit`](RevokingTransaction::commit), it rolls back and announces nothing.
pub struct RevokingTransaction {
    txn: DatabaseTransaction,
    revoked: Mutex<Vec<Revocation>>,
    local: Option<Arc<Verifier>>,
}

/// Queries run inside the transaction, as on a `DatabaseTransaction`.
#[async_trait::async_trait]
impl ConnectionTrait for RevokingTransaction {
    fn get_database_backend(&self) -> DbBackend {
        self.txn.get_database_backend()
    }

    async fn execute_raw(&self, statement: Statement) -> Result<ExecResult, DbErr> {
        self.txn.execute_raw(statement).await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.txn.execute_unprepared(sql).await
    }

    async fn query_one_raw(&self, statement: Statement) -> Result<Option<QueryResult>, DbErr> {
        self.txn.query_one_raw(statement).await
    }

    async fn query_all_raw(&self, statement: Statement) -> Result<Vec<QueryResult>, DbErr> {
        self.txn.query_all_raw(statement).await
    }

    fn support_returning(&self) -> bool {
        self.txn.support_returning()
    }
}

impl RevokingTransaction {
    /// Notes that this transaction makes `revocation` true; announced once committed.
    pub fn revoke(&self, revocation: Revocation) {
        let mut revoked = self
            .revoked
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !revoked.contains(&revocation) {
            revoked.push(revocation);
        }
    }

    /// Commits, then makes this instance's cache forget what was revoked; other instances are
    /// told by the notifications that the commit delivers.
    pub async fn commit(self) -> Result<(), DbErr> {
        let revoked = self
            .revoked
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for revocation in &revoked {
            bus::announce(&self.txn, &to_payload(*revocation)).await?;
        }
        self.txn.commit().await?;
        if let Some(verifier) = &self.local {
            for revocation in revoked {
                verifier.invalidate(revocation);
            }
        }
        Ok(())
    }
}

fn to_payload(revocation: Revocation) -> String {
    match revocation {
        Revocation::Token(id) => bus::token_payload(id),
        Revocation::User(id) => format!("user:{id}"),
        Revocation::All => "all".to_owned(),
    }
}

fn from_payload(payload: &str) -> Option<Revocation> {
    let (payload, _) = bus::sent_at(payload);
    match payload.split_once(':') {
        Some(("token", id)) => id.parse().ok().map(Revocation::Token),
        Some(("user", id)) => id.parse().ok().map(Revocation::User),
        None if payload == "all" => Some(Revocation::All),
        _ => None,
    }
}

/// Keeps a dedicated `LISTEN` connection to PostgreSQL and applies other instances' revocations
/// (and this instance's own, harmlessly, a second time). Runs until aborted.
pub async fn listen(database_url: String, verifier: Arc<Verifier>) {
    use sea_orm::sqlx::postgres::PgListener;
    let mut subscribed_before = false;
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
        if subscribed_before {
            Metrics::count(&verifier.metrics().bus_reconnects);
        }
        subscribed_before = true;
        log::debug!("revocation listener subscribed to {CHANNEL}");
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => apply(&verifier, notification.payload()),
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

/// How often each instance reads MariaDB's `revocation_log`: a revocation reaches every
/// instance within this (plus a query), well inside the promised second.
pub const POLL_EVERY: Duration = Duration::from_millis(200);

/// How far back each poll reads. A row is written just before its transaction commits, so it
/// becomes visible with a `noted_at` at most that commit's duration in the past; every row stays
/// in many polls' windows, and each is applied once (the ids of the previous poll are kept).
const POLL_WINDOW_SECONDS: u32 = 10;

/// Rows older than this are deleted by whichever instance gets there.
const LOG_KEPT_SECONDS: u32 = 60;

/// MariaDB's counterpart of [`listen`] (it has no LISTEN/NOTIFY): reads the recent rows of
/// `revocation_log` every [`POLL_EVERY`] and applies those it has not seen. The cache is
/// trusted only while polls succeed; a failed poll empties it and bypasses it until one
/// succeeds again. Runs until aborted.
pub async fn poll(db: DatabaseConnection, verifier: Arc<Verifier>) {
    let recent = format!(
        "SELECT id, payload FROM revocation_log \
         WHERE noted_at >= NOW(6) - INTERVAL {POLL_WINDOW_SECONDS} SECOND ORDER BY id"
    );
    let old = format!(
        "DELETE FROM revocation_log WHERE noted_at < NOW(6) - INTERVAL {LOG_KEPT_SECONDS} SECOND"
    );
    let mut seen: std::collections::HashSet<i64> = Default::default();
    let mut trusted = false;
    let mut polled_before = false;
    let mut last_clean = tokio::time::Instant::now();
    let mut ticks = tokio::time::interval(POLL_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let rows = match db
            .query_all_raw(Statement::from_string(DbBackend::MySql, recent.as_str()))
            .await
        {
            Ok(rows) => rows,
            Err(e) => {
                if trusted {
                    log::warn!("revocation poll failed ({e}); cache emptied and bypassed");
                    verifier.set_trusted(false);
                    trusted = false;
                }
                continue;
            }
        };
        let mut now_seen = std::collections::HashSet::with_capacity(rows.len());
        for row in rows {
            let (Ok(id), Ok(payload)) = (
                row.try_get_by_index::<i64>(0),
                row.try_get_by_index::<String>(1),
            ) else {
                continue;
            };
            now_seen.insert(id);
            if seen.contains(&id) || !trusted {
                // Before the first good poll the cache is empty and bypassed: nothing to apply.
                continue;
            }
            apply(&verifier, &payload);
        }
        seen = now_seen;
        if !trusted {
            verifier.set_trusted(true);
            trusted = true;
            if polled_before {
                Metrics::count(&verifier.metrics().bus_reconnects);
            }
            polled_before = true;
        }
        if last_clean.elapsed() >= Duration::from_secs(u64::from(LOG_KEPT_SECONDS)) {
            last_clean = tokio::time::Instant::now();
            if let Err(e) = db.execute_unprepared(&old).await {
                log::warn!("could not delete old revocation_log rows: {e}");
            }
        }
    }
}

/// Applies one announcement (an unknown one empties the cache) and times its delivery.
fn apply(verifier: &Verifier, payload: &str) {
    match from_payload(payload) {
        Some(revocation) => {
            verifier.invalidate(revocation);
            if let (_, Some(sent)) = bus::sent_at(payload) {
                let took = chrono::Utc::now().timestamp_millis() - sent;
                let took = Duration::from_millis(u64::try_from(took).unwrap_or(0));
                verifier.metrics().bus_delivery.observe(took);
            }
        }
        None => {
            log::warn!("unknown revocation notice {payload:?}");
            verifier.invalidate(Revocation::All);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn revocations_survive_the_trip_through_a_notification() {
        let id = Uuid::now_v7();
        for revocation in [Revocation::Token(id), Revocation::User(id), Revocation::All] {
            assert_eq!(from_payload(&to_payload(revocation)), Some(revocation));
        }
        assert_eq!(from_payload("token:not-a-uuid"), None);
        assert_eq!(from_payload("something else"), None);
    }
}
