//! Usage history: N uses and M refusals of a token are N and M in their hour once written back
//! (in batches, with `last_used_at`), for its owner only; admins see every token's per hour.

use std::time::{Duration, Instant};

use chrono::{DateTime, Timelike, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, spawn_app_with, status_and_json};
use crate::on_every_backend;

on_every_backend!(
    uses_and_refusals_are_counted_exactly_in_their_hour_after_the_flush,
    a_tokens_history_is_its_owners_and_admins_see_every_tokens,
);

async fn app_flushing_often(backend: Backend) -> TestApp {
    spawn_app_with(backend, |settings| {
        settings.last_used_flush = Duration::from_millis(200);
    })
    .await
}

/// `(uses, refused)` summed over the hours answered, once they reach `expected` (the counts
/// are written in batches), with the hours themselves.
async fn usage_reaching(
    app: &TestApp,
    path: &str,
    key: &str,
    expected: (i64, i64),
) -> (Vec<Value>, (i64, i64)) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = status_and_json(app.get(path, Some(key)).await).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let hours = body.as_array().unwrap().clone();
        let sum = |field: &str| {
            hours
                .iter()
                .map(|h| h[field].as_i64().unwrap())
                .sum::<i64>()
        };
        let totals = (sum("uses"), sum("refused"));
        if totals == expected || Instant::now() > deadline {
            return (hours, totals);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn uses_and_refusals_are_counted_exactly_in_their_hour_after_the_flush(backend: Backend) {
    let app = app_flushing_often(backend).await;
    let owner = app.create_user("alice", false).await;
    let (id, key) = app
        .create_device(
            &owner,
            json!({"name": "meter", "read_only": true, "rate_limit_per_minute": 7}),
        )
        .await;
    let started = Utc::now();
    for _ in 0..7 {
        assert_eq!(app.me_status(&key).await, StatusCode::OK);
    }
    for _ in 0..3 {
        let write = app
            .post("/api/tokens/", Some(&key), json!({"name": "x"}))
            .await;
        assert_eq!(write.status(), StatusCode::FORBIDDEN, "read-only: refused");
    }
    // The limit of 7 is spent by the 7 uses (a request its policy refuses counts nothing
    // against it); the next read is over it.
    let over = app.me_status(&key).await;
    assert_eq!(over, StatusCode::TOO_MANY_REQUESTS);
    let finished = Utc::now();
    let path = format!("/api/tokens/{id}/usage/");
    let (hours, totals) = usage_reaching(&app, &path, &owner, (7, 4)).await;
    assert_eq!(
        totals,
        (7, 4),
        "7 uses; 3 read-only refusals and 1 over the rate limit: {hours:?}"
    );
    let on_the_hour = |at: DateTime<Utc>| at.with_minute(0).unwrap().with_second(0).unwrap();
    let first = on_the_hour(started).with_nanosecond(0).unwrap();
    let last = on_the_hour(finished).with_nanosecond(0).unwrap();
    for hour in &hours {
        let at = DateTime::parse_from_rfc3339(hour["hour"].as_str().unwrap())
            .unwrap()
            .to_utc();
        assert!(
            at == first || at == last,
            "counted in the hour they happened ({first} or {last}): {hour}"
        );
    }

    for bad in ["0", "91", "x"] {
        let (status, body) =
            status_and_json(app.get(&format!("{path}?days={bad}"), Some(&owner)).await).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "days={bad}: {body}");
    }
    let (status, body) =
        status_and_json(app.get(&format!("{path}?days=90"), Some(&owner)).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn a_tokens_history_is_its_owners_and_admins_see_every_tokens(backend: Backend) {
    let app = app_flushing_often(backend).await;
    let alice = app.create_user("alice", false).await;
    let bob = app.create_user("bob", false).await;
    let (id, key) = app.create_device(&alice, json!({"name": "meter"})).await;
    for _ in 0..5 {
        assert_eq!(app.me_status(&key).await, StatusCode::OK);
    }
    let path = format!("/api/tokens/{id}/usage/");
    let (status, _) = status_and_json(app.get(&path, Some(&bob)).await).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "another user's token looks missing"
    );
    usage_reaching(&app, &path, &alice, (5, 0)).await;

    let (status, _) = status_and_json(app.get("/api/admin/usage/", Some(&alice)).await).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "admins only");
    let (status, body) = status_and_json(
        app.get("/api/admin/usage/?days=1", Some(&app.admin_key))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let hours = body.as_array().unwrap();
    let uses: i64 = hours.iter().map(|h| h["uses"].as_i64().unwrap()).sum();
    let tokens = hours.iter().map(|h| h["tokens"].as_i64().unwrap()).max();
    assert!(
        uses >= 5,
        "alice's five uses are among every token's: {body}"
    );
    assert!(
        tokens >= Some(2),
        "alice's device and the sessions that made the calls: {body}"
    );
}
