//! `last_used_at` (with the address and user agent of that use), and each token's uses and
//! refusals per hour (`token_usage`), without a write per request: uses are noted in memory and
//! written back in batches, at most one write per token (and hour) per flush interval, and once
//! more at shutdown.

use std::{
    net::IpAddr,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use chrono::{DateTime, Utc};
use rustc_hash::FxHashMap;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter, TransactionSession,
    TransactionTrait, sea_query::Expr,
};
use uuid::Uuid;

use crate::entities::tokens;

/// Rows written per transaction: short enough not to hold SQLite's write lock for long.
const BATCH: usize = 500;

/// Reads of one listing at most, when flushes keep committing while it reads (`fresh`).
const READ_ATTEMPTS: u32 = 5;

/// Shards of the pending uses. Every request records a use, so one shared map would be one lock
/// and one cache line that every core takes in turn; each thread records into its own shard.
const SHARDS: usize = 16;

/// Keyed by ids the server made (never chosen by a client), so hashed with FxHash: SipHash
/// cost each request more than the rest of its noting.
type Pending = FxHashMap<Uuid, Seen>;

/// Uses a flush took, shared between the flush writing them and `LastUsed::writing`.
type Batch = Arc<Pending>;

/// Uses and refusals per token and hour (seconds since the epoch of the hour's start).
type Counts = FxHashMap<(Uuid, i64), Count>;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Count {
    pub uses: u64,
    pub refused: u64,
}

/// What one shard holds: the newest use per token, and the counts.
#[derive(Default)]
struct State {
    seen: Pending,
    counts: Counts,
}

fn hour_of(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(3600) * 3600
}

/// The newest use of a token: when, from where, by what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub at: DateTime<Utc>,
    pub address: Option<IpAddr>,
    pub agent: Option<Box<str>>,
}

/// User agents are kept to this many bytes: enough to tell clients apart, and a client cannot
/// make every noted use large.
const AGENT_MAX_BYTES: usize = 256;

/// Who made a use: borrowed from the request, copied only when it differs from the last noted.
#[derive(Clone, Copy, Debug, Default)]
pub struct Client<'a> {
    pub address: Option<IpAddr>,
    pub agent: Option<&'a str>,
}

/// One shard, on cache lines of its own (so that two shards never share one).
#[repr(align(128))]
#[derive(Default)]
struct Shard(Mutex<State>);

impl Shard {
    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.0)
    }
}

thread_local! {
    /// This thread's shard, handed out in turn as threads first record.
    static SHARD: usize = {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS
    };
}

/// Uses not yet written, the newest per token: noted since the last flush (in the shards), or
/// taken by a flush that has not committed them yet (`writing`).
pub struct LastUsed {
    shards: [Shard; SHARDS],
    /// Uses taken by a flush and not yet committed: still shown, so that a page read while a
    /// flush writes sees a use in memory or in the database, never in neither.
    writing: Mutex<Vec<Batch>>,
    /// How many flushes have committed uses and stopped showing them: a listing that sees
    /// this move while it reads its rows reads them again (`LastUsed::fresh`).
    committed: AtomicU64,
}

impl Default for LastUsed {
    fn default() -> Self {
        LastUsed {
            shards: std::array::from_fn(|_| Shard::default()),
            writing: Mutex::default(),
            committed: AtomicU64::new(0),
        }
    }
}

/// Rows that hold tokens, for `LastUsed::fresh`.
pub trait HoldsTokens {
    fn tokens_mut(&mut self) -> impl Iterator<Item = &mut tokens::Model>;
}

impl HoldsTokens for Vec<tokens::Model> {
    fn tokens_mut(&mut self) -> impl Iterator<Item = &mut tokens::Model> {
        self.iter_mut()
    }
}

/// A token with something read beside it (its owner).
impl<Beside> HoldsTokens for Vec<(tokens::Model, Beside)> {
    fn tokens_mut(&mut self) -> impl Iterator<Item = &mut tokens::Model> {
        self.iter_mut().map(|(token, _)| token)
    }
}

