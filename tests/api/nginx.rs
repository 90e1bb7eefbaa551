//! The shipped `docs/nginx.conf`, run by a real nginx in front of a small upstream: allowed
//! requests reach it with the caller in headers, refused ones get 401 and never reach it.
//! Skipped when nginx is missing, unless `MULTITOKEN_REQUIRE_NGINX` is set (CI sets it).

use std::{
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::upstream::{
    Prepared, Proxy, app_behind_proxy, installed, port_of, start_backend, token_with,
};

/// nginx on `docs/nginx.conf`, everything it writes in its temporary folder. It runs without
/// a master process, so killing it leaves no worker behind.
fn start_nginx(binary: &str, multitoken_port: u16, backend_port: u16) -> Proxy {
    let mut prepared = Prepared::shipped("docs/nginx.conf", multitoken_port, backend_port);
    let temp = prepared.dir.path().display().to_string();
    prepared.config = prepared.config.replacen(
        "http {",
        &format!(
            "http {{\n    access_log {temp}/access.log;\n    client_body_temp_path {temp}/body;\n    \
             proxy_temp_path {temp}/proxy;\n    fastcgi_temp_path {temp}/fastcgi;\n    \
             uwsgi_temp_path {temp}/uwsgi;\n    scgi_temp_path {temp}/scgi;\n"
        ),
        1,
    );
    let config_path = prepared.dir.path().join("nginx.conf");
    std::fs::write(&config_path, &prepared.config).unwrap();
    let log = prepared.dir.path().join("error.log");
    let mut command = Command::new(binary);
    command
        .arg("-p")
        .arg(prepared.dir.path())
        .arg("-e")
        .arg(&log)
        .arg("-c")
        .arg(&config_path)
        .arg("-g")
        .arg(format!(
            "daemon off; master_process off; pid {temp}/nginx.pid;"
        ))
        .stderr(Stdio::null());
    Proxy::start(prepared, command, log)
}

#[tokio::test]
async fn nginx_with_the_shipped_config_lets_valid_tokens_through_and_stops_the_rest() {
    let Some(binary) = installed(&["nginx", "/usr/sbin/nginx"], "MULTITOKEN_REQUIRE_NGINX") else {
        return;
    };
    let app = app_behind_proxy().await;
    let session = app.create_user("alice", false).await;
    let device = app.create_token(&session, "Küche 1").await;
    let revoked = app.create_token(&session, "old").await;
    app.delete(&format!("/api/tokens/{}/", revoked.id), Some(&session))
        .await;
    let hits = Arc::new(AtomicUsize::new(0));
    let backend_port = start_backend(hits.clone()).await;
    let nginx = start_nginx(binary, port_of(&app), backend_port);
    let client = reqwest::Client::new();

    // Allowed: reaches the backend, with the caller named by nginx, not by the client.
    let response = client
        .get(nginx.url("/hello"))
        .header("Authorization", format!("Token {}", device.key))
        .header("X-Auth-User", "admin")
        .header("X-Auth-Admin", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{}", nginx.log());
    let echo: Value = response.json().await.unwrap();
    assert_eq!(echo["path"], "/hello");
    assert_eq!(echo["user"], "alice", "forged headers are replaced: {echo}");
    assert_eq!(echo["admin"], "false", "{echo}");
    assert_eq!(echo["token_id"], device.id.as_str(), "{echo}");
    assert_eq!(echo["token_name"], "K%C3%BCche%201", "{echo}");
    assert_eq!(
        echo["authorization"],
        Value::Null,
        "the key stops at nginx: {echo}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // A POST with a body: the check is still a GET, and the body still reaches the backend.
    let response = client
        .post(nginx.url("/submit"))
        .bearer_auth(&session)
        .body("payload")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{}", nginx.log());
    let echo: Value = response.json().await.unwrap();
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["body"], "payload");
    assert_eq!(hits.load(Ordering::SeqCst), 2);

    // Refused: 401 from nginx, and the backend never sees the request.
    for (what, key) in [
        ("no key", None),
        ("a revoked key", Some(revoked.key.as_str())),
        ("a malformed key", Some("mt_bogus")),
    ] {
        let mut request = client.get(nginx.url("/hello"));
        if let Some(key) = key {
            request = request.header("Authorization", format!("Token {key}"));
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{what}");
        assert!(
            response.headers().get("WWW-Authenticate").is_some(),
            "{what}: nginx passes on the scheme"
        );
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        2,
        "refused requests must not reach the backend"
    );
}

#[tokio::test]
async fn nginx_with_the_shipped_config_enforces_read_only_scopes_and_networks() {
    let Some(binary) = installed(&["nginx", "/usr/sbin/nginx"], "MULTITOKEN_REQUIRE_NGINX") else {
        return;
    };
    let app = app_behind_proxy().await;
    let owner = app.create_user("alice", false).await;
    let reader = token_with(&app, &owner, "reader", json!({"read_only": true})).await;
    let billing = token_with(
        &app,
        &owner,
        "billing",
        json!({"scopes": ["billing", "orders"]}),
    )
    .await;
    let local = token_with(&app, &owner, "local", json!({"allowed_ips": ["127.0.0.1"]})).await;
    let remote = token_with(
        &app,
        &owner,
        "remote",
        json!({"allowed_ips": ["203.0.113.0/24"]}),
    )
    .await;
    let hits = Arc::new(AtomicUsize::new(0));
    let backend_port = start_backend(hits.clone()).await;
    let nginx = start_nginx(binary, port_of(&app), backend_port);
    let client = reqwest::Client::new();
    let send = |method: reqwest::Method, path: &str, key: &str| {
        let request = client
            .request(method.clone(), nginx.url(path))
            .header("Authorization", format!("Token {key}"));
        // A body on writes: the subrequest drops it, the backend still gets it.
        let request = if method == reqwest::Method::GET {
            request
        } else {
            request.body("payload")
        };
        request.send()
    };

    // Read-only: nginx sends the client's method as X-Original-Method.
    let response = send(reqwest::Method::GET, "/thermostat", &reader.key)
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "a read-only token reads: {}",
        nginx.log()
    );
    for method in [reqwest::Method::POST, reqwest::Method::DELETE] {
        let response = send(method.clone(), "/thermostat", &reader.key)
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::FORBIDDEN,
            "a read-only token may not {method} through nginx"
        );
    }
    let response = send(reqwest::Method::POST, "/thermostat", &billing.key)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "a full token writes");
    assert_eq!(response.json::<Value>().await.unwrap()["body"], "payload");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        2,
        "only the allowed requests reached the backend"
    );

    // /billing/ requires the scope `billing`.
    let response = send(reqwest::Method::GET, "/billing/invoices", &billing.key)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{}", nginx.log());
    let echo: Value = response.json().await.unwrap();
    assert_eq!(echo["scopes"], "billing orders", "{echo}");
    assert_eq!(echo["user"], "alice", "{echo}");
    for (what, key) in [
        ("a token without scopes", &reader.key),
        ("another scope only", &local.key),
    ] {
        let response = send(reqwest::Method::GET, "/billing/invoices", key)
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::FORBIDDEN,
            "{what} is kept out of /billing/"
        );
    }
    assert_eq!(hits.load(Ordering::SeqCst), 3);

    // Networks: the client's address comes from nginx's X-Forwarded-For (nginx is trusted).
    let response = send(reqwest::Method::GET, "/hello", &local.key)
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "127.0.0.1 is allowed: {}",
        nginx.log()
    );
    let response = send(reqwest::Method::GET, "/hello", &remote.key)
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::UNAUTHORIZED,
        "the client, 127.0.0.1, is outside 203.0.113.0/24"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn nginx_with_the_shipped_config_passes_a_rate_limit_on_as_429_with_retry_after() {
    let Some(binary) = installed(&["nginx", "/usr/sbin/nginx"], "MULTITOKEN_REQUIRE_NGINX") else {
        return;
    };
    let app = app_behind_proxy().await;
    let owner = app.create_user("alice", false).await;
    let limited = token_with(
        &app,
        &owner,
        "chatty",
        json!({"rate_limit_per_minute": 2, "scopes": ["billing"]}),
    )
    .await;
    let hits = Arc::new(AtomicUsize::new(0));
    let backend_port = start_backend(hits.clone()).await;
    let nginx = start_nginx(binary, port_of(&app), backend_port);
    let client = reqwest::Client::new();
    let get = |path: &str| {
        client
            .get(nginx.url(path))
            .header("Authorization", format!("Token {}", limited.key))
            .send()
    };
    for n in 1..=2 {
        let response = get("/thermostat").await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "request {n}: {}",
            nginx.log()
        );
    }
    for path in ["/thermostat", "/billing/invoices"] {
        let response = get(path).await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::TOO_MANY_REQUESTS,
            "{path}: the client gets the 429, not nginx's 500: {}",
            nginx.log()
        );
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|value| value.to_str().unwrap().to_owned())
                .unwrap_or_else(|| panic!("{path}: {name} passed on"))
        };
        let retry_after: u64 = header("retry-after").parse().unwrap();
        assert!((1..=30).contains(&retry_after), "{retry_after}");
        assert_eq!(header("ratelimit-limit"), "2");
        assert_eq!(header("ratelimit-remaining"), "0");
        assert_eq!(header("ratelimit-policy"), "2;w=60");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "Rate limit exceeded", "{body}");
        assert_eq!(body["retry_after"], retry_after, "{body}");
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        2,
        "the refused requests never reached the backend"
    );
    // A multitoken that does not answer is still a 500, not a 429.
    app.stop().await;
    let response = get("/thermostat").await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        nginx.log()
    );
    assert!(response.headers().get("retry-after").is_none());
}
