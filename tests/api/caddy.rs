//! The shipped `docs/Caddyfile`, run by a real Caddy (Debian's) in front of a small upstream:
//! allowed requests reach it with the caller in headers (a client's forged `X-Auth-*` removed),
//! refused ones get 401 or 403 and never reach it. Skipped when Caddy is missing, unless
//! `MULTITOKEN_REQUIRE_CADDY` is set (CI sets it).

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Backend, spawn_app_with};
use crate::upstream::{free_port, installed, start_backend, token_with};

/// A Caddy process with its own home in a temporary folder, stopped with the test.
struct Caddy {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Caddy {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

impl Caddy {
    /// `docs/Caddyfile` with its three addresses pointed at this test's servers.
    fn start(binary: &str, multitoken_port: u16, backend_port: u16) -> Caddy {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let shipped =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/Caddyfile"))
                .expect("docs/Caddyfile is shipped");
        for address in ["127.0.0.1:8080", "127.0.0.1:3000", "127.0.0.1:8000"] {
            assert!(shipped.contains(address), "docs/Caddyfile names {address}");
        }
        let config = shipped
            .replace("127.0.0.1:8080", &format!("127.0.0.1:{multitoken_port}"))
            .replace("127.0.0.1:3000", &format!("127.0.0.1:{backend_port}"))
            .replace("127.0.0.1:8000", &format!("127.0.0.1:{port}"));
        let config_path = dir.path().join("Caddyfile");
        std::fs::write(&config_path, config).unwrap();
        let log = dir.path().join("caddy.log");
        let child = Command::new(binary)
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&config_path)
            // Everything Caddy keeps stays in the temporary folder.
            .env("HOME", dir.path())
            .env("XDG_DATA_HOME", dir.path().join("data"))
            .env("XDG_CONFIG_HOME", dir.path().join("config"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("caddy starts");
        let mut caddy = Caddy {
            child,
            port,
            log,
            _dir: dir,
        };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = caddy.child.try_wait() {
                panic!("caddy exited with {status}: {}", caddy.log());
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "caddy did not listen: {}",
                caddy.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        caddy
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

#[tokio::test]
async fn caddy_with_the_shipped_config_lets_valid_tokens_through_and_stops_the_rest() {
    let Some(binary) = installed(&["caddy", "/usr/bin/caddy"], "MULTITOKEN_REQUIRE_CADDY") else {
        return;
    };
    // Caddy is a trusted proxy, as docs/Caddyfile asks: its X-Forwarded-For names the client.
    let app = spawn_app_with(Backend::Sqlite, |settings| {
        settings.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
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
    let multitoken_port: u16 = app.address.rsplit(':').next().unwrap().parse().unwrap();
    let caddy = Caddy::start(binary, multitoken_port, backend_port);
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
