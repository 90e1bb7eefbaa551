//! The command line: the real binary, its stdout, stderr and exit codes.

use std::{
    io::{BufRead, BufReader, Write},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Backend, TestDatabase, login_status_at, start, test_settings};

fn multitoken(database_url: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_multitoken"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", database_url);
    command
}

fn run(command: &mut Command, stdin: Option<&str>) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let mut pipe = child.stdin.take().unwrap();
    if let Some(input) = stdin {
        pipe.write_all(input.as_bytes()).unwrap();
    }
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn create_user_and_create_token_print_what_a_script_needs() {
    let database = TestDatabase::create(&Backend::Sqlite).await;
    let url = database.url.clone();
    let created = run(
        multitoken(&url).args(["create-user", "alice", "--password-stdin"]),
        Some("alice's password\n"),
    );
    assert!(
        created.status.success(),
        "create-user: {}",
        text(&created.stderr)
    );
    assert_eq!(
        text(&created.stdout),
        "",
        "nothing to print when the password came from stdin"
    );

    let issued = run(
        multitoken(&url).args(["create-token", "alice", "ci job", "--expires-in", "30d"]),
        None,
    );
    assert!(
        issued.status.success(),
        "create-token: {}",
        text(&issued.stderr)
    );
    let key = text(&issued.stdout).trim().to_owned();
    assert!(
        key.starts_with("mt_") && !key.contains(char::is_whitespace),
        "stdout is only the key: {key:?}"
    );

    let app = start(database, &test_settings(&url)).await;
    let (status, me) = crate::helpers::status_and_json(app.get("/api/me/", Some(&key)).await).await;
    assert_eq!(status, StatusCode::OK, "the printed key works over HTTP");
    assert_eq!(me["user"], "alice");
    assert_eq!(me["token"]["name"], "ci job");
    assert!(
        me["token"]["expires_at"].is_string(),
        "--expires-in sets an expiry"
    );
    app.login("alice", "alice's password").await;

    let generated = run(
        multitoken(&url).args(["create-user", "bob", "--admin"]),
        None,
    );
    assert!(generated.status.success(), "{}", text(&generated.stderr));
    let password = text(&generated.stdout)
        .trim()
        .strip_prefix("password: ")
        .expect("generated password printed")
        .to_owned();
    let (status, body) = crate::helpers::status_and_json(
        app.post(
            "/api/token/",
            None,
            json!({ "username": "bob", "password": password }),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["is_admin"], true, "--admin makes an admin");
}

#[tokio::test]
async fn token_on_signup_prints_the_default_key_once() {
    let database = TestDatabase::create(&Backend::Sqlite).await;
    let output = run(
        multitoken(&database.url)
            .env("MULTITOKEN_TOKEN_ON_SIGNUP", "true")
            .args(["create-user", "carol", "--password-stdin"]),
        Some("carol's password\n"),
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    let key = stdout
        .trim()
        .strip_prefix("token default: ")
        .unwrap_or_else(|| panic!("default token printed: {stdout:?}"));
    let url = database.url.clone();
    let app = start(database, &test_settings(&url)).await;
    assert_eq!(app.me_status(key).await, StatusCode::OK);
}

#[tokio::test]
async fn cli_errors_exit_non_zero_with_one_clear_line() {
    let database = TestDatabase::create(&Backend::Sqlite).await;
    let url = &database.url;
    let ok = run(
        multitoken(url).args(["create-user", "dave", "--password-stdin"]),
        Some("dave's password\n"),
    );
    assert!(ok.status.success());
    /// Arguments, environment, and what the one line of stderr must mention.
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec!["create-user", "Dave", "--password-stdin"],
            vec![],
            "already exists",
        ),
        (
            vec!["create-token", "nobody", "x"],
            vec![],
            "no user named 'nobody'",
        ),
        (
            vec!["create-token", "dave", "x", "--expires-in", "soon"],
            vec![],
            "--expires-in",
        ),
        (
            vec!["serve"],
            vec![("MULTITOKEN_SESSION_TTL", "forever")],
            "MULTITOKEN_SESSION_TTL",
        ),
        (
            vec!["serve"],
            vec![("MULTITOKEN_SECRET_KEY", "too short")],
            "MULTITOKEN_SECRET_KEY",
        ),
        (
            vec!["serve"],
            vec![("MULTITOKEN_MAX_TOKENS_PER_USER", "-3")],
            "MULTITOKEN_MAX_TOKENS_PER_USER",
        ),
        (
            vec!["serve"],
            vec![("MULTITOKEN_BIND", "not an address")],
            "MULTITOKEN_BIND",
        ),
        (
            vec!["serve"],
            vec![("MULTITOKEN_TOKEN_ON_SIGNUP", "perhaps")],
            "MULTITOKEN_TOKEN_ON_SIGNUP",
        ),
        (
            vec!["serve"],
            vec![("MULTITOKEN_ADMIN_PASSWORD", "short")],
            "MULTITOKEN_ADMIN_PASSWORD",
        ),
        (
            vec!["migrate"],
            vec![("DATABASE_URL", "mongodb://root:hunter2@db/x")],
            "DATABASE_URL",
        ),
    ];
    for (args, env, expected) in cases {
        let mut command = multitoken(url);
        command.args(&args).envs(env.iter().copied());
        let output = run(&mut command, Some("a long enough password\n"));
        let stderr = text(&output.stderr);
        assert!(!output.status.success(), "{args:?} {env:?} must fail");
        assert_eq!(
            stderr.trim().lines().count(),
            1,
            "{args:?} {env:?}: one line, got {stderr:?}"
        );
        assert!(
            !stderr.contains("hunter2"),
            "a database password is never echoed: {stderr:?}"
        );
        assert!(
            stderr.contains(expected),
            "{args:?} {env:?}: {stderr:?} should mention {expected:?}"
        );
    }
}

