//! The caller's own device tokens: list, create, delete.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Backend, spawn_app, status_and_json};
use crate::on_every_backend;

on_every_backend!(
    listed_tokens_show_their_prefix_but_never_a_key_or_digest,
    a_created_token_shows_its_key_once_and_expires_when_asked,
    token_names_are_validated_trimmed_and_stored_literally,
    a_deleted_token_no_longer_authenticates,
    another_users_token_looks_missing,
    twenty_concurrent_creates_of_one_name_give_one_201_and_nineteen_409s,
);

async fn listed_tokens_show_their_prefix_but_never_a_key_or_digest(backend: Backend) {
    let app = spawn_app(backend).await;
    let session = app.create_user("alice", false).await;
    let device = app.create_token(&session, "thermostat").await;
    let response = app.get("/api/tokens/", Some(&session)).await;
    let text = response.text().await.unwrap();
    assert!(
        !text.contains(&device.key) && !text.contains(&session),
        "keys must never be listed: {text}"
    );
    let listed: Value = serde_json::from_str(&text).unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2, "{text}");
    let thermostat = listed
        .iter()
        .find(|t| t["name"] == "thermostat")
        .expect("thermostat listed");
    assert_eq!(thermostat["kind"], "device");
    assert_eq!(thermostat["id"], device.id.as_str());
    assert_eq!(
        thermostat["prefix"].as_str().unwrap(),
        &device.key[..11],
        "the display prefix is the key's start"
    );
    assert_eq!(thermostat["expires_at"], Value::Null);
    assert_eq!(thermostat["last_used_at"], Value::Null, "not used yet");
    let mut keys: Vec<_> = thermostat.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "allowed_ips",
            "created_at",
            "description",
            "expires_at",
            "id",
            "idle_expiry_days",
            "kind",
            "last_used_at",
            "last_used_ip",
            "last_used_user_agent",
            "metadata",
            "name",
            "pin_ip",
            "prefix",
            "rate_limit_per_minute",
            "read_only",
            "remaining_uses",
            "scopes"
        ]
    );
    assert!(
        listed.iter().any(|t| t["kind"] == "session"),
        "the login's session token is listed too"
    );

    assert_eq!(app.me_status(&device.key).await, StatusCode::OK);
    let listed: Value = app
        .get("/api/tokens", Some(&session))
        .await
        .json()
        .await
        .unwrap();
    let thermostat = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "thermostat")
        .unwrap();
    assert!(
        thermostat["last_used_at"].is_string(),
        "use is recorded: {thermostat}"
    );
}

async fn a_created_token_shows_its_key_once_and_expires_when_asked(backend: Backend) {
    let app = spawn_app(backend).await;
    let session = app.create_user("bob", false).await;
    let (status, body) = status_and_json(
        app.post(
            "/api/tokens/",
            Some(&session),
            json!({ "name": "ci job", "expires_in_days": 30 }),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["name"], "ci job");
    assert_eq!(body["kind"], "device");
    assert!(body["id"].is_string() && body["created_at"].is_string());
    let expires_at: chrono::DateTime<chrono::Utc> =
        body["expires_at"].as_str().unwrap().parse().unwrap();
    let expected = chrono::Utc::now() + chrono::TimeDelta::days(30);
    assert!(
        (expires_at - expected).num_seconds().abs() < 60,
        "expires in 30 days: {expires_at}"
    );
    let key = body["id_token"].as_str().unwrap();
    assert_eq!(app.me_status(key).await, StatusCode::OK);
    for bad in [
        json!({ "name": "x", "expires_in_days": 0 }),
        json!({ "name": "y", "expires_in_days": -1 }),
        json!({ "name": "z", "expires_in_days": 36501 }),
        json!({ "name": "w", "expires_in_days": "soon" }),
    ] {
        let (status, body) =
            status_and_json(app.post("/api/tokens/", Some(&session), bad.clone()).await).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{bad} must be refused: {body}"
        );
        assert!(body["error"].is_string());
    }
    let form = app
        .client
        .post(app.url("/api/tokens"))
        .bearer_auth(&session)
        .form(&[("name", "from a form"), ("expires_in_days", "7")])
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), StatusCode::CREATED, "form bodies work too");
}

