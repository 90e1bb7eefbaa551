//! SIGKILL in the middle of the load, then a restart on the same database: what was
//! acknowledged before the kill holds after it.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::{
    database::{Backend, TestDatabase},
    driver::{self, CLIENTS, CLIENTS_PER_USER},
    on_every_backend,
    server::Server,
};

/// Load this long, then the kill.
const KILL_AFTER: Duration = Duration::from_secs(12);

on_every_backend!(acknowledged_writes_survive_a_sigkill_under_load);

async fn acknowledged_writes_survive_a_sigkill_under_load(backend: Backend) {
    let test_started = Instant::now();
    let database = TestDatabase::create(&backend).await;
    let mut server = Server::start(&database.url, database.dir(), "before-kill", &[]);
    let users = driver::create_users(&server, CLIENTS / CLIENTS_PER_USER).await;
    let kill_after = KILL_AFTER.min(driver::load_duration());

    let run = driver::run(
        &mut server,
        users,
        Duration::from_secs(3600),
        Some(kill_after),
    )
    .await;
    let summary = run.summary(&format!("SIGKILL under load on {}", backend.name()));
    println!("{summary}");
    assert_eq!(
        run.failures,
        0,
        "before the kill every request gets its expected answer; after it only connection errors:\n{summary}\n{}",
        server.problems()
    );
    assert!(
        run.unknown > 0,
        "the kill cut off requests in flight (else it did not happen under load):\n{summary}"
    );
    let errors = server.errors();
    assert!(
        errors.is_empty(),
        "the server logged no error before the kill:\n{}",
        errors.join("\n")
    );
    drop(server);

    let restarted = Server::start(&database.url, database.dir(), "after-kill", &[]);
    let lost = driver::lost_writes(&restarted, &database, &run).await;
    assert!(
        lost.is_empty(),
        "after a restart every acknowledged creation works and every acknowledged deletion stays deleted:\n{}\n{summary}\n{}",
        lost.join("\n"),
        restarted.problems()
    );
    let created = driver::http_client()
        .post(restarted.url("/api/tokens/"))
        .bearer_auth(&run.users[0].session.key)
        .json(&json!({ "name": "after the restart" }))
        .send()
        .await
        .expect("request sent");
    assert_eq!(
        created.status(),
        StatusCode::CREATED,
        "the restarted server takes writes: {}",
        restarted.problems()
    );
    let errors = restarted.errors();
    assert!(
        errors.is_empty(),
        "the restarted server logged no error:\n{}",
        errors.join("\n")
    );
    println!(
        "SIGKILL under load on {}: {:.1} s in all",
        backend.name(),
        test_started.elapsed().as_secs_f64()
    );
}
