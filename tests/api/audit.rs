//! The audit log records what the JSON API does, with actor, target, time and client address.

use std::time::Duration;

use multitoken::entities::tokens;
use reqwest::StatusCode;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
use serde_json::{Value, json};

use crate::helpers::{Backend, PASSWORD, TestApp, spawn_app, spawn_app_with, status_and_json};
use crate::on_every_backend;

/// The log, newest first, through the admin API.
pub async fn audit_log(app: &TestApp) -> Vec<Value> {
    let (status, body) = status_and_json(
        app.get("/api/admin/audit/?limit=1000", Some(&app.admin_key))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body.as_array().expect("a list of events").clone()
}

fn find<'a>(log: &'a [Value], action: &str, target_name: &str) -> Option<&'a Value> {
    log.iter()
        .find(|e| e["action"] == action && e["target_name"] == target_name)
}

fn expect<'a>(log: &'a [Value], action: &str, target_name: &str) -> &'a Value {
    find(log, action, target_name).unwrap_or_else(|| {
        panic!(
            "no {action} event for {target_name:?} in the audit log: {}",
            serde_json::to_string_pretty(log).unwrap()
        )
    })
}

on_every_backend!(
    api_token_actions_are_recorded_with_actor_target_and_address,
    api_user_actions_and_failed_logins_are_recorded,
    the_audit_log_is_for_admins_only,
    logout_everywhere_and_failed_device_token_logins_are_recorded,
    long_expired_tokens_are_swept_and_recorded_as_expired,
    the_log_filters_by_user_action_and_time_and_exports_json_lines,
    events_past_the_retention_are_pruned,
    a_flood_of_failed_logins_from_one_address_is_collapsed_a_minute_at_a_time,
);

async fn api_token_actions_are_recorded_with_actor_target_and_address(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.create_user("alice", false).await;
    let sensor = app.create_token(&alice, "sensor").await;
    let spare = app.create_token(&alice, "spare").await;
    let delete = app
        .delete(&format!("/api/tokens/{}/", sensor.id), Some(&alice))
        .await;
    assert_eq!(delete.status(), StatusCode::NO_CONTENT);
    let revoke = app
        .delete(
            &format!("/api/admin/tokens/{}/", spare.id),
            Some(&app.admin_key),
        )
        .await;
    assert_eq!(revoke.status(), StatusCode::NO_CONTENT);
    let logout = app.post("/api/logout/", Some(&alice), json!({})).await;
    assert_eq!(logout.status(), StatusCode::OK);

    let log = audit_log(&app).await;
    let created = expect(&log, "token.created", "sensor");
    assert_eq!(created["actor"], "alice");
    assert_eq!(created["target_owner"], "alice");
    assert_eq!(
        created["client_address"], "127.0.0.1",
        "the caller's address is kept"
    );
    assert_eq!(created["detail"], "device, never expires");
    let deleted = expect(&log, "token.revoked", "sensor");
    assert_eq!(deleted["actor"], "alice", "the owner deleted it");
    assert_eq!(deleted["target_id"], sensor.id.as_str());
    let revoked = expect(&log, "token.revoked", "spare");
    assert_eq!(revoked["actor"], "admin", "an admin revoked it");
    assert_eq!(revoked["target_owner"], "alice");
    let logged_out = log
        .iter()
        .find(|e| e["action"] == "token.revoked" && e["detail"] == "logged out")
        .expect("logout is recorded as the session token's revocation");
    assert_eq!(logged_out["actor"], "alice");
    let times: Vec<&str> = log
        .iter()
        .map(|e| e["occurred_at"].as_str().unwrap())
        .collect();
    let mut newest_first = times.clone();
    newest_first.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, newest_first, "the log is newest first");
}

