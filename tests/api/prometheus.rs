//! `/metrics` scraped by a real Prometheus (Debian's `prometheus`): with a read-only token that
//! has the scope `metrics` the target is up and the expected series arrive; a job without the
//! token is refused (down, 401). Skipped when Prometheus is missing, unless
//! `MULTITOKEN_REQUIRE_PROMETHEUS` is set (CI sets it).

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Backend, spawn_app, status_and_json};
use crate::upstream::{free_port, installed, port_of, token_with};

/// Prometheus, stopped when dropped.
struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn start(binary: &str, target_port: u16, key: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        // Exactly the scrape configuration the README gives, with a second job that has no
        // credentials.
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  \
             - job_name: multitoken\n    authorization:\n      credentials: {key}\n    \
             static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n  \
             - job_name: anonymous\n    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n"
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let port = free_port();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus starts");
        Prometheus {
            child,
            port,
            _dir: dir,
        }
    }

    async fn api(&self, path: &str) -> Option<Value> {
        let response = reqwest::get(format!("http://127.0.0.1:{}{path}", self.port))
            .await
            .ok()?;
        response.json().await.ok()
    }

    /// The active targets once both have been scraped at least once.
    async fn scraped_targets(&self) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(body) = self.api("/api/v1/targets").await {
                let targets = body["data"]["activeTargets"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                if targets.len() == 2 && targets.iter().all(|t| t["health"] != "unknown") {
                    return targets;
                }
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus scraped nothing within a minute"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn query(&self, expression: &str) -> Vec<Value> {
        let path = format!(
            "/api/v1/query?{}",
            serde_urlencoded::to_string([("query", expression)]).unwrap()
        );
        let body = self.api(&path).await.expect("the query API answers");
        assert_eq!(body["status"], "success", "{body}");
        body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

#[tokio::test]
async fn a_real_prometheus_scrapes_metrics_with_a_scoped_token_and_is_refused_without() {
    let Some(binary) = installed(&["prometheus"], "MULTITOKEN_REQUIRE_PROMETHEUS") else {
        return;
    };
    let app = spawn_app(Backend::Sqlite).await;
    let owner = app.create_user("ops", false).await;
    let scraper = token_with(
        &app,
        &owner,
        "prometheus",
        json!({"read_only": true, "scopes": ["metrics"]}),
    )
    .await;
    // Our own check of the rules first: who may read it.
    let (status, _) = status_and_json(app.get("/metrics", None).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "no key");
    let (status, body) = status_and_json(app.get("/metrics", Some(&owner)).await).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a key without the scope: {body}"
    );
    let admin = app.get("/metrics", Some(&app.admin_key)).await;
    assert_eq!(admin.status(), StatusCode::OK, "an admin's key");
    let text = admin.text().await.unwrap();
    for series in [
        "multitoken_http_requests_total{",
        "multitoken_http_request_duration_seconds_bucket{",
        "multitoken_verify_cache_hits_total{layer=\"near\"}",
        "multitoken_verify_cache_misses_total",
        "multitoken_rate_limited_total",
        "multitoken_login_throttled_total",
        "multitoken_revocation_bus_reconnects_total",
        "multitoken_revocation_bus_delivery_seconds_count",
        "multitoken_db_pool_connections{state=\"in_use\"}",
    ] {
        assert!(text.contains(series), "{series} in:\n{text}");
    }
    for counted in [
        r#"multitoken_http_requests_total{route="/metrics",method="GET",status="401"} 1"#,
        r#"multitoken_http_requests_total{route="/metrics",method="GET",status="403"} 1"#,
        r#"multitoken_http_requests_total{route="/api/tokens",method="POST",status="201"} 1"#,
    ] {
        assert!(
            text.contains(counted),
            "requests counted by route pattern, method and status: {counted} in\n{text}"
        );
    }

    let prometheus = Prometheus::start(binary, port_of(&app), &scraper.key);
    let targets = prometheus.scraped_targets().await;
    let job = |name: &str| {
        targets
            .iter()
            .find(|t| t["labels"]["job"] == name)
            .unwrap_or_else(|| panic!("job {name} in {targets:?}"))
            .clone()
    };
    let scoped = job("multitoken");
    assert_eq!(
        scoped["health"], "up",
        "scraped with the scoped token: {scoped}"
    );
    let anonymous = job("anonymous");
    assert_eq!(anonymous["health"], "down", "{anonymous}");
    assert!(
        anonymous["lastError"]
            .as_str()
            .unwrap_or("")
            .contains("401"),
        "refused without the token: {anonymous}"
    );
    let up = prometheus.query("up{job=\"multitoken\"}").await;
    assert_eq!(up.len(), 1, "{up:?}");
    assert_eq!(up[0]["value"][1], "1", "{up:?}");
    let requests = prometheus
        .query("multitoken_http_requests_total{route=\"/metrics\",status=\"200\"}")
        .await;
    assert!(
        !requests.is_empty(),
        "Prometheus stored our request counts, its own scrapes among them"
    );
    let hits = prometheus.query("multitoken_verify_cache_hits_total").await;
    assert_eq!(hits.len(), 2, "near and shared: {hits:?}");
}
