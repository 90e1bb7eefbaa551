//! What the reverse-proxy tests (nginx, Caddy) share: the user's own backend behind the proxy,
//! a free port, the proxy's binary, and tokens with a policy.

use std::{
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{IssuedKey, TestApp, status_and_json};

/// The first of `candidates` that runs, or `None` (the test is skipped) — unless `required` is
/// set in the environment (CI sets it), which makes a missing proxy fail the test instead.
pub fn installed(candidates: &[&'static str], required: &str) -> Option<&'static str> {
    let found = candidates.iter().copied().find(|binary| {
        Command::new(binary)
            .arg(if binary.contains("caddy") {
                "version"
            } else {
                "-v"
            })
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    });
    if found.is_none() {
        assert!(
            std::env::var_os(required).is_none(),
            "{required} is set but {} is not installed",
            candidates[0]
        );
        eprintln!(
            "{} is not installed: its integration test skipped",
            candidates[0]
        );
    }
    found
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The user's own backend: echoes what it was told about the caller and counts requests.
pub async fn start_backend(hits: Arc<AtomicUsize>) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = HttpServer::new(move || {
        let hits = hits.clone();
        App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
            hits.fetch_add(1, Ordering::SeqCst);
            let header = |name: &str| {
                req.headers()
                    .get(name)
                    .map(|value| value.to_str().unwrap_or("(not text)").to_owned())
            };
            let echo = json!({
                "method": req.method().as_str(),
                "path": req.path(),
                "body": String::from_utf8_lossy(&body),
                "user": header("X-Auth-User"),
                "token_id": header("X-Auth-Token-Id"),
                "token_name": header("X-Auth-Token-Name"),
                "admin": header("X-Auth-Admin"),
                "scopes": header("X-Auth-Scopes"),
                "read_only": header("X-Auth-Read-Only"),
                "expires_at": header("X-Auth-Expires-At"),
                "authorization": header("Authorization"),
            });
            async move { HttpResponse::Ok().json(echo) }
        }))
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    port
}

/// A device token with a policy, created through `POST /api/tokens/`.
pub async fn token_with(app: &TestApp, owner: &str, name: &str, policy: Value) -> IssuedKey {
    let mut body = policy;
    body["name"] = json!(name);
    let (status, created) =
        status_and_json(app.post("/api/tokens/", Some(owner), body).await).await;
    assert_eq!(status, StatusCode::CREATED, "create {name}: {created}");
    IssuedKey {
        id: created["id"].as_str().unwrap().to_owned(),
        key: created["id_token"].as_str().unwrap().to_owned(),
    }
}
