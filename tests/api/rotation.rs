//! Rotation: a new key for the same token (id, name, policy), the previous key working through
//! a grace with `X-Token-Rotated` and `X-Token-Expires-At`, then refused; grace 0; rotating
//! twice; never past the token's expiry; owners, admins and everyone else.

use std::time::Duration;

use chrono::Utc;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::audit::audit_log;
use crate::helpers::{Backend, TestApp, spawn_app, status_and_json, time};
use crate::on_every_backend;

on_every_backend!(
    the_previous_key_works_through_its_grace_with_headers_then_stops,
    grace_zero_ends_the_previous_key_at_once_and_rotating_again_ends_the_one_before,
    a_grace_never_outlives_the_token_and_bad_graces_are_refused,
    only_the_owner_or_an_admin_rotates_and_it_is_audited,
);

async fn rotate(app: &TestApp, caller: &str, path: &str, body: Value) -> (StatusCode, Value) {
    status_and_json(app.post(path, Some(caller), body).await).await
}

/// `GET /api/me/` with `key`: status, `X-Token-Rotated`, `X-Token-Expires-At`, body.
async fn me(app: &TestApp, key: &str) -> (StatusCode, Option<String>, Option<String>, Value) {
    let response = app.get("/api/me/", Some(key)).await;
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|value| value.to_str().unwrap().to_owned())
    };
    let (rotated, expires) = (header("x-token-rotated"), header("x-token-expires-at"));
    let (status, body) = status_and_json(response).await;
    (status, rotated, expires, body)
}

async fn the_previous_key_works_through_its_grace_with_headers_then_stops(backend: Backend) {
    let app = spawn_app(backend).await;
    let owner = app.create_user("alice", false).await;
    let (id, old) = app
        .create_device(
            &owner,
            json!({"name": "thermostat", "scopes": ["schedule"]}),
        )
        .await;
    let (status, rotated) = rotate(
        &app,
        &owner,
        &format!("/api/tokens/{id}/rotate/"),
        json!({"grace_seconds": 2}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    assert_eq!(rotated["id"], id.as_str(), "the same token: {rotated}");
    assert_eq!(rotated["name"], "thermostat");
    let new = rotated["id_token"].as_str().unwrap().to_owned();
    assert_ne!(new, old, "a new key");
    assert!(
        new.starts_with(rotated["prefix"].as_str().unwrap()),
        "{rotated}"
    );
    let grace_ends = time(&rotated["previous_key_expires_at"]);
    let left = grace_ends - Utc::now();
    assert!(
        left > chrono::TimeDelta::zero() && left <= chrono::TimeDelta::seconds(2),
        "the grace is 2 s: {rotated}"
    );

    let (status, flagged, expires, body) = me(&app, &new).await;
    assert_eq!(status, StatusCode::OK, "the new key works: {body}");
    assert_eq!(flagged, None, "the new key is not the rotated one");
    assert_eq!(expires, None, "the token never expires");
    assert_eq!(body["token"]["id"], id.as_str());
    assert_eq!(
        body["token"]["scopes"],
        json!(["schedule"]),
        "the policy stays"
    );

    let (status, flagged, expires, body) = me(&app, &old).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the previous key works during its grace: {body}"
    );
    assert_eq!(flagged.as_deref(), Some("true"), "and says it was replaced");
    assert_eq!(
        expires.map(|at| time(&json!(at))),
        Some(grace_ends),
        "and until when"
    );
    let verified = app
        .client
        .get(app.url("/auth/verify"))
        .header("Authorization", format!("Token {old}"))
        .send()
        .await
        .unwrap();
    assert_eq!(verified.status(), StatusCode::OK);
    assert_eq!(
        verified
            .headers()
            .get("x-token-rotated")
            .map(|v| v.to_str().unwrap()),
        Some("true"),
        "forward-auth tells the upstream app too"
    );
    assert!(verified.headers().get("x-auth-expires-at").is_some());

    tokio::time::sleep(
        (grace_ends - Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(100),
    )
    .await;
    let (status, _, _, body) = me(&app, &old).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the grace is over: {body}"
    );
    let (status, _, _, _) = me(&app, &new).await;
    assert_eq!(status, StatusCode::OK, "the new key goes on");
    let (_, listed) = status_and_json(app.get("/api/tokens/", Some(&owner)).await).await;
    let same: Vec<_> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["name"] == "thermostat")
        .collect();
    assert_eq!(same.len(), 1, "still one token: {listed}");
    assert_eq!(same[0]["id"], id.as_str());
}