/// Some tokens' unwritten uses as they were at one moment; see `LastUsed::unwritten_of`.
pub struct Unwritten(Pending);

impl Unwritten {
    /// Shows each listed token's newer unwritten use, so a listing is as fresh as this
    /// instance knows.
    pub fn overlay<'a>(&self, listed: impl IntoIterator<Item = &'a mut tokens::Model>) {
        if self.0.is_empty() {
            return;
        }
        for token in listed {
            if let Some(seen) = self.0.get(&token.id)
                && token.last_used_at.is_none_or(|written| written < seen.at)
            {
                token.last_used_at = Some(seen.at);
                token.last_used_ip = seen.address.map(|ip| ip.to_string());
                token.last_used_user_agent = seen.agent.as_deref().map(str::to_owned);
            }
        }
    }
}

/// What a flush took from the shards, until it is written. Whatever is not yet written when
/// this is dropped (a failed write, or a flush cut off) goes back into a shard for the next
/// flush, before it stops being shown: no use is lost and none disappears from view. A write
/// whose commit reached the database but whose answer did not (a lost connection, a flush cut
/// off mid-commit) is put back too: its `last_used_at` is written again harmlessly, but its
/// counts would be added twice, which is why a stop lets a flush finish (`flush_every`).
struct Taken<'a> {
    owner: &'a LastUsed,
    seen: Batch,
    /// The order in which `seen` is written: the first `seen_written` are committed.
    order: Vec<Uuid>,
    seen_written: usize,
    counts: Vec<((Uuid, i64), Count)>,
    counts_written: usize,
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        let unwritten_counts = &self.counts[self.counts_written..];
        let unwritten_seen = &self.order[self.seen_written..];
        if !unwritten_seen.is_empty() || !unwritten_counts.is_empty() {
            let shard = SHARD.with(|shard| *shard);
            let mut kept = self.owner.shards[shard].lock();
            for token in unwritten_seen {
                merge(&mut kept.seen, *token, &self.seen[token]);
            }
            add_counts(&mut kept.counts, unwritten_counts.iter().copied());
        }
        let mut writing = lock(&self.owner.writing);
        writing.retain(|batch| !Arc::ptr_eq(batch, &self.seen));
        if self.seen_written > 0 {
            self.owner.committed.fetch_add(1, Ordering::SeqCst);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn note(pending: &mut Pending, token: Uuid, at: DateTime<Utc>, client: Client<'_>) {
    let agent = client.agent.map(truncated);
    match pending.get_mut(&token) {
        Some(seen) if seen.at >= at => {}
        Some(seen) => {
            seen.at = at;
            // A use by no known client (introspection) leaves the last known one shown.
            if client.address.is_some() || agent.is_some() {
                seen.address = client.address;
                if seen.agent.as_deref() != agent {
                    seen.agent = agent.map(Box::from);
                }
            }
        }
        None => {
            pending.insert(
                token,
                Seen {
                    at,
                    address: client.address,
                    agent: agent.map(Box::from),
                },
            );
        }
    }
}

/// Merges a noted use into `pending` (newest wins).
fn merge(pending: &mut Pending, token: Uuid, seen: &Seen) {
    let client = Client {
        address: seen.address,
        agent: seen.agent.as_deref(),
    };
    note(pending, token, seen.at, client);
}

/// At most `AGENT_MAX_BYTES`, cut at a character boundary.
fn truncated(agent: &str) -> &str {
    if agent.len() <= AGENT_MAX_BYTES {
        return agent;
    }
    let mut end = AGENT_MAX_BYTES;
    while !agent.is_char_boundary(end) {
        end -= 1;
    }
    &agent[..end]
}

impl LastUsed {
    pub fn record(&self, token: Uuid, at: DateTime<Utc>, client: Client<'_>) {
        let shard = SHARD.with(|shard| *shard);
        let mut state = self.shards[shard].lock();
        note(&mut state.seen, token, at, client);
        state.counts.entry((token, hour_of(at))).or_default().uses += 1;
    }

    /// A use the token's policy refused: counted for its usage history, not as its last use.
    pub fn record_refusal(&self, token: Uuid, at: DateTime<Utc>) {
        let shard = SHARD.with(|shard| *shard);
        let mut state = self.shards[shard].lock();
        state
            .counts
            .entry((token, hour_of(at)))
            .or_default()
            .refused += 1;
    }

    /// The unwritten uses of `ids`, to show over their rows read *after* this: a use is then
    /// either found here or, flushed meanwhile, already committed when the rows are read.
    /// (Looked up after the read, a flush committing in between would hide it from both.)
    /// Listings, whose ids are known only once read, use `fresh`.
    pub fn unwritten_of(&self, ids: &[Uuid]) -> Unwritten {
        Unwritten(self.newest_of(ids))
    }

    /// Reads rows with `read` (a read only, outside any transaction: it may run again, and a
    /// SQLite transaction would read from before its own start) and shows the unwritten uses
    /// over them, looked up by the ids read. A use noted before is then either still unwritten when
    /// looked up, or committed by a flush: before the read began (the rows have it), or while it
    /// ran, which moves `committed`, and the rows are read again.
    pub async fn fresh<T, E, Read>(&self, mut read: impl FnMut() -> Read) -> Result<T, E>
    where
        T: HoldsTokens,
        Read: Future<Output = Result<T, E>>,
    {
        let mut attempt = 1;
        loop {
            let before = self.committed.load(Ordering::SeqCst);
            let mut rows = read().await?;
            let ids: Vec<Uuid> = rows.tokens_mut().map(|token| token.id).collect();
            self.unwritten_of(&ids).overlay(rows.tokens_mut());
            // Flushes committing during every read (flushing far more often than reading
            // takes): shown as read, where a use may look older than it is.
            if self.committed.load(Ordering::SeqCst) == before || attempt == READ_ATTEMPTS {
                return Ok(rows);
            }
            attempt += 1;
        }
    }

    /// The newest unwritten use of each of `ids`, from the batches being written and the
    /// shards. `writing` stays locked while the shards are read: a flush empties the shards only
    /// under it (`take_for_writing`), so no use moves from a shard yet to be read into a batch
    /// already read; and a batch leaves `writing` only after its unwritten part is back in a
    /// shard (`Taken::drop`), so none moves the other way unseen either. Only the ids asked for
    /// are copied: a fleet's uses between two flushes may be many.
    fn newest_of(&self, ids: &[Uuid]) -> Pending {
        let mut newest = Pending::default();
        if ids.is_empty() {
            return newest;
        }
        let mut keep_newer = |found: &Pending| {
            for id in ids {
                if let Some(seen) = found.get(id) {
                    merge(&mut newest, *id, seen);
                }
            }
        };
        let writing = lock(&self.writing);
        for batch in writing.iter() {
            keep_newer(batch);
        }
        for shard in &self.shards {
            let state = shard.lock();
            if !state.seen.is_empty() {
                keep_newer(&state.seen);
            }
        }
        drop(writing);
        newest
    }

    /// Every shard's uses in one map, the shards emptied.
    #[cfg(test)]
    fn take_all(&self) -> Pending {
        self.take_both().0
    }

    /// Every shard's uses and counts, the shards emptied.
    fn take_both(&self) -> (Pending, Counts) {
        let mut all = Pending::default();
        let mut counts = Counts::default();
        for shard in &self.shards {
            let state = std::mem::take(&mut *shard.lock());
            for (token, seen) in state.seen {
                merge(&mut all, token, &seen);
            }
            add_counts(&mut counts, state.counts);
        }
        (all, counts)
    }

    /// Takes every noted use for writing; they stay shown until written (see `Taken`).
    fn take_for_writing(&self) -> Taken<'_> {
        // The shards are emptied under `writing`'s lock, as `newest_of` reads them: it sees
        // each use either in its shard or in this batch, never in neither.
        let mut writing = lock(&self.writing);
        let (seen, counts) = self.take_both();
        let order = seen.keys().copied().collect();
        let seen: Batch = Arc::new(seen);
        writing.push(Arc::clone(&seen));
        Taken {
            owner: self,
            seen,
            order,
            seen_written: 0,
            counts: counts.into_iter().collect(),
            counts_written: 0,
        }
    }

    /// Writes every noted use; returns how many tokens were written. On failure the uses are
    /// kept for the next flush.
    pub async fn flush<C>(&self, db: &C) -> Result<usize, DbErr>
    where
        C: ConnectionTrait + TransactionTrait,
    {
        let mut taken = self.take_for_writing();
        for batch in taken.order.chunks(BATCH) {
            write(db, batch, &taken.seen).await?;
            taken.seen_written += batch.len();
        }
        for batch in taken.counts.chunks(BATCH) {
            write_counts(db, batch).await?;
            taken.counts_written += batch.len();
        }
        Ok(taken.seen_written)
    }
}