async fn api_user_actions_and_failed_logins_are_recorded(backend: Backend) {
    let app = spawn_app(backend).await;
    let bob = app.create_user("bob", false).await;
    app.create_token(&bob, "ci job").await;
    assert!(app.try_login("bob", "wrong password").await.is_err());
    assert!(app.try_login("nobody-here", PASSWORD).await.is_err());
    for action in ["deactivate", "activate"] {
        let response = app
            .post(
                &format!("/api/admin/users/bob/{action}/"),
                Some(&app.admin_key),
                json!({}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK, "{action}");
    }
    let revoke_all = app
        .post(
            "/api/admin/users/bob/revoke-all/",
            Some(&app.admin_key),
            json!({}),
        )
        .await;
    assert_eq!(revoke_all.status(), StatusCode::OK);
    let gone = app
        .delete("/api/admin/users/bob/", Some(&app.admin_key))
        .await;
    assert_eq!(gone.status(), StatusCode::NO_CONTENT);

    let log = audit_log(&app).await;
    assert_eq!(expect(&log, "user.created", "bob")["actor"], "admin");
    assert_eq!(expect(&log, "user.deactivated", "bob")["actor"], "admin");
    assert_eq!(expect(&log, "user.activated", "bob")["actor"], "admin");
    assert_eq!(expect(&log, "user.deleted", "bob")["actor"], "admin");
    let failed = expect(&log, "login.failed", "bob");
    assert_eq!(failed["actor"], "anonymous");
    assert_eq!(failed["detail"], "wrong password", "admins see why");
    assert_eq!(failed["client_address"], "127.0.0.1");
    assert_eq!(
        expect(&log, "login.failed", "nobody-here")["detail"],
        "unknown user"
    );
    let revoked_all: Vec<_> = log
        .iter()
        .filter(|e| e["action"] == "token.revoked" && e["detail"] == "all tokens revoked")
        .collect();
    assert_eq!(
        revoked_all.len(),
        2,
        "one event per token revoked (bob's login session and 'ci job'): {revoked_all:?}"
    );
}

async fn the_audit_log_is_for_admins_only(backend: Backend) {
    let app = spawn_app(backend).await;
    let carol = app.create_user("carol", false).await;
    assert_eq!(
        app.get("/api/admin/audit/", Some(&carol)).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.get("/api/admin/audit/", None).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

async fn long_expired_tokens_are_swept_and_recorded_as_expired(backend: Backend) {
    let app = spawn_app_with(backend, |settings| {
        settings.expiry_sweep_interval = Duration::from_millis(200);
    })
    .await;
    let dave = app.create_user("dave", false).await;
    let old = app.create_token(&dave, "old sensor").await;
    let recent = app.create_token(&dave, "recently expired").await;
    let db = app.db().await;
    for (id, age) in [
        (&old.id, chrono::TimeDelta::days(2)),
        (&recent.id, chrono::TimeDelta::hours(1)),
    ] {
        tokens::Entity::update_many()
            .col_expr(
                tokens::Column::ExpiresAt,
                Expr::value(chrono::Utc::now() - age),
            )
            .filter(tokens::Column::Id.eq(id.parse::<uuid::Uuid>().unwrap()))
            .exec(&db)
            .await
            .unwrap();
    }
    let mut swept = None;
    for _ in 0..50 {
        let log = audit_log(&app).await;
        if let Some(event) = find(&log, "token.expired", "old sensor") {
            swept = Some((event.clone(), log));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (event, log) = swept.expect("the sweeper removes a token expired two days ago");
    assert_eq!(event["actor"], "system");
    assert!(
        find(&log, "token.expired", "recently expired").is_none(),
        "a token expired an hour ago still answers 'Token has expired' and is kept"
    );
    let (status, body) = status_and_json(app.get("/api/me/", Some(&recent.key)).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "Token has expired");
    let (status, _) = status_and_json(app.get("/api/me/", Some(&old.key)).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the swept token is gone");
}

async fn logout_everywhere_and_failed_device_token_logins_are_recorded(backend: Backend) {
    let app = spawn_app(backend).await;
    let uma = app.create_user("uma", false).await;
    app.login("uma", PASSWORD).await;
    let all = app.post("/api/logout-all/", Some(&uma), json!({})).await;
    assert_eq!(all.status(), StatusCode::OK);
    let refused = app
        .post(
            "/api/non-expiring-token/",
            None,
            json!({ "username": "uma", "password": "wrong!", "token_name": "x" }),
        )
        .await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let log = audit_log(&app).await;
    let signed_out = log
        .iter()
        .filter(|e| e["detail"] == "signed out everywhere" && e["target_owner"] == "uma")
        .count();
    assert_eq!(signed_out, 2, "both of uma's sessions: {log:?}");
    assert_eq!(
        expect(&log, "login.failed", "uma")["detail"],
        "wrong password"
    );
}

async fn filtered(app: &TestApp, query: &str) -> (StatusCode, Value) {
    status_and_json(
        app.get(&format!("/api/admin/audit/?{query}"), Some(&app.admin_key))
            .await,
    )
    .await
}

async fn the_log_filters_by_user_action_and_time_and_exports_json_lines(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.create_user("alice", false).await;
    app.create_user("bob", false).await;
    let device = app.create_token(&alice, "thermostat").await;
    assert!(app.try_login("bob", "wrong password").await.is_err());
    let revoked = app
        .delete(
            &format!("/api/admin/tokens/{}/", device.id),
            Some(&app.admin_key),
        )
        .await;
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);

    let (status, events) = filtered(&app, "user=alice").await;
    assert_eq!(status, StatusCode::OK, "{events}");
    let events = events.as_array().unwrap();
    assert!(
        events
            .iter()
            .any(|e| e["action"] == "token.revoked" && e["actor"] == "admin"),
        "an admin's action about alice's token is hers to see: {events:?}"
    );
    for event in events {
        assert!(
            event["actor"] == "alice"
                || event["target_owner"] == "alice"
                || (event["target_type"] == "user" && event["target_name"] == "alice"),
            "only events by or about alice: {event}"
        );
    }
    let (_, failed) = filtered(&app, "action=login.failed").await;
    let failed = failed.as_array().unwrap();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["target_name"], "bob");
    let (_, both) = filtered(&app, "action=login.failed&user=alice").await;
    assert_eq!(both.as_array().unwrap().len(), 0, "filters combine");
    let tomorrow = (chrono::Utc::now() + chrono::TimeDelta::days(1)).date_naive();
    let yesterday = (chrono::Utc::now() - chrono::TimeDelta::days(1)).date_naive();
    let (_, future) = filtered(&app, &format!("since={tomorrow}")).await;
    assert_eq!(
        future.as_array().unwrap().len(),
        0,
        "nothing from tomorrow on"
    );
    let (_, past) = filtered(&app, &format!("until={yesterday}")).await;
    assert_eq!(
        past.as_array().unwrap().len(),
        0,
        "nothing up to yesterday's end"
    );
    let (_, today) = filtered(&app, &format!("since={yesterday}&until={tomorrow}")).await;
    assert!(
        !today.as_array().unwrap().is_empty(),
        "everything is from today"
    );
    for bad in [
        "action=token.exploded",
        "since=yesterday",
        "until=2026-13-01",
    ] {
        let (status, body) = filtered(&app, bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }

    let export = app
        .get("/api/admin/audit/export?user=alice", Some(&app.admin_key))
        .await;
    assert_eq!(export.status(), StatusCode::OK);
    assert_eq!(
        export.headers()["content-type"].to_str().unwrap(),
        "application/x-ndjson"
    );
    let text = export.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    assert_eq!(
        lines.len(),
        events.len(),
        "the export holds what the list shows"
    );
    assert_eq!(lines[0]["id"], events[0]["id"], "in the same order");
    let (status, _) = status_and_json(app.get("/api/admin/audit/export", Some(&alice)).await).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "admins only");
}

async fn events_past_the_retention_are_pruned(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_user("alice", false).await;
    assert!(!audit_log(&app).await.is_empty());
    let database = app.stop().await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut settings = crate::helpers::test_settings(&database.url);
    settings.audit_retention = Duration::from_secs(1);
    let app = crate::helpers::start(database, &settings).await;
    // The sweep runs at start-up, then every interval.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let log = audit_log(&app).await;
        let old = log
            .iter()
            .filter(|e| e["action"] == "user.created" && e["target_name"] == "alice")
            .count();
        if old == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "alice's creation, older than the 1 s retention, is pruned: {log:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn a_flood_of_failed_logins_from_one_address_is_collapsed_a_minute_at_a_time(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.create_user("quinn", false).await;
    // Collapsing is per clock minute: start early in one, so the flood below shares it.
    let second = chrono::Timelike::second(&chrono::Utc::now());
    if second > 40 {
        tokio::time::sleep(Duration::from_secs(u64::from(61 - second))).await;
    }
    for n in 0..12 {
        let name = if n % 2 == 0 { "quinn" } else { "nobody" };
        assert!(app.try_login(name, "guess").await.is_err());
    }
    let (_, events) = status_and_json(
        app.get(
            "/api/admin/audit/?action=login.failed&limit=1000",
            Some(&app.admin_key),
        )
        .await,
    )
    .await;
    let events = events.as_array().unwrap();
    assert_eq!(
        events.len(),
        5,
        "the first five kept one by one, then one counted up: {events:?}"
    );
    let repeats: i64 = events.iter().map(|e| e["repeats"].as_i64().unwrap()).sum();
    assert_eq!(repeats, 12, "every attempt counted: {events:?}");
    assert_eq!(events[0]["repeats"], 8, "the newest stands for the rest");
}