#[tokio::test]
async fn prune_deletes_expired_tokens_and_prints_the_count() {
    let database = TestDatabase::create(&Backend::Sqlite).await;
    let url = database.url.clone();
    let mut settings = test_settings(&url);
    settings.session_ttl = Duration::from_secs(1);
    let app = start(database, &settings).await; // one admin session, expiring in 1 s
    let device = app.create_token(&app.admin_key, "keeps").await;
    app.login("admin", crate::helpers::ADMIN_PASSWORD).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let output = run(multitoken(&url).arg("prune"), None);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout).trim(),
        "2",
        "both expired sessions are pruned"
    );
    assert_eq!(
        app.me_status(&device.key).await,
        StatusCode::OK,
        "unexpired tokens stay"
    );
    let again = run(multitoken(&url).arg("prune"), None);
    assert_eq!(text(&again.stdout).trim(), "0");
    // The admin's session expired and was pruned too: read the log with a new one.
    let admin = app.login("admin", crate::helpers::ADMIN_PASSWORD).await;
    let log: serde_json::Value = app
        .get("/api/admin/audit/", Some(&admin))
        .await
        .json()
        .await
        .unwrap();
    let pruned: Vec<_> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "token.pruned")
        .collect();
    assert_eq!(
        pruned.len(),
        2,
        "one audit event per pruned token: {pruned:?}"
    );
    assert!(
        pruned
            .iter()
            .all(|e| e["actor"] == "command line" && e["target_owner"] == "admin"),
        "{pruned:?}"
    );
}

/// `multitoken serve` as a child process, its stderr read line by line on a thread of its own so
/// that waiting for a line can time out.
struct Server {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    /// Every line read so far.
    log: Vec<String>,
}

impl Server {
    fn start(database_url: &str, env: &[(&str, &str)]) -> Server {
        let mut child = multitoken(database_url)
            .env("MULTITOKEN_BIND", "127.0.0.1:0")
            .envs(env.iter().copied())
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("serve starts");
        let stderr = child.stderr.take().unwrap();
        let (sender, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Server {
            child,
            lines,
            log: Vec::new(),
        }
    }

    /// The first line containing `needle`, waiting at most a minute.
    fn wait_for(&mut self, needle: &str) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let line = self.lines.recv_timeout(left).ok()?;
            self.log.push(line.clone());
            if line.contains(needle) {
                return Some(line);
            }
        }
        None
    }

    fn port(&mut self) -> u16 {
        let line = self
            .wait_for("listening on http://127.0.0.1:")
            .expect("the server says where it listens");
        // The port's digits, whatever follows them (a JSON line goes on).
        let after = line.split("listening on http://127.0.0.1:").nth(1).unwrap();
        let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().expect("a port number")
    }

    /// Stops the server and returns everything it logged.
    fn stop(mut self) -> String {
        self.child.kill().ok();
        self.child.wait().ok();
        self.log.extend(self.lines.iter());
        self.log.join("\n")
    }
}