async fn grace_zero_ends_the_previous_key_at_once_and_rotating_again_ends_the_one_before(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let owner = app.create_user("alice", false).await;
    let (id, leaked) = app.create_device(&owner, json!({"name": "leaked"})).await;
    assert_eq!(
        app.me_status(&leaked).await,
        StatusCode::OK,
        "cached before"
    );
    let path = format!("/api/tokens/{id}/rotate/");
    let (status, rotated) = rotate(&app, &owner, &path, json!({"grace_seconds": 0})).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    assert_eq!(rotated["previous_key_expires_at"], Value::Null, "{rotated}");
    assert_eq!(
        app.me_status(&leaked).await,
        StatusCode::UNAUTHORIZED,
        "a leaked key is refused on the very next request"
    );
    let first = rotated["id_token"].as_str().unwrap().to_owned();

    let (status, rotated) = rotate(&app, &owner, &path, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let left = time(&rotated["previous_key_expires_at"]) - Utc::now();
    assert!(
        left > chrono::TimeDelta::seconds(3590) && left <= chrono::TimeDelta::seconds(3600),
        "the default grace is an hour: {rotated}"
    );
    let second = rotated["id_token"].as_str().unwrap().to_owned();
    let (status, rotated) = rotate(&app, &owner, &path, json!({"grace_seconds": 600})).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let third = rotated["id_token"].as_str().unwrap().to_owned();
    assert_eq!(
        app.me_status(&first).await,
        StatusCode::UNAUTHORIZED,
        "rotating again ends the previous key at once, whatever grace it had"
    );
    let (status, flagged, _, _) = me(&app, &second).await;
    assert_eq!((status, flagged.as_deref()), (StatusCode::OK, Some("true")));
    assert_eq!(app.me_status(&third).await, StatusCode::OK);
    // An empty body (a bare POST) takes the default grace too.
    let bare = app
        .client
        .post(app.url(&path))
        .bearer_auth(&owner)
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), StatusCode::OK);
}

async fn a_grace_never_outlives_the_token_and_bad_graces_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let owner = app.create_user("alice", false).await;
    let (id, _) = app
        .create_device(&owner, json!({"name": "short", "expires_in_days": 1}))
        .await;
    let path = format!("/api/tokens/{id}/rotate/");
    let (status, rotated) = rotate(&app, &owner, &path, json!({"grace_seconds": 604800})).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let (_, listed) = status_and_json(app.get("/api/tokens/", Some(&owner)).await).await;
    let token = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(
        time(&rotated["previous_key_expires_at"]),
        time(&token["expires_at"]),
        "a week's grace on a token expiring tomorrow ends with the token"
    );
    for bad in [
        json!({"grace_seconds": -1}),
        json!({"grace_seconds": 604801}),
        json!({"grace_seconds": "soon"}),
    ] {
        let (status, body) = rotate(&app, &owner, &path, bad.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(body["fields"]["grace_seconds"].is_array(), "{bad}: {body}");
    }
}

