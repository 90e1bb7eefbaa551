//! What `/metrics` reports, counted where it happens. Counts on the hot path (requests, cache
//! hits) are kept per thread — each worker writes only its own counters, so counting adds no
//! memory traffic between cores — and summed when Prometheus scrapes. Rare events (a refusal, a
//! reconnect) are plain shared atomics. Nothing here knows HTTP or the database; the exposition
//! is `routes::metrics`.

use std::{
    collections::HashMap,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use rustc_hash::FxHashMap;
use thread_local::ThreadLocal;

/// Upper bounds of the latency histograms, in seconds.
pub const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// A histogram of durations: counts per bucket (not cumulative), their count and sum.
#[derive(Debug, Default, Clone)]
pub struct Histogram {
    pub buckets: [u64; BUCKETS.len()],
    pub count: u64,
    pub sum_seconds: f64,
}

impl Histogram {
    fn observe(&mut self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        if let Some(bucket) = BUCKETS.iter().position(|&bound| seconds <= bound) {
            self.buckets[bucket] += 1;
        }
        self.count += 1;
        self.sum_seconds += seconds;
    }

    fn add(&mut self, other: &Histogram) {
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets) {
            *mine += theirs;
        }
        self.count += other.count;
        self.sum_seconds += other.sum_seconds;
    }

    /// `(upper bound, cumulative count)` pairs, as the exposition format wants them.
    pub fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut total = 0;
        let mut pairs: Vec<(f64, u64)> = BUCKETS
            .iter()
            .zip(self.buckets)
            .map(|(&bound, count)| {
                total += count;
                (bound, total)
            })
            .collect();
        pairs.push((f64::INFINITY, self.count));
        pairs
    }
}

/// One route's requests on one thread.
#[derive(Debug, Default, Clone)]
pub struct RouteStats {
    /// `(method, status)` → requests; a handful per route, so a list.
    pub by_status: Vec<(String, u16, u64)>,
    pub latency: Histogram,
}

/// Requests by route pattern (`/api/tokens/{id}`), method and status, with latency per route.
#[derive(Default)]
pub struct Requests {
    /// Hashed with FxHash: the keys are our own route patterns, and SipHash's defence against
    /// chosen keys cost every request more than the rest of its counting.
    per_thread: ThreadLocal<Mutex<FxHashMap<String, RouteStats>>>,
}

impl Requests {
    /// Counts one answered request. `route` is the matched pattern; it is copied only the
    /// first time a thread sees it.
    pub fn record(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        let mut routes = self
            .per_thread
            .get_or_default()
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let stats = match routes.get_mut(route) {
            Some(stats) => stats,
            None => routes.entry(route.to_owned()).or_default(),
        };
        match stats
            .by_status
            .iter_mut()
            .find(|(m, s, _)| *s == status && m == method)
        {
            Some((_, _, count)) => *count += 1,
            None => stats.by_status.push((method.to_owned(), status, 1)),
        }
        stats.latency.observe(elapsed);
    }

    /// Every thread's counts, summed per route.
    pub fn snapshot(&self) -> Vec<(String, RouteStats)> {
        let mut total: HashMap<String, RouteStats> = HashMap::new();
        for thread in self.per_thread.iter() {
            let routes = thread.lock().unwrap_or_else(|e| e.into_inner());
            for (route, stats) in routes.iter() {
                let summed = total.entry(route.clone()).or_default();
                for (method, status, count) in &stats.by_status {
                    match summed
                        .by_status
                        .iter_mut()
                        .find(|(m, s, _)| s == status && m == method)
                    {
                        Some((_, _, sum)) => *sum += count,
                        None => summed.by_status.push((method.clone(), *status, *count)),
                    }
                }
                summed.latency.add(&stats.latency);
            }
        }
        let mut routes: Vec<_> = total.into_iter().collect();
        routes.sort_by(|a, b| a.0.cmp(&b.0));
        routes
    }
}

/// A count one thread writes and any thread may read.
#[derive(Default)]
pub struct PerThreadCount(ThreadLocal<AtomicU64>);

impl PerThreadCount {
    pub fn add_one(&self) {
        self.0.get_or_default().fetch_add(1, Relaxed);
    }

    pub fn total(&self) -> u64 {
        self.0.iter().map(|count| count.load(Relaxed)).sum()
    }
}

/// A histogram of rare events, shared by every thread.
#[derive(Default)]
pub struct SharedHistogram(Mutex<Histogram>);

impl SharedHistogram {
    pub fn observe(&self, elapsed: Duration) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .observe(elapsed);
    }

    pub fn snapshot(&self) -> Histogram {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Everything one instance counts for `/metrics`.
#[derive(Default)]
pub struct Metrics {
    pub requests: Requests,
    /// Verifications answered from a worker's near cache, from the shared cache, and by a
    /// database lookup.
    pub near_hits: PerThreadCount,
    pub shared_hits: PerThreadCount,
    pub misses: PerThreadCount,
    /// Requests refused for their token's rate limit.
    pub rate_limited: AtomicU64,
    /// Cache misses the direct path (SQLite file, a worker's own connections) could not answer,
    /// answered through the shared pool instead: should stay 0.
    pub direct_lookup_fallbacks: AtomicU64,
    /// Times the revocation listener (PostgreSQL `LISTEN`) connected again after losing its
    /// connection.
    pub bus_reconnects: AtomicU64,
    /// From a revocation's announcement (its commit) to its arrival here.
    pub bus_delivery: SharedHistogram,
}

/// Named only: a collector must be `Debug`, and the counts are for the exposition.
impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    pub fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    pub fn read(counter: &AtomicU64) -> u64 {
        counter.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_summed_over_threads_by_route_method_and_status() {
        let requests = std::sync::Arc::new(Requests::default());
        let ms = Duration::from_millis;
        requests.record("/api/me", "GET", 200, ms(2));
        requests.record("/api/me", "GET", 200, ms(20));
        requests.record("/api/me", "GET", 401, ms(1));
        let other = requests.clone();
        std::thread::spawn(move || other.record("/api/me", "GET", 200, ms(2)))
            .join()
            .unwrap();
        let snapshot = requests.snapshot();
        assert_eq!(snapshot.len(), 1);
        let (route, stats) = &snapshot[0];
        assert_eq!(route, "/api/me");
        let mut by_status = stats.by_status.clone();
        by_status.sort();
        assert_eq!(
            by_status,
            [("GET".to_owned(), 200, 3), ("GET".to_owned(), 401, 1)]
        );
        assert_eq!(stats.latency.count, 4);
        let cumulative = stats.latency.cumulative();
        assert_eq!(cumulative.last(), Some(&(f64::INFINITY, 4)));
        let at = |bound: f64| cumulative.iter().find(|(b, _)| *b == bound).unwrap().1;
        assert_eq!(at(0.001), 1, "the 1 ms one");
        assert_eq!(at(0.0025), 3, "and the two 2 ms ones");
        assert_eq!(at(0.025), 4, "and the 20 ms one");
    }
}
