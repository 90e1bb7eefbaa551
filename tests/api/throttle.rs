//! Login throttling over HTTP: failures per username and per client address, 429 with
//! `Retry-After`, the same for unknown usernames, reset by a success, `X-Forwarded-For` only
//! behind a trusted proxy, and counters shared by every instance (database or Redis).

use std::time::Duration;

use multitoken::config::Settings;
use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

use crate::helpers::{
    Backend, PASSWORD, TestApp, TestDatabase, login_at, spawn_app_with, start, status_and_json,
    test_settings,
};
use crate::instances::OtherInstance;
use crate::on_every_backend;

on_every_backend!(
    failed_logins_over_the_limit_get_429_with_retry_after,
    unknown_usernames_are_throttled_exactly_like_known_ones,
    a_success_resets_the_usernames_failures,
    one_address_is_throttled_across_usernames,
    forwarded_for_counts_only_behind_a_trusted_proxy,
    the_window_slides,
    instances_on_one_database_share_the_counters,
    with_redis_the_counters_live_in_redis_and_are_shared,
);

/// `POST /api/token/` from `forwarded_for` (as `X-Forwarded-For`, when given).
async fn login_from(
    app: &TestApp,
    username: &str,
    password: &str,
    forwarded_for: Option<&str>,
) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url("/api/token/"))
        .json(&json!({ "username": username, "password": password }));
    if let Some(address) = forwarded_for {
        request = request.header("X-Forwarded-For", address);
    }
    request.send().await.expect("request sent")
}

async fn login_status(app: &TestApp, username: &str, password: &str) -> StatusCode {
    login_from(app, username, password, None).await.status()
}

/// Fails `times` logins, each of which must still be an ordinary 400.
async fn fail_logins(app: &TestApp, username: &str, times: usize, forwarded_for: Option<&str>) {
    for attempt in 1..=times {
        let response = login_from(app, username, "wrong password", forwarded_for).await;
        let (status, body) = status_and_json(response).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "failure {attempt} of {times} for {username} is still within the limit: {body}"
        );
    }
}

/// Checks a 429 and returns its body; `Retry-After` is whole seconds within `at_most`.
async fn assert_throttled(response: reqwest::Response, at_most: Duration, context: &str) -> Value {
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let (status, body) = status_and_json(response).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{context}: {body}");
    let retry_after: u64 = retry_after
        .unwrap_or_else(|| panic!("{context}: a 429 carries Retry-After"))
        .parse()
        .expect("Retry-After in whole seconds");
    assert!(
        (1..=at_most.as_secs()).contains(&retry_after),
        "{context}: Retry-After {retry_after} s, expected 1..={} s",
        at_most.as_secs()
    );
    assert_eq!(body["retry_after"], json!(retry_after), "{context}: {body}");
    assert_eq!(body["is_authenticated"], json!(false), "{context}: {body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("Too many failed login attempts."),
        "{context}: {body}"
    );
    body
}

fn limits(per_username: u32, per_address: u32) -> impl FnOnce(&mut Settings) {
    move |settings: &mut Settings| {
        settings.login_max_failures = per_username;
        settings.login_max_failures_per_address = per_address;
    }
}

const MINUTE: Duration = Duration::from_secs(60);

async fn failed_logins_over_the_limit_get_429_with_retry_after(backend: Backend) {
    let app = spawn_app_with(backend, limits(5, 1000)).await;
    app.create_user("alice", false).await;
    app.create_user("bob", false).await;
    fail_logins(&app, "alice", 5, None).await;
    let over = login_from(&app, "alice", "wrong password", None).await;
    assert_throttled(over, MINUTE, "the sixth failure within a minute").await;
    let right = login_from(&app, "alice", PASSWORD, None).await;
    assert_throttled(
        right,
        MINUTE,
        "while locked out, even the right password is not checked",
    )
    .await;
    let device = app
        .client
        .post(app.url("/api/non-expiring-token/"))
        .json(&json!({ "username": "alice", "password": PASSWORD, "token_name": "pi" }))
        .send()
        .await
        .unwrap();
    assert_throttled(device, MINUTE, "the device-token login shares the limit").await;
    assert_eq!(
        login_status(&app, "bob", PASSWORD).await,
        StatusCode::OK,
        "another username from the same address is not locked out"
    );
}

