//! The command line: the real binary, its stdout, stderr and exit codes.

use std::{
    io::{BufRead, BufReader, Write},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Backend, TestDatabase, start, test_settings};

fn multitoken(database_url: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_multitoken"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "warn");
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
}

#[tokio::test]
async fn serve_on_an_empty_database_prints_the_admin_password_once() {
    let database = TestDatabase::create(&Backend::Sqlite).await;
    let mut child = multitoken(&database.url)
        .env("RUST_LOG", "info")
        .env("MULTITOKEN_BIND", "127.0.0.1:0")
        .arg("serve")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut password = None;
    let mut port = None;
    while (password.is_none() || port.is_none()) && Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        if let Some((_, rest)) = line.split_once("with password: ") {
            password = rest.split_whitespace().next().map(str::to_owned);
        }
        if let Some((_, rest)) = line.split_once("listening on http://127.0.0.1:") {
            port = rest.trim().parse::<u16>().ok();
        }
    }
    let (password, port) = (
        password.expect("admin password logged"),
        port.expect("port logged"),
    );
    let client = reqwest::Client::new();
    let response = client
        .post(format!("http://127.0.0.1:{port}/api/token/"))
        .json(&json!({ "username": "admin", "password": password }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "the printed password logs in"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let second = Command::new(env!("CARGO_BIN_EXE_multitoken"))
        .env_clear()
        .env("DATABASE_URL", &database.url)
        .env("MULTITOKEN_BIND", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .arg("serve")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut second = second;
    let mut lines = BufReader::new(second.stderr.take().unwrap()).lines();
    let mut saw_password = false;
    while let Some(Ok(line)) = lines.next() {
        saw_password |= line.contains("with password");
        if line.contains("listening on") {
            break;
        }
    }
    second.kill().unwrap();
    second.wait().unwrap();
    assert!(
        !saw_password,
        "the password is printed on the first start only"
    );
}
