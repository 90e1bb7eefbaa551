//! Pairing a device (RFC 8628 shape): codes, polling (pending, slow_down, denied, expired,
//! collected once), approval over the API with a name and a policy, throttled wrong codes.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::audit::audit_log;
use crate::helpers::{Backend, TestApp, spawn_app_with, status_and_json};
use crate::on_every_backend;

on_every_backend!(
    a_device_pairs_into_a_named_scoped_token_and_collects_it_once,
    polling_too_soon_slows_the_device_down_and_the_interval_grows,
    denied_expired_unknown_and_malformed_polls_answer_their_errors,
    wrong_codes_count_like_failed_logins_per_approver,
    approving_needs_a_full_access_token_and_a_free_name,
    one_address_may_keep_only_twenty_pairings_waiting,
);

const GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// Polls may come every second, so the tests wait little.
async fn pairing_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |settings| {
        settings.pairing_interval = Duration::from_secs(1);
    })
    .await
}

/// `POST /api/pair/` as a device does: 200 and the RFC 8628 answer.
pub async fn start(app: &TestApp, body: Value) -> Value {
    let (status, started) = status_and_json(app.post("/api/pair/", None, body).await).await;
    assert_eq!(status, StatusCode::OK, "{started}");
    started
}

/// A poll as device-flow libraries send it: a form with the grant type.
pub async fn poll(app: &TestApp, device_code: &str) -> (StatusCode, Value) {
    let response = app
        .client
        .post(app.url("/api/pair/token/"))
        .form(&[("grant_type", GRANT), ("device_code", device_code)])
        .send()
        .await
        .unwrap();
    assert_eq!(
        response
            .headers()
            .get("cache-control")
            .map(|v| v.to_str().unwrap()),
        Some("no-store"),
        "token endpoint answers are never cached"
    );
    status_and_json(response).await
}

async fn expect_poll_error(app: &TestApp, device_code: &str, error: &str) -> Value {
    let (status, body) = poll(app, device_code).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], error, "{body}");
    body
}

fn device_code(started: &Value) -> &str {
    started["device_code"].as_str().expect("a device_code")
}

fn user_code(started: &Value) -> &str {
    started["user_code"].as_str().expect("a user_code")
}

async fn approve(app: &TestApp, key: &str, body: Value) -> (StatusCode, Value) {
    status_and_json(app.post("/api/pair/approve/", Some(key), body).await).await
}

