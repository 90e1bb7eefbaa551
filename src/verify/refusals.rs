//! Attempts a token's policy refused (outside its networks, pinned elsewhere, out of uses, idle,
//! a read-only write, a missing scope), recorded for its owner as `token.refused` audit events
//! without a write per request: at most one event per token, reason and address per minute,
//! noted in memory and written in batches like the last use. A flood of refused attempts costs a
//! map lookup each, and the table one row per minute per distinct address.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbErr};
use uuid::Uuid;

use super::checks::{Authenticated, Refusal};
use crate::services::audit::{self, Action, Actor, Event, Target};

/// Keys remembered before the stale ones are dropped.
const REMEMBERED: usize = 10_000;
/// Events held between writes; past this, more are dropped (and counted in a warning).
const HELD: usize = 1_000;

#[derive(Default)]
struct State {
    /// The minute each (token, reason, address) was last recorded in.
    last: HashMap<(Uuid, Refusal, Option<IpAddr>), i64>,
    pending: Vec<Refused>,
    dropped: usize,
}

struct Refused {
    caller: Authenticated,
    reason: Refusal,
    address: Option<IpAddr>,
}

#[derive(Default)]
pub struct Refusals(Mutex<State>);

impl Refusals {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Notes a refused attempt; kept unless the same one was kept this minute.
    pub fn note(
        &self,
        caller: &Authenticated,
        reason: Refusal,
        address: Option<IpAddr>,
        at: DateTime<Utc>,
    ) {
        let minute = at.timestamp().div_euclid(60);
        let mut state = self.lock();
        let key = (caller.token.id, reason, address);
        if state.last.get(&key).is_some_and(|&seen| seen >= minute) {
            return;
        }
        if state.last.len() >= REMEMBERED {
            state.last.retain(|_, seen| *seen >= minute);
        }
        state.last.insert(key, minute);
        if state.pending.len() >= HELD {
            state.dropped += 1;
            return;
        }
        state.pending.push(Refused {
            caller: caller.clone(),
            reason,
            address,
        });
    }

    /// Writes the noted refusals as audit events; returns how many. On failure they are dropped
    /// (an audit of refusals is best effort; the next minute records them again).
    pub async fn write(&self, db: &impl ConnectionTrait) -> Result<usize, DbErr> {
        let (pending, dropped) = {
            let mut state = self.lock();
            (
                std::mem::take(&mut state.pending),
                std::mem::take(&mut state.dropped),
            )
        };
        if dropped > 0 {
            log::warn!("{dropped} refused attempts not recorded: too many at once");
        }
        let written = pending.len();
        for refused in pending {
            let address = refused.address.map(|ip| ip.to_string());
            let detail = match &address {
                Some(address) => format!("{} (from {address})", refused.reason.code()),
                None => refused.reason.code().to_owned(),
            };
            let target = Target::token(&refused.caller.token, &refused.caller.user.username);
            audit::record(
                db,
                &Actor::anonymous(address),
                Event::new(Action::TokenRefused, target).with_detail(&detail),
            )
            .await?;
        }
        Ok(written)
    }
}

/// Writes every `interval` until aborted.
pub async fn write_every<C: ConnectionTrait>(interval: Duration, refusals: Arc<Refusals>, db: C) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        if let Err(e) = refusals.write(&db).await {
            log::warn!("could not record refused token uses: {e}");
        }
    }
}
