//! The web UI end to end in a real browser: `tests/e2e/ui.mjs` (playwright-core driving Debian's
//! headless `/usr/bin/chromium`) against a freshly started server on SQLite. An admin and a user,
//! each in a browser of their own, sign in, create, delete and revoke tokens and read the audit
//! log; every key read from a page is tried against the JSON API. Screenshots of every page go to
//! `target/screenshots/` in the repository.
//!
//! Needs `node`, `/usr/bin/chromium` and `npm ci` in `tests/e2e` (`.ci/run` installs all three).
//! Without them the test says "skipped" and passes, unless `MULTITOKEN_REQUIRE_BROWSER=1`, which
//! makes it fail instead (as in CI).

use std::{
    io::{BufRead, BufReader, Read},
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::Instant,
};

use crate::helpers::{ADMIN_PASSWORD, Backend, spawn_app_with};

const CHROMIUM: &str = "/usr/bin/chromium";

/// What the browser test needs and this machine lacks, each with how to get it.
fn missing_prerequisites(e2e: &Path) -> Vec<String> {
    let mut missing = Vec::new();
    let node = Command::new("node")
        .arg("--version")
        .stdin(Stdio::null())
        .output();
    if !node.is_ok_and(|out| out.status.success()) {
        missing.push("`node` on PATH (apt-get install nodejs npm)".to_owned());
    }
    if !Path::new(CHROMIUM).is_file() {
        missing.push(format!("{CHROMIUM} (apt-get install chromium)"));
    }
    if !e2e
        .join("node_modules/playwright-core/package.json")
        .is_file()
    {
        missing.push(format!(
            "{}/node_modules/playwright-core (run `npm ci` in {})",
            e2e.display(),
            e2e.display()
        ));
    }
    missing
}

/// Copies each line of `from` to our own output (which the test harness captures unless
/// `--nocapture`) and to `transcript`.
fn relay(from: impl Read, transcript: &Mutex<String>, to_stderr: bool) {
    for line in BufReader::new(from).lines() {
        let Ok(line) = line else { break };
        if to_stderr {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
        let mut transcript = transcript.lock().unwrap();
        transcript.push_str(&line);
        transcript.push('\n');
    }
}

/// Runs `node ui.mjs …` to the end, relaying its output line by line as it comes.
fn run_ui_script(
    e2e: &Path,
    base_url: &str,
    screenshots: &Path,
) -> std::io::Result<(ExitStatus, String)> {
    let mut child = Command::new("node")
        .arg("ui.mjs")
        .arg(base_url)
        .arg("admin")
        .arg(ADMIN_PASSWORD)
        .arg(screenshots)
        .current_dir(e2e)
        // Plain text in the failure message, without terminal colour codes.
        .env("FORCE_COLOR", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let transcript = Arc::new(Mutex::new(String::new()));
    let stderr = child.stderr.take().expect("piped stderr");
    let stderr_relay = {
        let transcript = Arc::clone(&transcript);
        std::thread::spawn(move || relay(stderr, &transcript, true))
    };
    relay(
        child.stdout.take().expect("piped stdout"),
        &transcript,
        false,
    );
    stderr_relay.join().expect("stderr relay");
    let status = child.wait()?;
    let transcript = transcript.lock().unwrap().clone();
    Ok((status, transcript))
}

#[tokio::test]
async fn the_web_ui_works_end_to_end_in_headless_chromium() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let e2e = repo.join("tests/e2e");
    let missing = missing_prerequisites(&e2e);
    if !missing.is_empty() {
        let missing = missing.join("; ");
        if std::env::var("MULTITOKEN_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
            panic!(
                "MULTITOKEN_REQUIRE_BROWSER=1, but the browser test cannot run. Missing: {missing}"
            );
        }
        eprintln!(
            "skipped: browser test (set MULTITOKEN_REQUIRE_BROWSER=1 to fail instead). Missing: {missing}"
        );
        return;
    }

    // In the repository's own target/ (ignored by git), wherever CARGO_TARGET_DIR points.
    let screenshots: PathBuf = repo.join("target/screenshots");
    std::fs::create_dir_all(&screenshots).expect("create target/screenshots");
    for old in std::fs::read_dir(&screenshots).expect("list target/screenshots") {
        let old = old.expect("a directory entry").path();
        if old.extension().is_some_and(|ext| ext == "png") {
            std::fs::remove_file(&old).expect("remove an old screenshot");
        }
    }

    // A pairing device may poll every second, so the pairing check waits little.
    let app = spawn_app_with(Backend::Sqlite, |settings| {
        settings.pairing_interval = std::time::Duration::from_secs(1);
        // Usage counts reach the token's chart within a second.
        settings.last_used_flush = std::time::Duration::from_secs(1);
    })
    .await;
    let base_url = app.address.clone();
    let started = Instant::now();
    // The server runs on this test's runtime: wait for the browser on a thread of its own.
    let (status, transcript) = tokio::task::spawn_blocking({
        let screenshots = screenshots.clone();
        move || run_ui_script(&e2e, &base_url, &screenshots)
    })
    .await
    .expect("the browser run's thread")
    .expect("start `node tests/e2e/ui.mjs`");
    eprintln!(
        "browser test: {status} after {:.1} s; screenshots in {}",
        started.elapsed().as_secs_f64(),
        screenshots.display()
    );
    assert!(
        status.success(),
        "the browser test failed ({status}); screenshots in {}. Its output:\n{transcript}",
        screenshots.display()
    );
}