#[tokio::test]
async fn serve_on_an_empty_database_prints_the_admin_password_once() {
    let database = TestDatabase::create(&Backend::Sqlite).await;
    let mut first = Server::start(&database.url, &[]);
    let line = first
        .wait_for("with password: ")
        .expect("the admin password is logged on the first start");
    let password = line
        .split("with password: ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let port = first.port();
    assert_eq!(
        login_status_at(port, "admin", &password).await,
        StatusCode::OK,
        "the printed password logs in"
    );
    first.stop();

    let mut second = Server::start(&database.url, &[]);
    second.port();
    let log = second.stop();
    assert!(
        log.contains("listening on"),
        "the second start came up: {log}"
    );
    assert!(
        !log.contains("with password"),
        "the password is printed on the first start only: {log}"
    );
}

/// Signs in through the web form and loads the tokens page; returns the session cookie's value
/// and the CSRF token, both secrets that must stay out of the log.
async fn web_sign_in(base: &str, username: &str, password: &str) -> (String, String) {
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let html = browser
        .get(format!("{base}/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let marker = "name=\"csrf\" value=\"";
    let start = html
        .find(marker)
        .expect("the sign-in form has a CSRF field")
        + marker.len();
    let csrf = html[start..start + html[start..].find('"').unwrap()].to_owned();
    let signed_in = browser
        .post(format!("{base}/login"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("username", username),
            ("password", password),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.headers()["location"], "/tokens", "signed in");
    let cookie = signed_in
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .next()
        .expect("the sign-in sets the session cookie");
    let value = cookie
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_owned();
    assert!(value.len() > 20, "a real cookie value: {cookie}");
    let tokens = browser.get(format!("{base}/tokens")).send().await.unwrap();
    assert_eq!(
        tokens.status(),
        StatusCode::OK,
        "the cookie signs the browser in"
    );
    (value, csrf)
}

#[tokio::test]
async fn keys_and_passwords_never_reach_the_log_even_at_trace_level() {
    keys_and_passwords_never_reach_a_log_written_as("text").await;
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_with_access_fields_and_no_secret() {
    keys_and_passwords_never_reach_a_log_written_as("json").await;
}

/// The text of a JSON log for the checks written for text logs: each line's message and, for
/// access-log lines, its fields. Every line must parse as a JSON object with the four fixed
/// fields; the access log's lines must carry theirs, and name the token of an authenticated
/// request.
fn readable_json_log(log: &str) -> String {
    let mut readable = String::new();
    let mut authenticated = 0;
    for line in log.lines() {
        let object: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a log line that is no JSON ({e}): {line}"));
        for field in ["time", "level", "target", "message"] {
            assert!(object[field].is_string(), "{field} in {line}");
        }
        readable.push_str(object["message"].as_str().unwrap());
        if object["target"] == "actix_web::middleware::logger" && object["level"] == "INFO" {
            for field in ["method", "path", "request_id", "token_id", "address"] {
                assert!(object[field].is_string(), "{field} in {line}");
            }
            assert!(object["status"].is_u64(), "status in {line}");
            assert!(object["duration_ms"].is_number(), "duration_ms in {line}");
            assert!(
                !object["path"].as_str().unwrap().contains('?'),
                "never the query: {line}"
            );
            if object["path"] == "/api/me/" && object["status"] == 200 {
                assert_eq!(object["token_id"].as_str().unwrap().len(), 36, "{line}");
                authenticated += 1;
            }
            readable.push(' ');
            readable.push_str(object["path"].as_str().unwrap());
        }
        readable.push('\n');
    }
    assert!(
        authenticated >= 2,
        "the /api/me/ requests name their tokens: {log}"
    );
    readable
}

async fn keys_and_passwords_never_reach_a_log_written_as(format: &str) {
    let database = TestDatabase::create(&Backend::Sqlite).await;
    let admin_password = "admin password never logged";
    let mut server = Server::start(
        &database.url,
        &[
            ("RUST_LOG", "trace"),
            ("MULTITOKEN_ADMIN_PASSWORD", admin_password),
            ("MULTITOKEN_LOG_FORMAT", format),
        ],
    );
    let base = format!("http://127.0.0.1:{}", server.port());
    let client = reqwest::Client::new();
    let login: serde_json::Value = client
        .post(format!("{base}/api/token/?password={admin_password}"))
        .form(&[("username", "admin"), ("password", admin_password)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let session = login["id_token"].as_str().expect("logged in").to_owned();
    let created: serde_json::Value = client
        .post(format!("{base}/api/tokens/"))
        .bearer_auth(&session)
        .json(&json!({ "name": "logged?" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let device = created["id_token"]
        .as_str()
        .expect("token created")
        .to_owned();
    for key in [&session, &device] {
        let me = client
            .get(format!("{base}/api/me/"))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        assert_eq!(me.status(), StatusCode::OK);
    }
    let mut wrong = device.clone().into_bytes();
    wrong[5] = if wrong[5] == b'a' { b'b' } else { b'a' };
    let wrong = String::from_utf8(wrong).unwrap();
    let refused = client
        .get(format!("{base}/api/me/?key={wrong}"))
        .bearer_auth(&wrong)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    // A browser sign-in: the password in a form, then the session cookie on every request.
    let (browser_cookie, browser_csrf) = web_sign_in(&base, "admin", admin_password).await;
    // Wrong passwords, up to and past the login throttle (5 by default).
    let guessed_password = "guessed password never logged";
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let guess = client
            .post(format!("{base}/api/token/"))
            .json(&json!({ "username": "admin", "password": guessed_password }))
            .send()
            .await
            .unwrap();
        statuses.push(guess.status().as_u16());
    }
    assert_eq!(
        statuses,
        [400, 400, 400, 400, 400, 429],
        "guesses were refused, then throttled"
    );
    // Error answers that carry what was sent: actix logs `Error in response: {:?}` at debug.
    // A key pasted into a page's URL comes back as the sign-in page's `next`...
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let sign_in_first = no_redirects
        .get(format!("{base}/tokens?key={device}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        sign_in_first.status(),
        StatusCode::SEE_OTHER,
        "a signed-out page visit is sent to sign in"
    );
    // ...and serde quotes a wrongly typed value in its message.
    let mistyped = client
        .post(format!("{base}/api/tokens/"))
        .bearer_auth(&session)
        .json(&json!({ "name": "typed", "expires_in_days": device }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        mistyped.status(),
        StatusCode::BAD_REQUEST,
        "a key where a number belongs is a bad request"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = server.stop();
    assert!(log.lines().count() > 10, "trace logging was on: {log}");
    let readable = if format == "json" {
        readable_json_log(&log)
    } else {
        log.clone()
    };
    assert!(readable.contains("/api/me/"), "requests were logged: {log}");
    assert!(
        readable.contains("/tokens"),
        "the browser's requests were logged: {log}"
    );
    assert!(
        readable.contains("Error in response: SignInRequired")
            && readable.contains(r#"Error in response: WrongType("expires_in_days")"#),
        "the error answers were logged at debug level (by name): {log}"
    );
    for secret in [
        session.as_str(),
        device.as_str(),
        wrong.as_str(),
        &session[3..33],
        admin_password,
        guessed_password,
        browser_cookie.as_str(),
        browser_csrf.as_str(),
    ] {
        assert!(
            !log.contains(secret),
            "a secret reached the log: {secret:?}"
        );
    }
}

#[tokio::test]
async fn a_key_pasted_into_a_url_path_is_cut_out_of_the_access_log() {
    let database = TestDatabase::create(&Backend::Sqlite).await;
    let admin_password = "admin password for the path test";
    let mut server = Server::start(
        &database.url,
        &[
            ("RUST_LOG", "info"),
            ("MULTITOKEN_ADMIN_PASSWORD", admin_password),
        ],
    );
    let base = format!("http://127.0.0.1:{}", server.port());
    let client = reqwest::Client::new();
    let login: serde_json::Value = client
        .post(format!("{base}/api/token/"))
        .json(&json!({ "username": "admin", "password": admin_password }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = login["id_token"].as_str().expect("logged in").to_owned();
    for path in [
        format!("/api/tokens/{key}/"),
        format!("/{key}"),
        format!("/tokens/{key}/delete"),
    ] {
        let answer = client.get(format!("{base}{path}")).send().await.unwrap();
        assert!(
            !answer.status().is_server_error(),
            "{path}: {}",
            answer.status()
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = server.stop();
    assert!(
        log.contains("\"GET /api/tokens/mt_***/\""),
        "the request was logged, its key cut out: {log}"
    );
    assert!(
        !log.contains(&key) && !log.contains(&key[3..33]),
        "a key in a URL path reached the log: {log}"
    );
}