async fn unknown_usernames_are_throttled_exactly_like_known_ones(backend: Backend) {
    let app = spawn_app_with(backend, limits(3, 1000)).await;
    app.create_user("alice", false).await;
    fail_logins(&app, "alice", 3, None).await;
    fail_logins(&app, "nobody-by-this-name", 3, None).await;
    let known = login_from(&app, "alice", "wrong password", None).await;
    let known = assert_throttled(known, MINUTE, "a known username").await;
    let unknown = login_from(&app, "nobody-by-this-name", "wrong password", None).await;
    let unknown = assert_throttled(unknown, MINUTE, "an unknown username").await;
    let keys = |body: &Value| {
        let mut keys: Vec<String> = body.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    assert_eq!(
        keys(&known),
        keys(&unknown),
        "the two refusals have the same shape"
    );
    assert_eq!(
        known["error"].as_str().unwrap().split(" Try again").next(),
        unknown["error"]
            .as_str()
            .unwrap()
            .split(" Try again")
            .next(),
        "and the same message, so a 429 tells nothing about whether the user exists"
    );
}

async fn a_success_resets_the_usernames_failures(backend: Backend) {
    let app = spawn_app_with(backend, limits(5, 1000)).await;
    app.create_user("alice", false).await;
    fail_logins(&app, "alice", 4, None).await;
    assert_eq!(login_status(&app, "alice", PASSWORD).await, StatusCode::OK);
    // Without the reset, the next failure would be the sixth within the minute.
    fail_logins(&app, "alice", 5, None).await;
    let over = login_from(&app, "alice", "wrong password", None).await;
    assert_throttled(over, MINUTE, "five failures after the success").await;
}

async fn one_address_is_throttled_across_usernames(backend: Backend) {
    let app = spawn_app_with(backend, limits(1000, 4)).await;
    app.create_user("alice", false).await;
    for name in ["one", "two", "three", "four"] {
        fail_logins(&app, name, 1, None).await;
    }
    let sprayed = login_from(&app, "five", "wrong password", None).await;
    assert_throttled(sprayed, MINUTE, "a fifth username from the same address").await;
    let right = login_from(&app, "alice", PASSWORD, None).await;
    assert_throttled(
        right,
        MINUTE,
        "the address is locked out for every username",
    )
    .await;
}

async fn forwarded_for_counts_only_behind_a_trusted_proxy(backend: Backend) {
    // Behind a trusted proxy (the tests' own 127.0.0.1), each forwarded client has its counter.
    let behind_proxy = spawn_app_with(backend.clone(), |settings| {
        limits(1000, 3)(settings);
        settings.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    for name in ["a", "b", "c"] {
        fail_logins(&behind_proxy, name, 1, Some("203.0.113.1")).await;
    }
    let same_client = login_from(&behind_proxy, "d", "wrong", Some("203.0.113.1")).await;
    assert_throttled(same_client, MINUTE, "the forwarded client that failed").await;
    // A client cannot pose as another by prepending its own entry: the proxy's is the one used.
    let spoofed = login_from(
        &behind_proxy,
        "d",
        "wrong",
        Some("198.51.100.9, 203.0.113.1"),
    )
    .await;
    assert_throttled(spoofed, MINUTE, "a spoofed leftmost entry changes nothing").await;
    let other_client = login_from(&behind_proxy, "d", "wrong", Some("203.0.113.2")).await;
    assert_eq!(
        other_client.status(),
        StatusCode::BAD_REQUEST,
        "another forwarded client has its own counter"
    );
    let addresses = failed_login_addresses(&behind_proxy).await;
    assert!(
        addresses.contains(&"203.0.113.1".to_owned())
            && addresses.contains(&"203.0.113.2".to_owned()),
        "the audit log names the forwarded clients: {addresses:?}"
    );

    // Without trusted proxies, X-Forwarded-For is anyone's to write and is ignored.
    let direct = spawn_app_with(backend, limits(1000, 3)).await;
    for (name, address) in [
        ("a", "203.0.113.1"),
        ("b", "203.0.113.2"),
        ("c", "203.0.113.3"),
    ] {
        fail_logins(&direct, name, 1, Some(address)).await;
    }
    let rotated = login_from(&direct, "d", "wrong", Some("203.0.113.4")).await;
    assert_throttled(rotated, MINUTE, "rotating X-Forwarded-For does not help").await;
    assert_eq!(
        failed_login_addresses(&direct).await,
        vec!["127.0.0.1".to_owned()],
        "the audit log names the TCP peer"
    );
}

/// The distinct client addresses of `login.failed` audit events, sorted.
async fn failed_login_addresses(app: &TestApp) -> Vec<String> {
    let db = app.db().await;
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT DISTINCT client_address FROM audit_events WHERE action = 'login.failed' ORDER BY client_address",
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|row| row.try_get::<String>("", "client_address").unwrap())
        .collect()
}

async fn the_window_slides(backend: Backend) {
    let app = spawn_app_with(backend, |settings| {
        limits(2, 1000)(settings);
        settings.login_failure_window = Duration::from_secs(2);
    })
    .await;
    app.create_user("alice", false).await;
    fail_logins(&app, "alice", 2, None).await;
    let over = login_from(&app, "alice", PASSWORD, None).await;
    let body = assert_throttled(over, Duration::from_secs(2), "locked for the window").await;
    let wait = body["retry_after"].as_u64().unwrap();
    tokio::time::sleep(Duration::from_secs(wait) + Duration::from_millis(200)).await;
    assert_eq!(
        login_status(&app, "alice", PASSWORD).await,
        StatusCode::OK,
        "after Retry-After seconds the failures have left the window"
    );
}

/// Two failures through each of two instances: the fifth attempt is refused by both.
async fn assert_shared(first: &TestApp, second_port: u16) {
    first.create_user("alice", false).await;
    fail_logins(first, "alice", 2, None).await;
    for _ in 0..2 {
        let response = login_at(second_port, "alice", "wrong password").await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    }
    let on_first = login_from(first, "alice", PASSWORD, None).await;
    assert_throttled(
        on_first,
        MINUTE,
        "the first instance counts the second's failures",
    )
    .await;
    let on_second = login_at(second_port, "alice", PASSWORD).await;
    assert_throttled(on_second, MINUTE, "and the second the first's").await;
}

async fn instances_on_one_database_share_the_counters(backend: Backend) {
    let first = spawn_app_with(backend, limits(4, 1000)).await;
    let second = OtherInstance::start_with(&first, limits(4, 1000)).await;
    assert_shared(&first, second.port).await;
    second.handle.stop(true).await;
}

async fn with_redis_the_counters_live_in_redis_and_are_shared(backend: Backend) {
    let Some(redis_url) = std::env::var("MULTITOKEN_TEST_REDIS_URL")
        .ok()
        .filter(|url| !url.is_empty())
    else {
        eprintln!("MULTITOKEN_TEST_REDIS_URL is not set: Redis run skipped");
        return;
    };
    let prefix = format!("mt_test_{}:", uuid::Uuid::new_v4().simple());
    let with_redis = |settings: &mut Settings| {
        limits(4, 1000)(settings);
        settings.redis_url = Some(redis_url.clone());
        settings.redis_prefix = prefix.clone();
    };
    let database = TestDatabase::create(&backend).await;
    let mut settings = test_settings(&database.url);
    with_redis(&mut settings);
    let first = start(database, &settings).await;
    let second = OtherInstance::start_with(&first, with_redis).await;
    // A success forgets the failures in Redis too: 3 + 3 failures around it stay under 4.
    first.create_user("bob", false).await;
    fail_logins(&first, "bob", 3, None).await;
    assert_eq!(login_status(&first, "bob", PASSWORD).await, StatusCode::OK);
    fail_logins(&first, "bob", 3, None).await;
    assert_shared(&first, second.port).await;

    let db = first.db().await;
    let rows = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM login_attempts",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "n")
        .unwrap();
    assert_eq!(
        rows, 0,
        "with Redis configured the database holds no attempts"
    );
    let mut redis = redis::Client::open(redis_url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("connect to the test Redis");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(!keys.is_empty(), "the attempts are in Redis under {prefix}");
    for key in &keys {
        assert!(
            !key.contains("alice"),
            "keys hold a digest of the username, not the name: {key}"
        );
        let ttl: i64 = redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut redis)
            .await
            .unwrap();
        assert!(ttl > 0, "{key} expires on its own (PTTL {ttl})");
    }
    let _: i64 = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut redis)
        .await
        .unwrap();
    second.handle.stop(true).await;
}

/// A Redis server of the test's own, on a free port, that the test can stop and start again.
struct OwnRedis {
    port: u16,
    process: Option<std::process::Child>,
}

impl OwnRedis {
    fn start() -> OwnRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut redis = OwnRedis {
            port,
            process: None,
        };
        redis.restart();
        redis
    }

    fn restart(&mut self) {
        let process = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server runs (CI installs it)");
        self.process = Some(process);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server did not listen on {}", self.port);
    }

    fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill().ok();
            process.wait().ok();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test]
