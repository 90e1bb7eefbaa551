//! The shipped `docs/Caddyfile`, run by a real Caddy (Debian's) in front of a small upstream:
//! allowed requests reach it with the caller in headers (a client's forged `X-Auth-*` removed),
//! refused ones get 401 or 403 and never reach it. Skipped when Caddy is missing, unless
//! `MULTITOKEN_REQUIRE_CADDY` is set (CI sets it).

use std::{
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::upstream::{
    Prepared, Proxy, app_behind_proxy, installed, port_of, start_backend, token_with,
};

/// Caddy on `docs/Caddyfile`, with its own home in the temporary folder.
fn start_caddy(binary: &str, multitoken_port: u16, backend_port: u16) -> Proxy {
    let prepared = Prepared::shipped("docs/Caddyfile", multitoken_port, backend_port);
    let dir = prepared.dir.path();
    let config_path = dir.join("Caddyfile");
    std::fs::write(&config_path, &prepared.config).unwrap();
    let log = dir.join("caddy.log");
    let mut command = Command::new(binary);
    command
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&config_path)
        // Everything Caddy keeps stays in the temporary folder.
        .env("HOME", dir)
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .stderr(std::fs::File::create(&log).unwrap());
    Proxy::start(prepared, command, log)
}

#[tokio::test]
async fn caddy_with_the_shipped_config_lets_valid_tokens_through_and_stops_the_rest() {
    let Some(binary) = installed(&["caddy", "/usr/bin/caddy"], "MULTITOKEN_REQUIRE_CADDY") else {
        return;
    };
    let app = app_behind_proxy().await;
    let owner = app.create_user("alice", false).await;
    let device = token_with(&app, &owner, "Küche 1", json!({})).await;
    let revoked = token_with(&app, &owner, "old", json!({})).await;
    app.delete(&format!("/api/tokens/{}/", revoked.id), Some(&owner))
        .await;
    let reader = token_with(&app, &owner, "reader", json!({"read_only": true})).await;
    let billing = token_with(&app, &owner, "billing", json!({"scopes": ["billing"]})).await;
    let remote = token_with(
        &app,
        &owner,
        "remote",
        json!({"allowed_ips": ["203.0.113.0/24"]}),
    )
    .await;
    let hits = Arc::new(AtomicUsize::new(0));
    let backend_port = start_backend(hits.clone()).await;
    let caddy = start_caddy(binary, port_of(&app), backend_port);
    let client = reqwest::Client::new();
    let send = |method: Method, path: &str, key: Option<&str>| {
        let mut request = client.request(method.clone(), caddy.url(path));
        if let Some(key) = key {
            request = request.header("Authorization", format!("Token {key}"));
        }
        if method != Method::GET {
            request = request.body("payload");
        }
        request
    };

    // Allowed, with forged identity headers: the backend sees multitoken's answer only.
    let response = send(Method::GET, "/hello", Some(&device.key))
        .header("X-Auth-User", "admin")
        .header("X-Auth-Admin", "true")
        .header("X-Auth-Scopes", "billing")
        .header("X-Auth-Expires-At", "2999-01-01T00:00:00Z")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{}", caddy.log());
    let echo: Value = response.json().await.unwrap();
    assert_eq!(echo["path"], "/hello");
    assert_eq!(echo["user"], "alice", "forged headers are replaced: {echo}");
    assert_eq!(echo["admin"], "false", "{echo}");
    assert_eq!(echo["token_id"], device.id.as_str(), "{echo}");
    assert_eq!(echo["token_name"], "K%C3%BCche%201", "{echo}");
    assert_eq!(
        echo["expires_at"],
        Value::Null,
        "a forged header multitoken did not answer is dropped: {echo}"
    );
    assert_eq!(echo["scopes"], "", "{echo}");
    assert_eq!(
        echo["authorization"],
        Value::Null,
        "the key stops at Caddy: {echo}"
    );

    // A write with a body reaches the backend whole.
    let response = send(Method::POST, "/submit", Some(&device.key))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{}", caddy.log());
    let echo: Value = response.json().await.unwrap();
    assert_eq!(
        (echo["method"].as_str(), echo["body"].as_str()),
        (Some("POST"), Some("payload"))
    );
    assert_eq!(hits.load(Ordering::SeqCst), 2);

    // Refused: multitoken's status, and the backend never sees the request.
    let refusals = [
        (
            "no key",
            Method::GET,
            "/hello",
            None,
            StatusCode::UNAUTHORIZED,
        ),
        (
            "a revoked key",
            Method::GET,
            "/hello",
            Some(&revoked.key),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "a malformed key",
            Method::GET,
            "/hello",
            Some(&"mt_bogus".to_owned()),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "a read-only POST",
            Method::POST,
            "/hello",
            Some(&reader.key),
            StatusCode::FORBIDDEN,
        ),
        (
            "a read-only DELETE",
            Method::DELETE,
            "/hello",
            Some(&reader.key),
            StatusCode::FORBIDDEN,
        ),
        (
            "/billing/ without the scope",
            Method::GET,
            "/billing/x",
            Some(&device.key),
            StatusCode::FORBIDDEN,
        ),
        (
            "from outside its networks",
            Method::GET,
            "/hello",
            Some(&remote.key),
            StatusCode::UNAUTHORIZED,
        ),
    ];
    for (what, method, path, key, expected) in refusals {
        let response = send(method, path, key.map(String::as_str))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), expected, "{what}: {}", caddy.log());
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        2,
        "refused requests must not reach the backend"
    );

    // The read-only token reads; the billing token gets into /billing/ with its headers.
    let response = send(Method::GET, "/hello", Some(&reader.key))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.unwrap()["read_only"], "true");
    let response = send(Method::GET, "/billing/invoices", Some(&billing.key))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{}", caddy.log());
    let echo: Value = response.json().await.unwrap();
    assert_eq!(echo["path"], "/billing/invoices");
    assert_eq!(echo["scopes"], "billing", "{echo}");
    assert_eq!(echo["user"], "alice", "{echo}");
    assert_eq!(hits.load(Ordering::SeqCst), 4);
}