async fn only_the_owner_or_an_admin_rotates_and_it_is_audited(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.create_user("alice", false).await;
    let mallory = app.create_user("mallory", false).await;
    let (id, key) = app.create_device(&alice, json!({"name": "door"})).await;
    let (reader_id, reader) = app
        .create_device(&alice, json!({"name": "reader", "read_only": true}))
        .await;
    let path = format!("/api/tokens/{id}/rotate/");
    let (status, body) = rotate(&app, &mallory, &path, json!({})).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "another user's token looks missing: {body}"
    );
    let (status, body) = rotate(
        &app,
        &mallory,
        &format!("/api/admin/tokens/{id}/rotate/"),
        json!({}),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "the admin route is for admins: {body}"
    );
    let (status, body) = rotate(&app, &reader, &path, json!({})).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a read-only token rotates no other token: {body}"
    );
    let unknown = format!("/api/tokens/{}/rotate/", uuid::Uuid::new_v4());
    assert_eq!(
        rotate(&app, &alice, &unknown, json!({})).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.me_status(&key).await, StatusCode::OK, "nothing changed");

    let (status, rotated) = rotate(
        &app,
        &app.admin_key,
        &format!("/api/admin/tokens/{reader_id}/rotate/"),
        json!({"grace_seconds": 0}),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "an admin rotates anyone's token: {rotated}"
    );
    assert_eq!(app.me_status(&reader).await, StatusCode::UNAUTHORIZED);
    let new = rotated["id_token"].as_str().unwrap();
    let (_, me) = status_and_json(app.get("/api/me/", Some(new)).await).await;
    assert_eq!(me["user"], "alice", "still alice's token: {me}");
    assert_eq!(me["token"]["read_only"], true, "with its policy: {me}");

    let (status, _) = rotate(&app, &alice, &path, json!({"grace_seconds": 60})).await;
    assert_eq!(status, StatusCode::OK);
    let log = audit_log(&app).await;
    let rotations: Vec<_> = log
        .iter()
        .filter(|e| e["action"] == "token.rotated")
        .collect();
    assert_eq!(rotations.len(), 2, "{rotations:?}");
    assert!(
        rotations.iter().any(|e| e["actor"] == "alice"
            && e["target_name"] == "door"
            && e["detail"] == "grace 60 s"),
        "who rotated what, with the grace: {rotations:?}"
    );
    assert!(
        rotations
            .iter()
            .any(|e| e["actor"] == "admin" && e["target_name"] == "reader"),
        "{rotations:?}"
    );
}

mod self_rotation {
    use super::*;

    on_every_backend!(a_device_rotates_its_own_key_and_the_old_one_ends_at_the_new_ones_first_use,);

    async fn a_device_rotates_its_own_key_and_the_old_one_ends_at_the_new_ones_first_use(
        backend: Backend,
    ) {
        let app = spawn_app(backend).await;
        let owner = app.create_user("alice", false).await;
        let (id, old) = app
            .create_device(&owner, json!({"name": "sensor", "read_only": true}))
            .await;
        let (status, rotated) = rotate(
            &app,
            &old,
            "/api/tokens/self/rotate/",
            json!({"grace_seconds": 3600}),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::OK,
            "a read-only token rotates itself: {rotated}"
        );
        assert_eq!(rotated["id"], id.as_str());
        let new = rotated["id_token"].as_str().unwrap().to_owned();
        let (status, flagged, _, _) = me(&app, &old).await;
        assert_eq!(
            (status, flagged.as_deref()),
            (StatusCode::OK, Some("true")),
            "until the new key is used, the old one works (the device may not have stored it)"
        );
        let (status, flagged, _, body) = me(&app, &new).await;
        assert_eq!((status, flagged), (StatusCode::OK, None), "{body}");
        assert_eq!(
            app.me_status(&old).await,
            StatusCode::UNAUTHORIZED,
            "the new key's first use ends the old one, grace or not"
        );
        assert_eq!(app.me_status(&new).await, StatusCode::OK);
        let log = audit_log(&app).await;
        assert!(
            log.iter()
                .any(|e| e["action"] == "token.rotated" && e["target_name"] == "sensor"),
            "audited"
        );
    }
}
