//! What the reverse-proxy tests (nginx, Caddy) share: the proxy's binary and process, started
//! from its shipped config; multitoken behind it; the user's own backend; tokens with a policy.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Backend, IssuedKey, TestApp, spawn_app_with, status_and_json};

/// multitoken on SQLite with the proxy (on loopback) trusted, as the shipped configs ask: the
/// proxy's `X-Forwarded-For` then names the client.
pub async fn app_behind_proxy() -> TestApp {
    spawn_app_with(Backend::Sqlite, |settings| {
        settings.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await
}

/// The port `app` listens on.
pub fn port_of(app: &TestApp) -> u16 {
    app.address.rsplit(':').next().unwrap().parse().unwrap()
}

/// A shipped proxy config (`docs/…`) with its three addresses pointed at this test's servers,
/// and the folder and port the proxy gets.
pub struct Prepared {
    pub config: String,
    pub dir: tempfile::TempDir,
    pub port: u16,
}

impl Prepared {
    pub fn shipped(file: &str, multitoken_port: u16, backend_port: u16) -> Prepared {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let shipped = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file))
            .unwrap_or_else(|e| panic!("{file} is shipped: {e}"));
        for address in ["127.0.0.1:8080", "127.0.0.1:3000", "127.0.0.1:8000"] {
            assert!(shipped.contains(address), "{file} names {address}");
        }
        let config = shipped
            .replace("127.0.0.1:8080", &format!("127.0.0.1:{multitoken_port}"))
            .replace("127.0.0.1:3000", &format!("127.0.0.1:{backend_port}"))
            .replace("127.0.0.1:8000", &format!("127.0.0.1:{port}"));
        Prepared { config, dir, port }
    }
}

/// A proxy process with its files in a temporary folder, killed with the test.
pub struct Proxy {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

impl Proxy {
    /// Spawns `command` (which writes its errors to `log`) and waits until it listens.
    pub fn start(prepared: Prepared, mut command: Command, log: PathBuf) -> Proxy {
        let name = command.get_program().to_string_lossy().into_owned();
        let child = command
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{name} starts: {e}"));
        let mut proxy = Proxy {
            child,
            port: prepared.port,
            log,
            _dir: prepared.dir,
        };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", proxy.port)).is_err() {
            if let Ok(Some(status)) = proxy.child.try_wait() {
                panic!("{name} exited with {status}: {}", proxy.log());
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "{name} did not listen: {}",
                proxy.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        proxy
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

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