async fn a_device_pairs_into_a_named_scoped_token_and_collects_it_once(backend: Backend) {
    let app = spawn_app_with(backend, |settings| {
        settings.pairing_interval = Duration::from_secs(1);
        settings.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let alice = app.create_user("alice", false).await;
    // The device asks through a proxy that names it.
    let response = app
        .client
        .post(app.url("/api/pair/"))
        .header("x-forwarded-for", "198.51.100.7")
        .form(&[("name", "thermostat"), ("client_id", "thermo-fw")])
        .send()
        .await
        .unwrap();
    let (status, started) = status_and_json(response).await;
    assert_eq!(status, StatusCode::OK, "{started}");
    let code = user_code(&started).to_owned();
    assert_eq!(code.len(), 9, "XXXX-XXXX: {started}");
    assert_eq!(&code[4..5], "-", "{started}");
    assert!(
        code.chars()
            .filter(|c| *c != '-')
            .all(|c| "BCDFGHJKLMNPQRSTVWXZ".contains(c)),
        "RFC 8628 §6.1 alphabet: {code}"
    );
    assert_eq!(started["verification_uri"], app.url("/pair"), "{started}");
    assert_eq!(
        started["verification_uri_complete"],
        format!("{}?code={code}", app.url("/pair")),
        "{started}"
    );
    assert_eq!(started["expires_in"], 600, "MULTITOKEN_PAIRING_TTL default");
    assert_eq!(started["interval"], 1, "the configured interval");
    assert_eq!(
        device_code(&started).len(),
        64,
        "256 random bits in hex: {started}"
    );

    expect_poll_error(&app, device_code(&started), "authorization_pending").await;

    // Typed in lower case without the dash; the device's suggested name is kept.
    let typed = code.replace('-', "").to_lowercase();
    let (status, approved) = approve(
        &app,
        &alice,
        json!({"user_code": typed, "read_only": true, "scopes": ["telemetry"], "expires_in_days": 30}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{approved}");
    assert_eq!(approved["token_name"], "thermostat", "{approved}");
    let token_id = approved["token_id"].as_str().unwrap().to_owned();

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, collected) = poll(&app, device_code(&started)).await;
    assert_eq!(status, StatusCode::OK, "approved: the token, {collected}");
    assert_eq!(collected["token_type"], "Bearer");
    assert_eq!(collected["token_id"], token_id.as_str());
    assert_eq!(collected["token_name"], "thermostat");
    assert_eq!(collected["user"], "alice");
    let expires_in = collected["expires_in"]
        .as_i64()
        .expect("30 days: expires_in");
    assert!(
        (30 * 86_400 - 60..=30 * 86_400).contains(&expires_in),
        "{collected}"
    );
    let key = collected["access_token"].as_str().unwrap().to_owned();

    let (status, me) = status_and_json(app.get("/api/me/", Some(&key)).await).await;
    assert_eq!(status, StatusCode::OK, "the collected key works: {me}");
    assert_eq!(me["user"], "alice", "{me}");
    assert_eq!(me["token"]["read_only"], true, "{me}");
    assert_eq!(
        app.post("/api/tokens/", Some(&key), json!({"name": "x"}))
            .await
            .status(),
        StatusCode::FORBIDDEN,
        "the approved policy holds: read-only"
    );

    let (_, listed) = status_and_json(app.get("/api/tokens/", Some(&alice)).await).await;
    let token = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == token_id.as_str())
        .unwrap_or_else(|| panic!("the paired token in alice's list: {listed}"));
    assert_eq!(token["name"], "thermostat");
    assert_eq!(token["kind"], "device");
    assert_eq!(token["scopes"], json!(["telemetry"]));
    assert!(
        key.starts_with(token["prefix"].as_str().unwrap()),
        "the listed prefix is the collected key's: {token}"
    );

    // Exactly once: the code is spent for the device and for approvers.
    expect_poll_error(&app, device_code(&started), "invalid_grant").await;
    let (status, again) = approve(&app, &alice, json!({"user_code": code})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a used code: {again}");

    let log = audit_log(&app).await;
    let paired = log
        .iter()
        .find(|e| e["action"] == "device.paired")
        .unwrap_or_else(|| panic!("device.paired audited: {log:?}"));
    assert_eq!(paired["actor"], "alice", "{paired}");
    assert_eq!(paired["target_name"], "thermostat", "{paired}");
    assert_eq!(paired["target_id"], token_id.as_str(), "{paired}");
    assert!(
        paired["detail"]
            .as_str()
            .is_some_and(|d| d.contains("198.51.100.7")),
        "the address the device asked from, not the approver's: {paired}"
    );
}

async fn polling_too_soon_slows_the_device_down_and_the_interval_grows(backend: Backend) {
    let app = pairing_app(backend).await;
    let started = start(&app, json!({})).await;
    let code = device_code(&started);
    expect_poll_error(&app, code, "authorization_pending").await;
    let slow = expect_poll_error(&app, code, "slow_down").await;
    assert_eq!(slow["interval"], 6, "1 s grown by 5 s: {slow}");
    // Past the old interval but not the grown one: still too soon, and it grows again.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let slower = expect_poll_error(&app, code, "slow_down").await;
    assert_eq!(slower["interval"], 11, "{slower}");
}

async fn denied_expired_unknown_and_malformed_polls_answer_their_errors(backend: Backend) {
    let app = spawn_app_with(backend, |settings| {
        settings.pairing_interval = Duration::from_secs(1);
        settings.pairing_ttl = Duration::from_secs(2);
    })
    .await;
    let alice = app.create_user("alice", false).await;

    let denied = start(&app, json!({"name": "unknown gadget"})).await;
    let (status, body) = status_and_json(
        app.post(
            "/api/pair/deny/",
            Some(&alice),
            json!({"user_code": user_code(&denied)}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    expect_poll_error(&app, device_code(&denied), "access_denied").await;
    let (status, body) = approve(&app, &alice, json!({"user_code": user_code(&denied)})).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a denied code is used: {body}"
    );

    let expiring = start(&app, json!({})).await;
    assert_eq!(expiring["expires_in"], 2);
    tokio::time::sleep(Duration::from_millis(2200)).await;
    expect_poll_error(&app, device_code(&expiring), "expired_token").await;
    let (status, body) = approve(&app, &alice, json!({"user_code": user_code(&expiring)})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "an expired code: {body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("expired")),
        "{body}"
    );

    expect_poll_error(&app, &"0".repeat(64), "invalid_grant").await;
    let missing = app
        .client
        .post(app.url("/api/pair/token/"))
        .form(&[("grant_type", GRANT)])
        .send()
        .await
        .unwrap();
    let (status, body) = status_and_json(missing).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_request", "{body}");
    let (status, body) = status_and_json(
        app.post(
            "/api/pair/token/",
            None,
            json!({"grant_type": "password", "device_code": device_code(&expiring)}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "unsupported_grant_type", "{body}");

    let (status, body) = status_and_json(
        app.post("/api/pair/", None, json!({"name": "x".repeat(65)}))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a name over 64: {body}");
    assert_eq!(body["error"], "invalid_request", "OAuth-shaped: {body}");
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| d.contains("64")),
        "{body}"
    );
}

/// `POST /api/pair/` needs no key: one address may keep only so many pairings waiting.
async fn one_address_may_keep_only_twenty_pairings_waiting(backend: Backend) {
    let app = spawn_app_with(backend, |settings| {
        settings.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let start_from = |address: &'static str| {
        app.client
            .post(app.url("/api/pair/"))
            .header("x-forwarded-for", address)
            .form(&[("client_id", "flood")])
            .send()
    };
    for n in 0..20 {
        let response = start_from("198.51.100.9").await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "pairing {n} of 20");
    }
    let response = start_from("198.51.100.9").await.unwrap();
    let retry_after: u64 = response
        .headers()
        .get("retry-after")
        .expect("Retry-After")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=600).contains(&retry_after),
        "until the oldest expires: {retry_after}"
    );
    let (status, body) = status_and_json(response).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "the 21st: {body}");
    assert_eq!(body["error"], "slow_down", "{body}");
    let other = start_from("198.51.100.10").await.unwrap();
    assert_eq!(
        other.status(),
        StatusCode::OK,
        "another address is not held back"
    );
}

async fn wrong_codes_count_like_failed_logins_per_approver(backend: Backend) {
    let app = spawn_app_with(backend, |settings| {
        settings.pairing_interval = Duration::from_secs(1);
        settings.login_max_failures = 3;
    })
    .await;
    let alice = app.create_user("alice", false).await;
    let bob = app.create_user("bob", false).await;
    let started = start(&app, json!({"name": "camera"})).await;
    for wrong in ["BCDF-GHJK", "bcdfghjl", "not a code"] {
        let (status, body) = approve(&app, &alice, json!({"user_code": wrong})).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{wrong}: {body}");
    }
    let response = app
        .post(
            "/api/pair/approve/",
            Some(&alice),
            json!({"user_code": user_code(&started)}),
        )
        .await;
    assert!(
        response.headers().contains_key("retry-after"),
        "a 429 says when to retry"
    );
    let (status, body) = status_and_json(response).await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "three wrong codes lock alice out of approving, even with the right one: {body}"
    );
    // Counted apart from logins, and per approver.
    app.login("alice", crate::helpers::PASSWORD).await;
    let (status, body) = approve(&app, &bob, json!({"user_code": user_code(&started)})).await;
    assert_eq!(status, StatusCode::CREATED, "bob is not locked out: {body}");
}

async fn approving_needs_a_full_access_token_and_a_free_name(backend: Backend) {
    let app = pairing_app(backend).await;
    let alice = app.create_user("alice", false).await;
    let started = start(&app, json!({"name": "doorbell"})).await;
    let code = user_code(&started).to_owned();

    let response = app
        .post("/api/pair/approve/", None, json!({"user_code": code}))
        .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "no key");
    for (name, policy) in [
        ("reader", json!({"read_only": true})),
        ("scoped", json!({"scopes": ["billing"]})),
    ] {
        let mut body = policy;
        body["name"] = json!(name);
        let (status, created) =
            status_and_json(app.post("/api/tokens/", Some(&alice), body).await).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let key = created["id_token"].as_str().unwrap();
        let (status, refused) = approve(&app, key, json!({"user_code": code})).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{name}: {refused}");
    }

    app.create_token(&alice, "doorbell").await;
    let (status, body) = approve(&app, &alice, json!({"user_code": code})).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "the suggested name is taken: {body}"
    );
    let (status, body) = approve(
        &app,
        &alice,
        json!({"user_code": code, "name": "front doorbell"}),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "the code survived the conflict: {body}"
    );
    assert_eq!(body["token_name"], "front doorbell");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, collected) = poll(&app, device_code(&started)).await;
    assert_eq!(status, StatusCode::OK, "{collected}");
    assert_eq!(collected["token_name"], "front doorbell");
    assert!(
        collected.get("expires_in").is_none(),
        "a token that never expires: {collected}"
    );
}