async fn token_names_are_validated_trimmed_and_stored_literally(backend: Backend) {
    let app = spawn_app(backend).await;
    let session = app.create_user("carol", false).await;
    let odd = "  Küche 🌡️ <script>alert(1)</script> Ωμέγα ";
    let (status, body) = status_and_json(
        app.post("/api/tokens/", Some(&session), json!({ "name": odd }))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["name"], odd.trim(), "stored literally, only trimmed");
    let sixty_four = "é".repeat(64);
    let response = app
        .post(
            "/api/tokens/",
            Some(&session),
            json!({ "name": sixty_four }),
        )
        .await;
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "64 characters (128 bytes) is allowed"
    );
    for bad in [
        String::new(),
        "   ".into(),
        "é".repeat(65),
        "nul\u{0}byte".into(),
        "new\nline".into(),
    ] {
        let (status, body) = status_and_json(
            app.post("/api/tokens/", Some(&session), json!({ "name": bad }))
                .await,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:?}: {body}");
        assert!(
            body["fields"]["name"].is_array(),
            "validation errors name the field: {body}"
        );
    }
    let (status, _) = status_and_json(
        app.post(
            "/api/tokens/",
            Some(&session),
            json!({ "name": "Küche 🌡️ <script>alert(1)</script> Ωμέγα" }),
        )
        .await,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "the trimmed name is the stored one"
    );
}

async fn a_deleted_token_no_longer_authenticates(backend: Backend) {
    let app = spawn_app(backend).await;
    let session = app.create_user("dave", false).await;
    let token = app.create_token(&session, "kitchen-sensor").await;
    let response = app
        .delete(&format!("/api/tokens/{}/", token.id), Some(&session))
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.me_status(&token.key).await,
        StatusCode::UNAUTHORIZED,
        "a deleted key must stop working at once"
    );
    let again = app
        .delete(&format!("/api/tokens/{}", token.id), Some(&session))
        .await;
    assert_eq!(again.status(), StatusCode::NOT_FOUND, "deleting twice: 404");
    let (status, body) =
        status_and_json(app.delete("/api/tokens/not-a-uuid/", Some(&session)).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let unauthenticated = app.delete(&format!("/api/tokens/{}", token.id), None).await;
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
}

async fn another_users_token_looks_missing(backend: Backend) {
    let app = spawn_app(backend).await;
    let erin = app.create_user("erin", false).await;
    let frank = app.create_user("frank", false).await;
    let erins = app.create_token(&erin, "car").await;
    let (status, body) = status_and_json(
        app.delete(&format!("/api/tokens/{}/", erins.id), Some(&frank))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(
        app.me_status(&erins.key).await,
        StatusCode::OK,
        "erin's token survives frank's attempt"
    );
    let franks_list: Value = app
        .get("/api/tokens/", Some(&frank))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        franks_list
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["name"] != "car"),
        "frank never sees erin's tokens"
    );
}

async fn twenty_concurrent_creates_of_one_name_give_one_201_and_nineteen_409s(backend: Backend) {
    let app = spawn_app(backend).await;
    let session = app.create_user("grace", false).await;
    let requests =
        (0..20).map(|_| app.post("/api/tokens/", Some(&session), json!({ "name": "race" })));
    let statuses: Vec<StatusCode> = futures_util::future::join_all(requests)
        .await
        .iter()
        .map(|r| r.status())
        .collect();
    let created = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    let conflicts = statuses
        .iter()
        .filter(|s| **s == StatusCode::CONFLICT)
        .count();
    assert_eq!(
        (created, conflicts),
        (1, 19),
        "exactly one winner, the rest 409, no 5xx: {statuses:?}"
    );
    let listed: Value = app
        .get("/api/tokens/", Some(&session))
        .await
        .json()
        .await
        .unwrap();
    let races = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["name"] == "race")
        .count();
    assert_eq!(races, 1, "exactly one row named 'race'");
}
