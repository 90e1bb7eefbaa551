//! `last_used_at` without a write per request: uses are noted in memory and written back in
//! batches, at most one write per token per flush interval, and once more at shutdown.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter, TransactionSession,
    TransactionTrait, sea_query::Expr,
};
use uuid::Uuid;

use crate::entities::tokens;

/// Rows written per transaction: short enough not to hold SQLite's write lock for long.
const BATCH: usize = 500;

/// Uses seen since the last flush, newest time per token.
#[derive(Default)]
pub struct LastUsed {
    pending: Mutex<HashMap<Uuid, DateTime<Utc>>>,
}

impl LastUsed {
    pub fn record(&self, token: Uuid, at: DateTime<Utc>) {
        let mut pending = self.lock();
        let last = pending.entry(token).or_insert(at);
        if *last < at {
            *last = at;
        }
    }

    /// Shows uses not yet written in `listed`, so a listing is as fresh as this instance knows.
    pub fn overlay<'a>(&self, listed: impl IntoIterator<Item = &'a mut tokens::Model>) {
        let pending = self.lock();
        if pending.is_empty() {
            return;
        }
        for token in listed {
            if let Some(&at) = pending.get(&token.id)
                && token.last_used_at.is_none_or(|written| written < at)
            {
                token.last_used_at = Some(at);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, DateTime<Utc>>> {
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Writes every noted use; returns how many tokens were written. On failure the uses are
    /// kept for the next flush.
    pub async fn flush<C>(&self, db: &C) -> Result<usize, DbErr>
    where
        C: ConnectionTrait + TransactionTrait,
    {
        let taken: Vec<(Uuid, DateTime<Utc>)> =
            std::mem::take(&mut *self.lock()).into_iter().collect();
        let mut written = 0;
        for (index, batch) in taken.chunks(BATCH).enumerate() {
            if let Err(e) = write(db, batch).await {
                for &(token, at) in &taken[index * BATCH..] {
                    self.record(token, at);
                }
                return Err(e);
            }
            written += batch.len();
        }
        Ok(written)
    }
}

async fn write<C>(db: &C, batch: &[(Uuid, DateTime<Utc>)]) -> Result<(), DbErr>
where
    C: ConnectionTrait + TransactionTrait,
{
    let txn = db.begin().await?;
    for &(token, at) in batch {
        // Never backwards: another instance may have written a later use meanwhile. A token
        // deleted meanwhile matches no row, which is fine.
        tokens::Entity::update_many()
            .col_expr(tokens::Column::LastUsedAt, Expr::value(at))
            .filter(tokens::Column::Id.eq(token))
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

/// Flushes every `interval` until aborted.
pub async fn flush_every<C>(interval: Duration, last_used: std::sync::Arc<LastUsed>, db: C)
where
    C: ConnectionTrait + TransactionTrait,
{
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        match last_used.flush(&db).await {
            Ok(0) => {}
            Ok(written) => log::debug!("last use written for {written} tokens"),
            Err(e) => log::warn!("could not write last use of tokens (kept for next time): {e}"),
        }
    }
}