async fn logins_answer_503_while_redis_is_down_and_never_go_unthrottled() {
    if std::env::var("MULTITOKEN_TEST_REDIS_URL").is_err() {
        eprintln!("MULTITOKEN_TEST_REDIS_URL is not set: Redis run skipped");
        return;
    }
    let mut redis = OwnRedis::start();
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let app = spawn_app_with(Backend::Sqlite, |settings| {
        settings.redis_url = Some(url.clone());
    })
    .await;
    app.create_user("alice", false).await;

    redis.stop();
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let (status, body) = status_and_json(login_from(&app, "alice", PASSWORD, None).await).await;
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "without its counters a login is refused, not let through unthrottled: {body}"
        );
        assert_eq!(
            body["error"], "login throttle (Redis) unavailable",
            "{body}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "the refusal comes fast, not after minutes of reconnecting: {:?}",
            started.elapsed()
        );
    }
    assert_eq!(
        app.me_status(&app.admin_key).await,
        StatusCode::OK,
        "tokens keep working while Redis is down"
    );

    redis.restart();
    let mut status = StatusCode::SERVICE_UNAVAILABLE;
    for _ in 0..50 {
        status = login_status(&app, "alice", PASSWORD).await;
        if status == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        status,
        StatusCode::OK,
        "logins work again once Redis is back"
    );
}
