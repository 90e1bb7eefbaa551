//! Requests in flight on every worker, so that a graceful stop can let them all finish while
//! every worker is still running.
//!
//! Why it matters: a pooled PostgreSQL or MariaDB connection belongs to the runtime of the worker
//! that opened it, and actix-web stops each worker as soon as its own connections are done. A
//! worker that went idle first took its runtime, and the connections it had opened, with it, and
//! a login still running on another worker failed with "a Tokio context … is being shutdown". So
//! a stop first drains (no new connections, each answer closes its connection) until nothing is
//! in flight anywhere, and only then stops the workers.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

/// Counts kept per worker (each on its own cache line: every request writes its worker's), and
/// whether the server is draining.
#[derive(Clone, Default)]
pub struct InFlight(Arc<Shared>);

#[derive(Default)]
struct Shared {
    workers: Mutex<Vec<Arc<WorkerCount>>>,
    draining: AtomicBool,
}

#[derive(Default)]
#[repr(align(64))]
struct WorkerCount(AtomicUsize);

/// One worker's view: it counts its own requests and reads the shared draining flag.
pub struct Worker {
    count: Arc<WorkerCount>,
    all: InFlight,
}

impl InFlight {
    /// A new worker's counter, counted from now on.
    pub fn worker(&self) -> Worker {
        let count = Arc::new(WorkerCount::default());
        self.0
            .workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(count.clone());
        Worker {
            count,
            all: self.clone(),
        }
    }

    /// Requests in flight on every worker now.
    pub fn count(&self) -> usize {
        let workers = self.0.workers.lock().unwrap_or_else(|e| e.into_inner());
        workers.iter().map(|worker| worker.0.load(Relaxed)).sum()
    }

    /// From now on every answer closes its connection, so clients holding one open do not keep
    /// sending requests into a server that is stopping.
    pub fn start_draining(&self) {
        self.0.draining.store(true, Relaxed);
    }

    /// Waits until no request is in flight, for at most `bound`; `false` when some still are.
    pub async fn drained(&self, bound: Duration) -> bool {
        let until = Instant::now() + bound;
        loop {
            if self.count() == 0 {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Worker {
    /// A request has come in. Every `begin` must be matched by one `end`, answered or not.
    pub fn begin(&self) {
        self.count.0.fetch_add(1, Relaxed);
    }

    /// A request has been answered or abandoned.
    pub fn end(&self) {
        self.count.0.fetch_sub(1, Relaxed);
    }

    pub fn draining(&self) -> bool {
        self.all.0.draining.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requests_are_counted_on_every_worker_until_dropped() {
        let in_flight = InFlight::default();
        let (one, two) = (in_flight.worker(), in_flight.worker());
        one.begin();
        two.begin();
        two.begin();
        assert_eq!(in_flight.count(), 3, "three requests on two workers");
        assert!(
            !in_flight.drained(Duration::from_millis(30)).await,
            "nothing drains while requests are in flight"
        );
        one.end();
        two.end();
        assert_eq!(in_flight.count(), 1);
        assert!(!one.draining(), "not draining until told");
        in_flight.start_draining();
        assert!(one.draining() && two.draining(), "every worker sees it");
        two.end();
        assert!(in_flight.drained(Duration::from_millis(30)).await);
    }
}
