//! Requests in flight on every worker, so that a graceful stop can let them all finish while
//! every worker is still running.
//!
//! Why it matters: a pooled PostgreSQL or MariaDB connection belongs to the runtime of the worker
//! that opened it, and actix-web stops each worker as soon as its own connections are done. A
//! worker that went idle first took its runtime, and the connections it had opened, with it, and
//! a login still running on another worker failed with "a Tokio context … is being shutdown". So
//! a stop first drains (no new connections, each answer closes its connection) until nothing is
//! in flight anywhere, then closes (a request still arriving on an open connection is answered
//! 503 without being served), and only then are the workers stopped.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst},
    },
    time::{Duration, Instant},
};

/// Counts kept per worker (each on its own cache line: every request writes its worker's), and
/// how far a stop has gone.
#[derive(Clone, Default)]
pub struct InFlight(Arc<Shared>);

#[derive(Default)]
struct Shared {
    workers: Mutex<Vec<Arc<WorkerCount>>>,
    draining: AtomicBool,
    closed: AtomicBool,
}

#[derive(Default)]
#[repr(align(64))]
struct WorkerCount(AtomicUsize);

/// One worker's view: it counts its own requests and reads the shared flags.
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
        workers.iter().map(|worker| worker.0.load(SeqCst)).sum()
    }

    /// From now on every answer closes its connection, so clients holding one open do not keep
    /// sending requests into a server that is stopping.
    pub fn start_draining(&self) {
        self.0.draining.store(true, SeqCst);
    }

    /// Waits, for at most `bound`, until no request is in flight, then closes: later requests
    /// are refused unserved. Those that came in before the close are waited for too, so when
    /// this answers `true` nothing is being served and nothing more will be. `false`: some
    /// requests were still in flight at the bound.
    pub async fn drain(&self, bound: Duration) -> bool {
        let until = Instant::now() + bound;
        if !self.idle_by(until).await {
            return false;
        }
        // A request counts itself, then reads `closed` (`Worker::begin`); this sets `closed`,
        // then counts. In the one order of these SeqCst operations, either the request sees
        // the close or the count below sees the request.
        self.0.closed.store(true, SeqCst);
        self.idle_by(until).await
    }

    async fn idle_by(&self, until: Instant) -> bool {
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
    /// A request has come in: counted, and `true` when it may be served (`false` once the
    /// server has closed for a stop). Every `begin` must be matched by one `end`, served or not.
    pub fn begin(&self) -> bool {
        self.count.0.fetch_add(1, SeqCst);
        !self.all.0.closed.load(SeqCst)
    }

    /// A request has been answered or abandoned.
    pub fn end(&self) {
        self.count.0.fetch_sub(1, SeqCst);
    }

    /// The server is stopping: answers should close their connections.
    pub fn draining(&self) -> bool {
        self.all.0.draining.load(SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_drain_waits_for_every_workers_requests_then_closes() {
        let in_flight = InFlight::default();
        let (one, two) = (in_flight.worker(), in_flight.worker());
        assert!(one.begin() && two.begin() && two.begin(), "open: served");
        assert_eq!(in_flight.count(), 3, "three requests on two workers");
        assert!(
            !in_flight.drain(Duration::from_millis(30)).await,
            "nothing drains while requests are in flight"
        );
        assert!(one.begin(), "a failed drain has not closed");
        one.end();
        one.end();
        two.end();
        assert_eq!(in_flight.count(), 1);
        assert!(!one.draining(), "not draining until told");
        in_flight.start_draining();
        assert!(one.draining() && two.draining(), "every worker sees it");

        let drained = tokio::spawn({
            let in_flight = in_flight.clone();
            async move { in_flight.drain(Duration::from_secs(5)).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !drained.is_finished(),
            "the last request is still in flight"
        );
        assert!(two.begin(), "still open while it waits: served");
        two.end();
        two.end();
        assert!(drained.await.unwrap(), "drained once both ended");
        assert!(!one.begin(), "closed: refused");
        one.end();
        assert_eq!(
            in_flight.count(),
            0,
            "a refused request is not left counted"
        );
    }
}