fn add_counts(into: &mut Counts, from: impl IntoIterator<Item = ((Uuid, i64), Count)>) {
    for (key, count) in from {
        let total = into.entry(key).or_default();
        total.uses += count.uses;
        total.refused += count.refused;
    }
}

/// Adds counts to their hours' rows, creating them; counts of a token deleted meanwhile are
/// dropped (the `EXISTS`), since its history went with it.
async fn write_counts<C>(db: &C, batch: &[((Uuid, i64), Count)]) -> Result<(), DbErr>
where
    C: ConnectionTrait + TransactionTrait,
{
    const UPSERT: &str = "INSERT INTO token_usage (token_id, hour, uses, refused) \
         SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM tokens WHERE id = $1) \
         ON CONFLICT (token_id, hour) DO UPDATE \
         SET uses = token_usage.uses + excluded.uses, refused = token_usage.refused + excluded.refused";
    // MariaDB: `?` placeholders (the token's id twice), a `FROM DUAL` to hang the `WHERE` on,
    // and its own upsert.
    const UPSERT_MARIADB: &str = "INSERT INTO token_usage (token_id, hour, uses, refused) \
         SELECT ?, ?, ?, ? FROM DUAL WHERE EXISTS (SELECT 1 FROM tokens WHERE id = ?) \
         ON DUPLICATE KEY UPDATE \
         uses = token_usage.uses + VALUES(uses), refused = token_usage.refused + VALUES(refused)";
    let txn = db.begin().await?;
    let backend = txn.get_database_backend();
    for ((token, hour), count) in batch {
        let Some(hour) = DateTime::<Utc>::from_timestamp(*hour, 0) else {
            continue;
        };
        let mut values: Vec<sea_orm::Value> = vec![
            (*token).into(),
            hour.into(),
            i64::try_from(count.uses).unwrap_or(i64::MAX).into(),
            i64::try_from(count.refused).unwrap_or(i64::MAX).into(),
        ];
        let upsert = if backend == sea_orm::DbBackend::MySql {
            values.push((*token).into());
            UPSERT_MARIADB
        } else {
            UPSERT
        };
        txn.execute_raw(sea_orm::Statement::from_sql_and_values(
            backend, upsert, values,
        ))
        .await?;
    }
    txn.commit().await
}

