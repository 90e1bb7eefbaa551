//! `last_used_at` is noted in memory and written in batches, and at a graceful stop; and under
//! concurrent writes SQLite never answers "database is locked".

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use sea_orm::EntityTrait;
use serde_json::{Value, json};

use crate::helpers::{Backend, PASSWORD, TestApp, spawn_app_with, status_and_json};
use crate::on_every_backend;
use multitoken::entities::tokens;

on_every_backend!(
    uses_are_written_in_batches_after_the_flush_interval,
    uses_not_yet_written_are_written_at_a_graceful_stop,
    concurrent_writes_never_reach_a_client_as_an_error,
    the_last_uses_address_and_user_agent_are_shown_and_written_with_it,
    a_use_is_listed_while_its_flush_is_writing_it,
);

async fn written_last_use(app: &TestApp, id: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let id: uuid::Uuid = id.parse().unwrap();
    tokens::Entity::find_by_id(id)
        .one(&app.db().await)
        .await
        .unwrap()
        .expect("the token row exists")
        .last_used_at
}

async fn listed_last_use(app: &TestApp, session: &str, name: &str) -> Value {
    let listed: Value = app
        .get("/api/tokens/", Some(session))
        .await
        .json()
        .await
        .unwrap();
    listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("{name} listed in {listed}"))["last_used_at"]
        .clone()
}

