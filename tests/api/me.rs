//! `GET /api/me/`, the answer every device polls. It is rendered once per cached verification
//! and the same bytes are handed to every later hit, so these check that it never shows a token
//! as it no longer is: after a change, a rotation, or a use taken.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, spawn_app, status_and_json, time};
use crate::on_every_backend;

on_every_backend!(
    the_answer_from_the_cache_is_the_one_first_given_and_follows_every_change,
    a_limited_tokens_answer_counts_down_its_uses,
    a_rotated_tokens_previous_key_is_answered_with_its_grace,
);

/// `GET /api/me/` with `key`: the status and the body, after checking the answer's headers.
async fn me(app: &TestApp, key: &str) -> (StatusCode, Value) {
    let response = app.get("/api/me/", Some(key)).await;
    if response.status() == StatusCode::OK {
        let headers = response.headers();
        assert_eq!(headers["content-type"], "application/json", "{headers:?}");
        assert_eq!(headers["cache-control"], "no-store", "{headers:?}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{headers:?}");
    }
    status_and_json(response).await
}

async fn the_answer_from_the_cache_is_the_one_first_given_and_follows_every_change(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let owner = app.create_user("alice", false).await;
    let (id, key) = app
        .create_device(
            &owner,
            json!({"name": "Küche 🌡️", "description": "by the \"window\""}),
        )
        .await;
    let (status, first) = me(&app, &key).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["user"], "alice");
    assert_eq!(first["is_admin"], false);
    let token = &first["token"];
    assert_eq!(token["id"], id.as_str(), "{first}");
    assert_eq!(token["name"], "Küche 🌡️", "{first}");
    assert_eq!(token["kind"], "device", "{first}");
    assert_eq!(token["description"], "by the \"window\"", "{first}");
    assert_eq!(token["read_only"], false, "{first}");
    assert_eq!(token["expires_at"], Value::Null, "{first}");
    for _ in 0..3 {
        let (status, again) = me(&app, &key).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(again, first, "a cached answer is the first one, unchanged");
    }

    // A change is announced like a revocation: the next answer is rendered from the new row.
    let (status, patched) = app
        .patch_token(
            &owner,
            &id,
            json!({"description": "hall", "read_only": true, "scopes": ["telemetry"],
                   "metadata": {"floor": 2}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    let (status, changed) = me(&app, &key).await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["token"]["description"], "hall", "{changed}");
    assert_eq!(changed["token"]["read_only"], true, "{changed}");
    assert_eq!(
        changed["token"]["scopes"],
        json!(["telemetry"]),
        "{changed}"
    );
    assert_eq!(
        changed["token"]["metadata"],
        json!({"floor": 2}),
        "{changed}"
    );
    assert_eq!(
        me(&app, &key).await.1,
        changed,
        "and that one is cached in turn"
    );

    // A deleted token has no answer left to give, cached or not.
    let deleted = app
        .delete(&format!("/api/tokens/{id}/"), Some(&owner))
        .await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let (status, refused) = me(&app, &key).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{refused}");
}

async fn a_limited_tokens_answer_counts_down_its_uses(backend: Backend) {
    let app = spawn_app(backend).await;
    let owner = app.create_user("alice", false).await;
    let (_, key) = app
        .create_device(&owner, json!({"name": "one-off", "max_uses": 3}))
        .await;
    for left in [2, 1, 0] {
        let (status, answer) = me(&app, &key).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(
            answer["token"]["remaining_uses"], left,
            "each answer shows the uses left after its own: {answer}"
        );
    }
    let (status, refused) = me(&app, &key).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "no use left: {refused}");
}

async fn a_rotated_tokens_previous_key_is_answered_with_its_grace(backend: Backend) {
    let app = spawn_app(backend).await;
    let owner = app.create_user("alice", false).await;
    let (id, old) = app
        .create_device(&owner, json!({"name": "thermostat"}))
        .await;
    assert_eq!(me(&app, &old).await.1["token"]["expires_at"], Value::Null);
    let (status, rotated) = status_and_json(
        app.post(
            &format!("/api/tokens/{id}/rotate/"),
            Some(&owner),
            json!({"grace_seconds": 600}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new = rotated["id_token"].as_str().unwrap();
    let grace_ends = time(&rotated["previous_key_expires_at"]);
    for _ in 0..2 {
        let (status, answer) = me(&app, &old).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(
            time(&answer["token"]["expires_at"]),
            grace_ends,
            "the previous key expires with its grace: {answer}"
        );
        let (status, answer) = me(&app, new).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(
            answer["token"]["expires_at"],
            Value::Null,
            "the new key is the token's own, which never expires: {answer}"
        );
    }
}