/// Writes the uses of the tokens in `batch`, as `seen` holds them.
async fn write<C>(db: &C, batch: &[Uuid], seen: &Pending) -> Result<(), DbErr>
where
    C: ConnectionTrait + TransactionTrait,
{
    let txn = db.begin().await?;
    for token in batch {
        let seen = &seen[token];
        let at = seen.at;
        // Never backwards: another instance may have written a later use meanwhile. A token
        // deleted meanwhile matches no row, which is fine.
        tokens::Entity::update_many()
            .col_expr(tokens::Column::LastUsedAt, Expr::value(at))
            .col_expr(
                tokens::Column::LastUsedIp,
                Expr::value(seen.address.map(|ip| ip.to_string())),
            )
            .col_expr(
                tokens::Column::LastUsedUserAgent,
                Expr::value(seen.agent.as_deref().map(str::to_owned)),
            )
            .filter(tokens::Column::Id.eq(*token))
            .filter(
                Condition::any()
                    .add(tokens::Column::LastUsedAt.is_null())
                    .add(tokens::Column::LastUsedAt.lt(at)),
            )
            .exec(&txn)
            .await?;
    }
    txn.commit().await
}

/// Flushes every `interval` until `stop` turns true (or its sender is gone). A stop is seen only
/// between flushes, so none is cut off during its commit.
pub async fn flush_every<C>(
    interval: Duration,
    last_used: Arc<LastUsed>,
    db: C,
    mut stop: tokio::sync::watch::Receiver<bool>,
) where
    C: ConnectionTrait + TransactionTrait,
{
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        tokio::select! {
            // A stop first: after a long flush the next tick is due at once, and one more
            // flush begun then could be cut off by the stop's bound.
            biased;
            _ = stop.wait_for(|stopped| *stopped) => return,
            _ = ticks.tick() => {}
        }
        match last_used.flush(&db).await {
            Ok(0) => {}
            Ok(written) => log::debug!("last use written for {written} tokens"),
            Err(e) => log::warn!("could not write last use of tokens (kept for next time): {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(id: Uuid) -> tokens::Model {
        tokens::Model {
            id,
            user_id: Uuid::now_v7(),
            name: "sensor".into(),
            name_skeleton: None,
            kind: tokens::TokenKind::Device,
            key_digest: String::new(),
            key_prefix: String::new(),
            created_at: Utc::now(),
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
        }
    }

    #[test]
    fn uses_recorded_on_many_threads_show_the_newest_and_are_taken_once() {
        let last_used = LastUsed::default();
        let id = Uuid::now_v7();
        let start = Utc::now();
        // More threads than shards, each with its own time: the newest must win wherever it landed.
        std::thread::scope(|scope| {
            for i in 0..(SHARDS as i64 + 3) {
                let last_used = &last_used;
                let client = Client {
                    address: Some(IpAddr::from([192, 0, 2, i as u8])),
                    agent: Some("thermostat/1.0"),
                };
                scope.spawn(move || {
                    last_used.record(id, start + chrono::TimeDelta::seconds(i), client)
                });
            }
        });
        let newest = start + chrono::TimeDelta::seconds(SHARDS as i64 + 2);
        let mut listed = [token(id), token(Uuid::now_v7())];
        last_used
            .unwritten_of(&[listed[0].id, listed[1].id])
            .overlay(&mut listed);
        assert_eq!(
            listed[0].last_used_at,
            Some(newest),
            "the newest use is shown"
        );
        assert_eq!(
            listed[0].last_used_ip.as_deref(),
            Some(format!("192.0.2.{}", SHARDS + 2).as_str()),
            "with the newest use's address"
        );
        assert_eq!(
            listed[0].last_used_user_agent.as_deref(),
            Some("thermostat/1.0")
        );
        assert_eq!(listed[1].last_used_at, None, "an unused token shows none");
        let taken = last_used.take_all();
        assert_eq!(taken.len(), 1, "one entry per token, across shards");
        assert_eq!(taken[&id].at, newest);
        assert!(last_used.take_all().is_empty(), "taken uses are gone");
    }

    fn shown(last_used: &LastUsed, id: Uuid) -> Option<DateTime<Utc>> {
        let mut listed = [token(id)];
        last_used.unwritten_of(&[id]).overlay(&mut listed);
        listed[0].last_used_at
    }

    #[test]
    fn a_use_being_written_stays_shown_until_written_and_is_kept_if_never_written() {
        let last_used = LastUsed::default();
        let (written_id, unwritten_id) = (Uuid::now_v7(), Uuid::now_v7());
        let at = Utc::now();
        last_used.record(written_id, at, Client::default());

        let mut taken = last_used.take_for_writing();
        assert!(
            last_used.take_all().is_empty(),
            "the flush took the use from the shards"
        );
        assert_eq!(
            shown(&last_used, written_id),
            Some(at),
            "a page read while the flush writes still shows the use (it is not in the database yet)"
        );
        taken.seen_written = taken.seen.len();
        taken.counts_written = taken.counts.len();
        drop(taken);
        assert_eq!(
            shown(&last_used, written_id),
            None,
            "once written, the database shows it and memory no longer holds it"
        );

        // A flush that fails, or is aborted at shutdown, before writing: nothing is lost.
        last_used.record(unwritten_id, at, Client::default());
        let taken = last_used.take_for_writing();
        drop(taken);
        assert_eq!(
            shown(&last_used, unwritten_id),
            Some(at),
            "still shown after the failed flush"
        );
        let kept = last_used.take_both();
        assert_eq!(kept.0[&unwritten_id].at, at, "kept for the next flush");
        assert_eq!(
            kept.1[&(unwritten_id, hour_of(at))].uses,
            1,
            "its count is kept too"
        );
        assert!(lock(&last_used.writing).is_empty(), "no batch left listed");
    }

    #[test]
    fn a_long_user_agent_is_cut_at_a_character_boundary() {
        let long = "é".repeat(AGENT_MAX_BYTES);
        let cut = truncated(&long);
        assert!(cut.len() <= AGENT_MAX_BYTES && cut.len() >= AGENT_MAX_BYTES - 1);
        assert!(long.starts_with(cut));
        assert_eq!(truncated("curl/8"), "curl/8");
    }

    /// Pages read uses while flushes take and write (or fail to write) them on another thread:
    /// every use must be seen in memory (looked up before the read for a token's page, after it
    /// for a listing) or in the "database", whatever the interleaving. The database here is a set the flusher fills before it
    /// drops its batch, as a real flush commits before it does.
    #[test]
    fn a_snapshot_racing_flushes_sees_every_use_in_memory_or_written() {
        use futures_util::FutureExt;
        use std::{
            collections::HashSet,
            sync::atomic::{AtomicBool, Ordering},
        };
        let last_used = LastUsed::default();
        let written: Mutex<HashSet<Uuid>> = Mutex::default();
        let done = AtomicBool::new(false);
        let missed = std::thread::scope(|scope| {
            // Two flushers, each writing only a part of some batches (a failed second chunk)
            // and nothing of others (a failed first one): the rest goes back into memory.
            for flusher in 0..2_usize {
                let (last_used, written, done) = (&last_used, &written, &done);
                scope.spawn(move || {
                    let mut round = flusher;
                    while !done.load(Ordering::Relaxed) {
                        let mut taken = last_used.take_for_writing();
                        round += 1;
                        let part = round % (taken.order.len() + 1);
                        lock(written).extend(&taken.order[..part]);
                        taken.seen_written = part;
                        if part == taken.order.len() {
                            taken.counts_written = taken.counts.len();
                        }
                    }
                });
            }
            // Even rounds look the id up before reading (a token's page), odd ones list (`fresh`).
            let missed = (0..20_000)
                .filter(|round| {
                    let id = Uuid::now_v7();
                    last_used.record(id, Utc::now(), Client::default());
                    let read = || {
                        let mut row = token(id);
                        if lock(&written).contains(&id) {
                            row.last_used_at = Some(Utc::now());
                        }
                        std::future::ready(Ok::<_, ()>(vec![row]))
                    };
                    let listed = if round % 2 == 0 {
                        let unwritten = last_used.unwritten_of(&[id]);
                        let mut rows = read().into_inner().unwrap();
                        unwritten.overlay(&mut rows);
                        rows
                    } else {
                        last_used
                            .fresh(read)
                            .now_or_never()
                            .expect("a read of memory is ready at once")
                            .unwrap()
                    };
                    listed[0].last_used_at.is_none()
                })
                .count();
            done.store(true, Ordering::Relaxed);
            missed
        });
        assert_eq!(missed, 0, "uses neither in memory nor written");
    }

    /// A SQLite database with the two tables a flush writes, and a second connection holding
    /// its write lock: a flush through the SeaORM connection waits until the lock is released.
    async fn locked_database() -> (
        tempfile::TempDir,
        rusqlite::Connection,
        sea_orm::DatabaseConnection,
    ) {
        let folder = tempfile::tempdir().expect("a temporary folder");
        let path = folder.path().join("locked.db");
        let holder = rusqlite::Connection::open(&path).expect("open the database");
        holder
            .execute_batch(
                "CREATE TABLE tokens (id BLOB PRIMARY KEY, last_used_at TEXT, \
                 last_used_ip TEXT, last_used_user_agent TEXT); \
                 CREATE TABLE token_usage (token_id BLOB, hour TEXT, uses INTEGER, \
                 refused INTEGER, PRIMARY KEY (token_id, hour));",
            )
            .expect("create the tables");
        let url = format!("sqlite://{}", path.display());
        let db = sea_orm::Database::connect(url.as_str())
            .await
            .expect("connect through SeaORM");
        holder
            .execute_batch("BEGIN IMMEDIATE;")
            .expect("hold the write lock");
        (folder, holder, db)
    }

    /// A flush cut off while its write waited (aborted) must leave its uses for the next.
    #[tokio::test]
    async fn a_flush_aborted_while_writing_leaves_its_uses_for_the_next() {
        let (_folder, holder, db) = locked_database().await;
        let last_used = Arc::new(LastUsed::default());
        let id = Uuid::now_v7();
        let at = Utc::now();
        last_used.record(id, at, Client::default());
        let flushing = tokio::spawn({
            let last_used = Arc::clone(&last_used);
            async move { last_used.flush(&db).await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            !flushing.is_finished(),
            "the flush waits on the lock (else this test shows nothing)"
        );
        assert_eq!(shown(&last_used, id), Some(at), "shown while it waits");
        flushing.abort();
        assert!(flushing.await.unwrap_err().is_cancelled());
        let kept = last_used.take_both();
        assert_eq!(
            kept.0.get(&id).map(|seen| seen.at),
            Some(at),
            "the aborted flush's use is back for the last flush"
        );
        assert_eq!(kept.1[&(id, hour_of(at))].uses, 1, "and its count");
        drop(holder);
    }

    /// A stop lets the periodic flush under way finish rather than cutting it off (which,
    /// during a commit, would count its uses twice), and then ends the loop.
    #[tokio::test]
    async fn a_stop_lets_the_flush_under_way_finish_then_ends_the_loop() {
        let (_folder, holder, db) = locked_database().await;
        let last_used = Arc::new(LastUsed::default());
        last_used.record(Uuid::now_v7(), Utc::now(), Client::default());
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let flusher = tokio::spawn(flush_every(
            Duration::from_millis(10),
            Arc::clone(&last_used),
            db,
            stopped,
        ));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            lock(&last_used.writing).len(),
            1,
            "a flush waits on the lock (else this test shows nothing)"
        );
        stop.send_replace(true);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            !flusher.is_finished(),
            "the stop waits for the flush under way"
        );
        holder.execute_batch("ROLLBACK;").expect("release the lock");
        tokio::time::timeout(Duration::from_secs(10), flusher)
            .await
            .expect("the loop ends once its flush is done")
            .expect("the loop ran to its end");
        assert!(
            lock(&last_used.writing).is_empty() && last_used.take_both().0.is_empty(),
            "the flush finished writing: nothing put back for another flush"
        );
    }
}
