//! `GET /metrics`: the instance's counts in the Prometheus text format (through
//! `prometheus-client`), for a token with the scope `metrics` or an admin's. Prometheus scrapes
//! it with `authorization: {credentials: <key>}`.

use std::sync::Arc;

use actix_web::{HttpResponse, get, web};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, NoLabelSet},
    metrics::MetricType,
    registry::Registry,
};
use sea_orm::{DatabaseBackend, DatabaseConnection};

use super::{api::ErrorResponse, extract::ApiUser};
use crate::{
    error::ApiError,
    metrics::{Histogram, Metrics},
    state::AppState,
};

/// The scope a token needs to read `/metrics` (admins' tokens need none).
pub const METRICS_SCOPE: &str = "metrics";

/// The instance's counts in the Prometheus text format. A token with the scope `metrics` (a
/// read-only one is enough) or an admin's; without a valid key 401, with another key 403.
#[utoipa::path(
    tag = "operations",
    security(("token" = [])),
    responses(
        (status = 200, description = "OpenMetrics text (Prometheus reads it)", content_type = "application/openmetrics-text", body = String),
        (status = 401, body = ErrorResponse),
        (status = 403, description = "the token has no scope metrics and is no admin's", body = ErrorResponse),
    )
)]
#[get("/metrics")]
pub async fn metrics(
    state: web::Data<AppState>,
    caller: ApiUser,
) -> Result<HttpResponse, ApiError> {
    let allowed = caller.0.user.is_admin
        || caller
            .0
            .access
            .scopes()
            .iter()
            .any(|scope| scope == METRICS_SCOPE);
    if !allowed {
        return Err(ApiError::Forbidden(format!(
            "reading /metrics needs a token with the scope {METRICS_SCOPE}, or an admin's"
        )));
    }
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape {
        metrics: state.metrics.clone(),
        throttle_refused: state.throttle.refused(),
        pool: Pool::of(&state.db),
    }));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(text))
}

/// Connections of the database pool, in use and idle.
#[derive(Debug, Clone, Copy)]
struct Pool {
    in_use: u64,
    idle: u64,
}

impl Pool {
    fn of(db: &DatabaseConnection) -> Pool {
        let (size, idle) = match db.get_database_backend() {
            DatabaseBackend::Postgres => {
                let pool = db.get_postgres_connection_pool();
                (pool.size(), pool.num_idle())
            }
            DatabaseBackend::Sqlite => {
                let pool = db.get_sqlite_connection_pool();
                (pool.size(), pool.num_idle())
            }
            DatabaseBackend::MySql => {
                let pool = db.get_mysql_connection_pool();
                (pool.size(), pool.num_idle())
            }
            _ => (0, 0),
        };
        let idle = u64::try_from(idle).unwrap_or(0);
        Pool {
            in_use: u64::from(size).saturating_sub(idle),
            idle,
        }
    }
}

/// One scrape's values.
#[derive(Debug)]
struct Scrape {
    metrics: Arc<Metrics>,
    throttle_refused: u64,
    pool: Pool,
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    encoder
        .encode_descriptor(name, help, None, MetricType::Counter)?
        .encode_counter::<NoLabelSet, _, u64>(&value, None)
}

fn histogram(
    metric: &mut prometheus_client::encoding::MetricEncoder,
    histogram: &Histogram,
) -> Result<(), std::fmt::Error> {
    metric.encode_histogram::<NoLabelSet>(
        histogram.sum_seconds,
        histogram.count,
        &histogram.cumulative(),
        None,
    )
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let routes = self.metrics.requests.snapshot();
        let mut requests = encoder.encode_descriptor(
            "multitoken_http_requests",
            "Requests answered, by route pattern, method and status.",
            None,
            MetricType::Counter,
        )?;
        for (route, stats) in &routes {
            for (method, status, count) in &stats.by_status {
                let status = status.to_string();
                let labels = [
                    ("route", route.as_str()),
                    ("method", method.as_str()),
                    ("status", status.as_str()),
                ];
                requests
                    .encode_family(&labels)?
                    .encode_counter::<NoLabelSet, _, u64>(count, None)?;
            }
        }
        let mut latency = encoder.encode_descriptor(
            "multitoken_http_request_duration_seconds",
            "Time from a request's arrival to its answer, by route pattern.",
            None,
            MetricType::Histogram,
        )?;
        for (route, stats) in &routes {
            let labels = [("route", route.as_str())];
            histogram(&mut latency.encode_family(&labels)?, &stats.latency)?;
        }
        let mut cache = encoder.encode_descriptor(
            "multitoken_verify_cache_hits",
            "Verifications answered from memory: a worker's near cache or the shared cache.",
            None,
            MetricType::Counter,
        )?;
        for (layer, count) in [
            ("near", self.metrics.near_hits.total()),
            ("shared", self.metrics.shared_hits.total()),
        ] {
            cache
                .encode_family(&[("layer", layer)])?
                .encode_counter::<NoLabelSet, _, u64>(&count, None)?;
        }
        counter(
            &mut encoder,
            "multitoken_verify_cache_misses",
            "Verifications that read the database.",
            self.metrics.misses.total(),
        )?;
        counter(
            &mut encoder,
            "multitoken_verify_direct_lookup_fallbacks",
            "Cache misses the direct lookup could not answer, answered through the shared pool (each logged as a warning).",
            Metrics::read(&self.metrics.direct_lookup_fallbacks),
        )?;
        counter(
            &mut encoder,
            "multitoken_rate_limited",
            "Requests refused (429) for their token's rate limit.",
            Metrics::read(&self.metrics.rate_limited),
        )?;
        counter(
            &mut encoder,
            "multitoken_login_throttled",
            "Logins and pairing-code attempts refused by the login throttle.",
            self.throttle_refused,
        )?;
        counter(
            &mut encoder,
            "multitoken_revocation_bus_reconnects",
            "Times the revocation listener (PostgreSQL LISTEN) subscribed again after losing its connection.",
            Metrics::read(&self.metrics.bus_reconnects),
        )?;
        let mut delivery = encoder.encode_descriptor(
            "multitoken_revocation_bus_delivery_seconds",
            "From a revocation's commit on any instance to its arrival on this one.",
            None,
            MetricType::Histogram,
        )?;
        histogram(&mut delivery, &self.metrics.bus_delivery.snapshot())?;
        let mut pool = encoder.encode_descriptor(
            "multitoken_db_pool_connections",
            "Connections of the database pool, in use and idle.",
            None,
            MetricType::Gauge,
        )?;
        for (state, count) in [("in_use", self.pool.in_use), ("idle", self.pool.idle)] {
            pool.encode_family(&[("state", state)])?
                .encode_gauge(&count)?;
        }
        Ok(())
    }
}
