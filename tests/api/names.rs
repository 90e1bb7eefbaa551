//! Look-alike names (issue 11 finding 4) over HTTP: invisible characters refused in token names
//! and usernames, emoji names kept, look-alikes refused as taken (also when racing), older rows
//! given skeletons at start, and invisible characters shown as escapes in the audit log.

use futures_util::future::join_all;
use reqwest::StatusCode;
use sea_orm::ConnectionTrait;
use serde_json::json;

use crate::audit::audit_log;
use crate::helpers::{
    Backend, PASSWORD, TestApp, spawn_app, start, status_and_json, test_settings,
};
use crate::on_every_backend;

on_every_backend!(
    names_with_invisible_characters_are_refused_and_emoji_names_kept,
    look_alike_token_names_and_usernames_are_taken,
    racing_look_alikes_give_one_201_and_the_rest_409,
    rows_from_before_the_skeletons_get_theirs_at_start,
    the_audit_log_shows_invisible_characters_as_escapes,
);

const INVISIBLE: [char; 8] = [
    '\u{00AD}',
    '\u{034F}',
    '\u{FE0F}',
    '\u{E0061}',
    '\u{200C}',
    '\u{3164}',
    '\u{2028}',
    '\u{2029}',
];

async fn create_token(app: &TestApp, key: &str, name: &str) -> StatusCode {
    let (status, body) = status_and_json(
        app.post("/api/tokens/", Some(key), json!({ "name": name }))
            .await,
    )
    .await;
    assert!(
        status != StatusCode::INTERNAL_SERVER_ERROR,
        "{name:?}: {body}"
    );
    status
}

async fn create_user(app: &TestApp, username: &str) -> StatusCode {
    let body = json!({ "username": username, "password": PASSWORD });
    let (status, body) = status_and_json(
        app.post("/api/admin/users/", Some(&app.admin_key), body)
            .await,
    )
    .await;
    assert!(
        status != StatusCode::INTERNAL_SERVER_ERROR,
        "{username:?}: {body}"
    );
    status
}

async fn names_with_invisible_characters_are_refused_and_emoji_names_kept(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.create_user("alice", false).await;
    for c in INVISIBLE {
        assert_eq!(
            create_token(&app, &alice, &format!("thermo{c}stat")).await,
            StatusCode::BAD_REQUEST,
            "U+{:04X} in a token name renders as nothing or a blank",
            c as u32
        );
        assert_eq!(
            create_user(&app, &format!("bo{c}b")).await,
            StatusCode::BAD_REQUEST,
            "U+{:04X} in a username",
            c as u32
        );
    }
    assert_eq!(
        create_user(&app, "bob\u{3164}").await,
        StatusCode::BAD_REQUEST,
        "a trailing Hangul filler would show as plain bob"
    );
    for name in ["🌡️", "👨‍👩‍👧", "Küche 🌡️ sensor", "👍🏽"] {
        assert_eq!(
            create_token(&app, &alice, name).await,
            StatusCode::CREATED,
            "{name:?} is a valid emoji name"
        );
    }
}

async fn look_alike_token_names_and_usernames_are_taken(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.create_user("alice", false).await;
    assert_eq!(
        create_token(&app, &alice, "thermostat").await,
        StatusCode::CREATED
    );
    for look_alike in [
        "Thermostat",
        "ｔｈｅｒｍｏｓｔａｔ",
        "thermοstat",
        "THERMOSTAT",
    ] {
        assert_eq!(
            create_token(&app, &alice, look_alike).await,
            StatusCode::CONFLICT,
            "{look_alike:?} looks like thermostat"
        );
    }
    assert_eq!(create_token(&app, &alice, "🌡").await, StatusCode::CREATED);
    assert_eq!(
        create_token(&app, &alice, "🌡️").await,
        StatusCode::CONFLICT,
        "with or without its presentation selector, one emoji"
    );
    let bob = app.create_user("bob", false).await;
    assert_eq!(
        create_token(&app, &bob, "thermostat").await,
        StatusCode::CREATED,
        "another owner may use the name"
    );
    for look_alike in ["аlice", "ALICE", "ａｌｉｃｅ"] {
        assert_eq!(
            create_user(&app, look_alike).await,
            StatusCode::CONFLICT,
            "{look_alike:?} looks like alice"
        );
    }
    assert_eq!(
        create_user(&app, "B0B").await,
        StatusCode::CONFLICT,
        "B0B looks like bob"
    );
}

async fn racing_look_alikes_give_one_201_and_the_rest_409(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.create_user("alice", false).await;
    let spellings = [
        "sensor",
        "Sensor",
        "SENSOR",
        "ѕensor",
        "sеnsor",
        "ｓｅｎｓｏｒ",
    ];
    let statuses =
        join_all((0..18).map(|i| create_token(&app, &alice, spellings[i % spellings.len()]))).await;
    let created = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    let taken = statuses
        .iter()
        .filter(|s| **s == StatusCode::CONFLICT)
        .count();
    assert_eq!(
        (created, taken),
        (1, 17),
        "look-alikes at once: one wins, the unique index refuses the rest: {statuses:?}"
    );
}

async fn rows_from_before_the_skeletons_get_theirs_at_start(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.create_user("alice", false).await;
    assert_eq!(
        create_token(&app, &alice, "thermostat").await,
        StatusCode::CREATED
    );
    let db = app.db().await;
    for sql in [
        "UPDATE tokens SET name_skeleton = NULL",
        "UPDATE users SET username_skeleton = NULL",
    ] {
        db.execute_unprepared(sql).await.unwrap();
    }
    db.close().await.unwrap();
    let database = app.stop().await;
    let settings = test_settings(&database.url);
    let app = start(database, &settings).await;
    let alice = app.login("alice", PASSWORD).await;
    assert_eq!(
        create_token(&app, &alice, "Thermostat").await,
        StatusCode::CONFLICT,
        "the older token got its skeleton at start"
    );
    assert_eq!(
        create_user(&app, "аlice").await,
        StatusCode::CONFLICT,
        "the older user got its skeleton at start"
    );
}

async fn the_audit_log_shows_invisible_characters_as_escapes(backend: Backend) {
    let app = spawn_app(backend).await;
    assert!(
        app.try_login("admin\u{AD}", "wrong password")
            .await
            .is_err()
    );
    let log = audit_log(&app).await;
    let failed: Vec<_> = log
        .iter()
        .filter(|e| e["action"] == "login.failed")
        .map(|e| e["target_name"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        failed.iter().any(|name| name == r"admin\u{ad}"),
        "a soft hyphen shows as an escape: {failed:?}"
    );
    assert!(
        !failed
            .iter()
            .any(|name| name == "admin" || name == "admin\u{AD}"),
        "no failed login reads as user admin: {failed:?}"
    );
}