async fn uses_are_written_in_batches_after_the_flush_interval(backend: Backend) {
    let app = spawn_app_with(backend, |settings| {
        settings.last_used_flush = Duration::from_secs(1)
    })
    .await;
    let session = app.create_user("alice", false).await;
    let device = app.create_token(&session, "thermostat").await;
    for _ in 0..20 {
        assert_eq!(app.me_status(&device.key).await, StatusCode::OK);
    }
    assert!(
        listed_last_use(&app, &session, "thermostat")
            .await
            .is_string(),
        "the listing shows the use at once, before it is written"
    );
    let started = Instant::now();
    let written = loop {
        if let Some(at) = written_last_use(&app, &device.id).await {
            break at;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the use was not written within a few flush intervals"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        chrono::Utc::now() - written < chrono::TimeDelta::seconds(10),
        "the written time is the time of use: {written}"
    );
}

async fn uses_not_yet_written_are_written_at_a_graceful_stop(backend: Backend) {
    // An interval no test reaches: only the stop can write.
    let app = spawn_app_with(backend, |settings| {
        settings.last_used_flush = Duration::from_secs(3600)
    })
    .await;
    let session = app.create_user("alice", false).await;
    let device = app.create_token(&session, "thermostat").await;
    assert_eq!(app.me_status(&device.key).await, StatusCode::OK);
    assert_eq!(
        written_last_use(&app, &device.id).await,
        None,
        "no write per request: the use is only in memory so far"
    );
    let listed = listed_last_use(&app, &session, "thermostat").await;
    assert!(listed.is_string(), "but the listing shows it: {listed}");
    let (status, changed) = app
        .patch_token(
            &session,
            &device.id,
            json!({ "description": "in the hall" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(
        changed["last_used_at"], listed,
        "a changed token's answer shows the same last use as the listing"
    );
    let id = device.id.clone();
    let database = app.stop().await;
    let db = sea_orm::Database::connect(database.url.as_str())
        .await
        .unwrap();
    let row = tokens::Entity::find_by_id(id.parse::<uuid::Uuid>().unwrap())
        .one(&db)
        .await
        .unwrap()
        .unwrap();
    assert!(
        row.last_used_at.is_some(),
        "a graceful stop writes the uses held in memory"
    );
    db.close().await.ok();
}

async fn the_last_uses_address_and_user_agent_are_shown_and_written_with_it(backend: Backend) {
    let app = spawn_app_with(backend, |settings| {
        settings.last_used_flush = Duration::from_secs(3600)
    })
    .await;
    let session = app.create_user("alice", false).await;
    let device = app.create_token(&session, "thermostat").await;
    for agent in ["thermostat/1.0", "thermostat/2.1"] {
        let response = app
            .client
            .get(app.url("/api/me/"))
            .header("Authorization", format!("Token {}", device.key))
            .header("User-Agent", agent)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let listed: Value = app
        .get("/api/tokens/", Some(&session))
        .await
        .json()
        .await
        .unwrap();
    let thermostat = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "thermostat")
        .unwrap()
        .clone();
    assert_eq!(thermostat["last_used_ip"], "127.0.0.1", "{thermostat}");
    assert_eq!(
        thermostat["last_used_user_agent"], "thermostat/2.1",
        "the newest use's agent, before any write: {thermostat}"
    );
    let id = device.id.clone();
    let database = app.stop().await;
    let db = sea_orm::Database::connect(database.url.as_str())
        .await
        .unwrap();
    let row = tokens::Entity::find_by_id(id.parse::<uuid::Uuid>().unwrap())
        .one(&db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.last_used_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(
        row.last_used_user_agent.as_deref(),
        Some("thermostat/2.1"),
        "written in the same batch as last_used_at"
    );
    db.close().await.ok();
}

/// Logins (argon2 on the blocking pool, then a write), token creations, deletions, uses and
/// last-use flushes, all at once. SQLite allows one writer at a time; waiting for it is fine,
/// answering "database is locked" (or any 5xx) is not.
async fn concurrent_writes_never_reach_a_client_as_an_error(backend: Backend) {
    let app = spawn_app_with(backend, |settings| {
        settings.last_used_flush = Duration::from_secs(1);
        settings.max_tokens_per_user = 20;
    })
    .await;
    let mut sessions = Vec::new();
    for index in 0..4 {
        sessions.push(app.create_user(&format!("user{index}"), false).await);
    }
    let app = &app;
    let work = sessions.iter().enumerate().flat_map(|(user, session)| {
        (0..8).map(move |round| async move {
            let mut answers = Vec::new();
            let name = format!("device {round}");
            let created = app
                .post("/api/tokens/", Some(session), json!({ "name": name }))
                .await;
            let (status, body) = status_and_json(created).await;
            answers.push((status, body.clone()));
            if let Some(key) = body["id_token"].as_str() {
                for _ in 0..3 {
                    let response = app.get("/api/me/", Some(key)).await;
                    answers.push((response.status(), json!(null)));
                }
                let id = body["id"].as_str().unwrap();
                let deleted = app
                    .delete(&format!("/api/tokens/{id}/"), Some(session))
                    .await;
                answers.push((deleted.status(), json!(null)));
            }
            if round % 4 == 0 {
                let login = app
                    .post(
                        "/api/token/",
                        None,
                        json!({ "username": format!("user{user}"), "password": PASSWORD }),
                    )
                    .await;
                answers.push(status_and_json(login).await);
            }
            answers
        })
    });
    let answers: Vec<_> = futures_util::future::join_all(work)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert!(
        answers.len() > 100,
        "enough requests ran: {}",
        answers.len()
    );
    for (status, body) in &answers {
        assert!(
            status.is_success() && !body.to_string().contains("locked"),
            "every concurrent request must succeed: {status} {body}"
        );
    }
}

/// A flush takes uses out of memory and then writes them: a listing read in between must still
/// show the use (it was shown as "never" once, in the browser test). With a flush every few
/// milliseconds, many fresh uses each land in some flush's window.
async fn a_use_is_listed_while_its_flush_is_writing_it(backend: Backend) {
    let app = spawn_app_with(backend, |settings| {
        settings.last_used_flush = Duration::from_millis(3)
    })
    .await;
    let session = app.create_user("alice", false).await;
    for round in 0..40 {
        let name = format!("sensor {round}");
        let device = app.create_token(&session, &name).await;
        assert_eq!(app.me_status(&device.key).await, StatusCode::OK);
        // Listed several times while flushes come and go, from memory or from the database.
        for look in 0..5 {
            assert!(
                listed_last_use(&app, &session, &name).await.is_string(),
                "{name}: its use is listed (look {look}), whether or not a flush is writing it"
            );
        }
    }
}
