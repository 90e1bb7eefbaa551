//! Per-token policy over HTTP: read-only, networks (with `X-Forwarded-For` from a trusted proxy),
//! pinning, limited uses under concurrency, idle expiry, scopes at forward-auth, and PATCH.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, spawn_app, spawn_app_with, status_and_json};
use crate::on_every_backend;

on_every_backend!(
    a_read_only_token_reads_and_logs_itself_out_but_writes_nothing,
    networks_are_normalized_checked_and_refused_when_malformed,
    a_pinned_token_works_only_from_its_first_address,
    fifty_concurrent_uses_of_a_ten_use_token_give_exactly_ten_successes,
    a_token_unused_longer_than_its_idle_expiry_has_expired,
    forward_auth_requires_scopes_and_refuses_read_only_writes,
    a_patch_changes_the_policy_for_the_very_next_request,
    introspection_shows_the_policy_and_takes_no_use,
    answers_to_an_expiring_token_say_when_it_expires,
    new_device_tokens_get_the_configured_idle_expiry_unless_told_otherwise,
    refused_attempts_are_recorded_once_a_minute_per_reason_and_address,
    every_bad_policy_value_is_a_400_naming_its_field_and_both_creation_endpoints_take_a_policy,
    refused_requests_take_no_use_metadata_stays_out_of_headers_and_a_read_only_admin_introspects,
);

/// Creates a device token with `policy` (merged into the request) and returns (id, key, answer).
async fn create(app: &TestApp, owner: &str, name: &str, policy: Value) -> (String, String, Value) {
    let mut body = json!({ "name": name });
    body.as_object_mut()
        .unwrap()
        .extend(policy.as_object().unwrap().clone());
    let (status, created) =
        status_and_json(app.post("/api/tokens/", Some(owner), body).await).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    (
        created["id"].as_str().unwrap().to_owned(),
        created["id_token"].as_str().unwrap().to_owned(),
        created,
    )
}

/// `GET /api/me/` as if from `client` behind the trusted proxy (the test's loopback).
async fn me_from(app: &TestApp, key: &str, client: &str) -> StatusCode {
    app.client
        .get(app.url("/api/me/"))
        .header("Authorization", format!("Token {key}"))
        .header("X-Forwarded-For", client)
        .send()
        .await
        .unwrap()
        .status()
}

/// A write: creating a token with a fresh name.
async fn write(app: &TestApp, key: &str) -> StatusCode {
    let name = format!("n{}", uuid::Uuid::now_v7());
    app.post("/api/tokens/", Some(key), json!({ "name": name }))
        .await
        .status()
}

async fn behind_proxy(backend: Backend) -> TestApp {
    spawn_app_with(backend, |settings| {
        settings.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await
}

async fn a_read_only_token_reads_and_logs_itself_out_but_writes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let owner = app.create_user("alice", false).await;
    let (_, key, created) = create(&app, &owner, "thermostat", json!({"read_only": true})).await;
    assert_eq!(created["read_only"], true, "{created}");

    let (status, me) = status_and_json(app.get("/api/me/", Some(&key)).await).await;
    assert_eq!(status, StatusCode::OK, "a read-only token reads: {me}");
    assert_eq!(me["token"]["read_only"], true, "{me}");

    let (status, body) = status_and_json(
        app.post("/api/tokens/", Some(&key), json!({"name": "x"}))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"], "This token is read-only");
    let (status, _) =
        status_and_json(app.post("/api/logout-all/", Some(&key), json!({})).await).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "logging everyone out is a write"
    );
    assert_eq!(
        app.me_status(&owner).await,
        StatusCode::OK,
        "the owner's session survived"
    );

    let (status, body) =
        status_and_json(app.post("/api/logout/", Some(&key), json!({})).await).await;
    assert_eq!(status, StatusCode::OK, "it may log itself out: {body}");
    assert_eq!(app.me_status(&key).await, StatusCode::UNAUTHORIZED);
}

async fn networks_are_normalized_checked_and_refused_when_malformed(backend: Backend) {
    let app = behind_proxy(backend).await;
    let owner = app.create_user("alice", false).await;
    let (_, key, created) = create(
        &app,
        &owner,
        "ci",
        json!({"allowed_ips": ["203.0.113.0/24", "2001:db8::1"]}),
    )
    .await;
    assert_eq!(
        created["allowed_ips"],
        json!(["203.0.113.0/24", "2001:db8::1/128"]),
        "stored normalized"
    );
    assert_eq!(me_from(&app, &key, "203.0.113.7").await, StatusCode::OK);
    assert_eq!(me_from(&app, &key, "2001:db8::1").await, StatusCode::OK);
    assert_eq!(
        me_from(&app, &key, "198.51.100.1").await,
        StatusCode::UNAUTHORIZED,
        "outside its networks"
    );
    let response = app
        .client
        .get(app.url("/api/me/"))
        .header("Authorization", format!("Token {key}"))
        .header("X-Forwarded-For", "198.51.100.1")
        .send()
        .await
        .unwrap();
    let (_, body) = status_and_json(response).await;
    assert_eq!(body["error"], "Invalid or Inactive Token", "{body}");

    for (bad, why) in [
        (json!({"allowed_ips": ["10.0.0.1/8"]}), "host bits set"),
        (json!({"allowed_ips": ["not an address"]}), "no address"),
        (
            json!({"allowed_ips": ["10.0.0.0/8"], "pin_ip": true}),
            "pin beside networks",
        ),
    ] {
        let mut body = json!({"name": "bad"});
        body.as_object_mut()
            .unwrap()
            .extend(bad.as_object().unwrap().clone());
        let (status, answer) =
            status_and_json(app.post("/api/tokens/", Some(&owner), body).await).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{why}: {answer}");
        assert!(
            answer["fields"].is_object(),
            "{why}: the fields are named: {answer}"
        );
    }
}

async fn a_pinned_token_works_only_from_its_first_address(backend: Backend) {
    let app = behind_proxy(backend).await;
    let owner = app.create_user("alice", false).await;
    let (id, key, _) = create(&app, &owner, "sensor", json!({"pin_ip": true})).await;
    assert_eq!(
        me_from(&app, &key, "203.0.113.7").await,
        StatusCode::OK,
        "first use pins"
    );
    assert_eq!(
        me_from(&app, &key, "198.51.100.1").await,
        StatusCode::UNAUTHORIZED,
        "pinned elsewhere"
    );
    assert_eq!(me_from(&app, &key, "203.0.113.7").await, StatusCode::OK);
    let (_, listed) = status_and_json(app.get("/api/tokens/", Some(&owner)).await).await;
    let sensor = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(sensor["allowed_ips"], json!(["203.0.113.7/32"]), "{sensor}");
}

async fn fifty_concurrent_uses_of_a_ten_use_token_give_exactly_ten_successes(backend: Backend) {
    let app = spawn_app(backend).await;
    let owner = app.create_user("alice", false).await;
    let (id, key, created) = create(&app, &owner, "provisioner", json!({"max_uses": 10})).await;
    assert_eq!(created["remaining_uses"], 10, "{created}");
    let statuses = futures_util::future::join_all((0..50).map(|_| app.me_status(&key))).await;
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    assert_eq!(
        (ok, refused),
        (10, 40),
        "exactly the limit succeeds: {statuses:?}"
    );
    let (_, listed) = status_and_json(app.get("/api/tokens/", Some(&owner)).await).await;
    let token = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(token["remaining_uses"], 0, "{token}");
}

async fn a_token_unused_longer_than_its_idle_expiry_has_expired(backend: Backend) {
    use multitoken::entities::tokens;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
    let app = spawn_app(backend).await;
    let owner = app.create_user("alice", false).await;
    let (idle, idle_key, created) =
        create(&app, &owner, "idle", json!({"idle_expiry_days": 1})).await;
    assert_eq!(created["idle_expiry_days"], 1, "{created}");
    let (_, fresh_key, _) = create(&app, &owner, "fresh", json!({"idle_expiry_days": 1})).await;
    // Made two days ago and never used since (before any request could cache it).
    let two_days_ago = chrono::Utc::now() - chrono::TimeDelta::days(2);
    tokens::Entity::update_many()
        .col_expr(tokens::Column::CreatedAt, Expr::value(two_days_ago))
        .filter(tokens::Column::Id.eq(idle.parse::<uuid::Uuid>().unwrap()))
        .exec(&app.db().await)
        .await
        .unwrap();
    let (status, body) = status_and_json(app.get("/api/me/", Some(&idle_key)).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "Token has expired");
    assert_eq!(
        app.me_status(&fresh_key).await,
        StatusCode::OK,
        "a day has not passed"
    );
}

async fn forward_auth_requires_scopes_and_refuses_read_only_writes(backend: Backend) {
    let app = spawn_app(backend).await;
    let owner = app.create_user("alice", false).await;
    let (_, key, _) = create(
        &app,
        &owner,
        "partner",
        json!({"scopes": ["orders", "orders:read"], "read_only": true}),
    )
    .await;
    let verify = |path: &'static str, method: Option<&'static str>| {
        let mut request = app
            .client
            .get(app.url(path))
            .header("Authorization", format!("Bearer {key}"));
        if let Some(method) = method {
            request = request.header("X-Original-Method", method);
        }
        request.send()
    };
    let response = verify("/auth/verify?scope=orders", None).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers();
    assert_eq!(headers["x-auth-scopes"], "orders orders:read");
    assert_eq!(headers["x-auth-read-only"], "true");
    assert_eq!(headers["x-auth-token-kind"], "device");
    assert!(
        headers.get("x-auth-expires-at").is_none(),
        "it never expires"
    );

    let response = verify("/auth/verify?scope=orders&scope=billing", None)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        response.headers()["www-authenticate"],
        r#"Bearer error="insufficient_scope", scope="orders billing""#
    );
    let (_, body) = status_and_json(response).await;
    assert_eq!(body["error"], "Insufficient scope");

    let response = verify("/auth/verify", Some("POST")).await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::FORBIDDEN,
        "a write through the proxy"
    );
    let (_, body) = status_and_json(response).await;
    assert_eq!(body["error"], "This token is read-only");
    let response = verify("/auth/verify", Some("GET")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

async fn a_patch_changes_the_policy_for_the_very_next_request(backend: Backend) {
    let app = spawn_app(backend).await;
    let owner = app.create_user("alice", false).await;
    let other = app.create_user("bob", false).await;
    let (id, key, _) = create(&app, &owner, "laptop", json!({})).await;
    assert_eq!(
        write(&app, &key).await,
        StatusCode::CREATED,
        "full access first"
    );

    let (status, changed) = app
        .patch_token(
            &owner,
            &id,
            json!({"read_only": true, "description": "read only now", "metadata": {"room": 4}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["read_only"], true);
    assert_eq!(changed["description"], "read only now");
    assert_eq!(changed["metadata"], json!({"room": 4}));
    assert_eq!(
        write(&app, &key).await,
        StatusCode::FORBIDDEN,
        "the very next request"
    );

    let (status, body) = app
        .patch_token(&other, &id, json!({"read_only": false}))
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "another user's token: {body}"
    );
    let (status, body) = app
        .patch_token(&owner, &id, json!({"scopes": ["no spaces allowed"]}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = app
        .patch_token(&owner, &id, json!({"read_only": false}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        write(&app, &key).await,
        StatusCode::CREATED,
        "writable again"
    );
}

async fn introspection_shows_the_policy_and_takes_no_use(backend: Backend) {
    let app = spawn_app(backend).await;
    let owner = app.create_user("alice", false).await;
    let (_, key, _) = create(
        &app,
        &owner,
        "partner",
        json!({"scopes": ["orders"], "metadata": {"partner": "acme"}, "max_uses": 2}),
    )
    .await;
    for _ in 0..3 {
        let (status, body) = status_and_json(
            app.post(
                "/api/introspect/",
                Some(&app.admin_key),
                json!({ "token": key }),
            )
            .await,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["active"], true, "{body}");
        assert_eq!(body["scope"], "orders");
        assert_eq!(body["read_only"], false);
        assert_eq!(body["metadata"], json!({"partner": "acme"}));
        assert_eq!(
            body["remaining_uses"], 2,
            "introspecting takes no use: {body}"
        );
    }
    assert_eq!(app.me_status(&key).await, StatusCode::OK);
    assert_eq!(app.me_status(&key).await, StatusCode::OK);
    assert_eq!(
        app.me_status(&key).await,
        StatusCode::UNAUTHORIZED,
        "two uses, then none"
    );
}

async fn answers_to_an_expiring_token_say_when_it_expires(backend: Backend) {
    let app = spawn_app(backend).await;
    let session = app.create_user("alice", false).await;
    let response = app.get("/api/me/", Some(&session)).await;
    let header = response
        .headers()
        .get("x-token-expires-at")
        .expect("a session token expires: the answer says when")
        .to_str()
        .unwrap()
        .to_owned();
    let (_, me) = status_and_json(response).await;
    let stated = chrono::DateTime::parse_from_rfc3339(&header).expect("RFC 3339");
    let listed =
        chrono::DateTime::parse_from_rfc3339(me["token"]["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(stated, listed, "the header is the token's expiry");
    let device = app.create_token(&session, "thermostat").await;
    let response = app.get("/api/me/", Some(&device.key)).await;
    assert!(
        response.headers().get("x-token-expires-at").is_none(),
        "a token that never expires gets no such header"
    );
}

async fn new_device_tokens_get_the_configured_idle_expiry_unless_told_otherwise(backend: Backend) {
    let app = spawn_app_with(backend, |settings| {
        settings.device_idle_expiry = Some(std::time::Duration::from_secs(90 * 86_400));
    })
    .await;
    let owner = app.create_user("alice", false).await;
    let (_, _, defaulted) = create(&app, &owner, "sensor", json!({})).await;
    assert_eq!(defaulted["idle_expiry_days"], 90, "{defaulted}");
    let (_, _, opted_out) = create(&app, &owner, "server", json!({"idle_expiry_days": null})).await;
    assert_eq!(opted_out["idle_expiry_days"], Value::Null, "{opted_out}");
    let (status, body) = status_and_json(
        app.post(
            "/api/non-expiring-token/",
            None,
            json!({"username": "alice", "password": crate::helpers::PASSWORD, "token_name": "car"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, listed) = status_and_json(app.get("/api/tokens/", Some(&owner)).await).await;
    let car = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "car")
        .unwrap()
        .clone();
    assert_eq!(car["idle_expiry_days"], 90, "every new device token: {car}");
    let session = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["kind"] == "session")
        .unwrap()
        .clone();
    assert_eq!(
        session["idle_expiry_days"],
        Value::Null,
        "not sessions: {session}"
    );
}

async fn refused_attempts_are_recorded_once_a_minute_per_reason_and_address(backend: Backend) {
    use multitoken::entities::audit_events;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let app = spawn_app_with(backend, |settings| {
        settings.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        settings.last_used_flush = std::time::Duration::from_secs(3600);
    })
    .await;
    let owner = app.create_user("alice", false).await;
    let (id, key, _) = create(
        &app,
        &owner,
        "ci",
        json!({"allowed_ips": ["203.0.113.0/24"], "read_only": true}),
    )
    .await;
    // Recording is per clock minute: start early in one, so the attempts below share it.
    let second = chrono::Timelike::second(&chrono::Utc::now());
    if second > 45 {
        tokio::time::sleep(std::time::Duration::from_secs(u64::from(61 - second))).await;
    }
    for _ in 0..20 {
        assert_eq!(
            me_from(&app, &key, "198.51.100.1").await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        me_from(&app, &key, "198.51.100.2").await,
        StatusCode::UNAUTHORIZED
    );
    for _ in 0..5 {
        let response = app
            .client
            .post(app.url("/api/tokens/"))
            .header("Authorization", format!("Token {key}"))
            .header("X-Forwarded-For", "203.0.113.9")
            .json(&json!({"name": "x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
    }
    assert_eq!(me_from(&app, &key, "203.0.113.9").await, StatusCode::OK);
    // Written in batches: the stop writes what is held.
    let database = app.stop().await;
    let db = sea_orm::Database::connect(database.url.as_str())
        .await
        .unwrap();
    let events = audit_events::Entity::find()
        .filter(audit_events::Column::Action.eq("token.refused"))
        .all(&db)
        .await
        .unwrap();
    let mut details: Vec<String> = events
        .iter()
        .map(|event| {
            assert_eq!(event.target_id.map(|t| t.to_string()), Some(id.clone()));
            event.detail.clone().unwrap_or_default()
        })
        .collect();
    details.sort();
    assert_eq!(
        details,
        [
            "outside its allowed networks (from 198.51.100.1)",
            "outside its allowed networks (from 198.51.100.2)",
            "read-only token, a write (from 203.0.113.9)",
        ],
        "one event per reason and address in the minute, however many attempts"
    );
    db.close().await.ok();
}

async fn every_bad_policy_value_is_a_400_naming_its_field_and_both_creation_endpoints_take_a_policy(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let owner = app.create_user("alice", false).await;
    let long_metadata = json!({"blob": "x".repeat(5000)});
    let cases = [
        (
            json!({"read_only": "maybe"}),
            "read_only",
            "a string for a bool",
        ),
        (
            json!({"max_uses": 2.5}),
            "max_uses",
            "a fraction for a count",
        ),
        (json!({"max_uses": -1}), "max_uses", "a negative count"),
        (
            json!({"scopes": {"a": 1}}),
            "scopes",
            "an object for a list",
        ),
        (
            json!({"scopes": ["has space"]}),
            "scopes",
            "a scope with a space",
        ),
        (
            json!({"scopes": ["x".repeat(65)]}),
            "scopes",
            "a scope of 65 characters",
        ),
        (
            json!({"allowed_ips": "10.0.0.0/8"}),
            "allowed_ips",
            "a string for a list",
        ),
        (
            json!({"idle_expiry_days": 0}),
            "idle_expiry_days",
            "idle expiry 0",
        ),
        (
            json!({"idle_expiry_days": 3651}),
            "idle_expiry_days",
            "idle expiry past ten years",
        ),
        (
            json!({"description": "d".repeat(501)}),
            "description",
            "a description of 501 characters",
        ),
        (
            json!({"metadata": [1]}),
            "metadata",
            "metadata that is no object",
        ),
        (
            json!({"metadata": long_metadata}),
            "metadata",
            "metadata over 4 KiB",
        ),
    ];
    for (policy, field, why) in cases {
        let mut body = json!({"name": "bad"});
        body.as_object_mut()
            .unwrap()
            .extend(policy.as_object().unwrap().clone());
        for path in ["/api/tokens/", "/api/non-expiring-token/"] {
            let mut body = body.clone();
            if path == "/api/non-expiring-token/" {
                body["username"] = json!("alice");
                body["password"] = json!(crate::helpers::PASSWORD);
                body["token_name"] = json!("bad");
            }
            let key = (path == "/api/tokens/").then_some(owner.as_str());
            let (status, answer) = status_and_json(app.post(path, key, body).await).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{why} at {path}: {answer}");
            assert!(
                answer["fields"].get(field).is_some(),
                "{why} at {path}: the answer names {field}: {answer}"
            );
        }
    }
    let (_, listed) = status_and_json(app.get("/api/tokens/", Some(&owner)).await).await;
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["name"] != "bad"),
        "nothing was created: {listed}"
    );

    // The recipe's endpoint takes a policy like POST /api/tokens/ does.
    let (status, body) = status_and_json(
        app.post(
            "/api/non-expiring-token/",
            None,
            json!({"username": "alice", "password": crate::helpers::PASSWORD, "token_name": "probe",
                   "read_only": true, "scopes": ["telemetry"], "max_uses": 2}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let key = body["id_token"].as_str().unwrap();
    let (_, me) = status_and_json(app.get("/api/me/", Some(key)).await).await;
    assert_eq!(me["token"]["read_only"], true, "{me}");
    assert_eq!(me["token"]["scopes"], json!(["telemetry"]), "{me}");
    assert_eq!(
        me["token"]["remaining_uses"], 1,
        "one use taken by this request: {me}"
    );
}

async fn refused_requests_take_no_use_metadata_stays_out_of_headers_and_a_read_only_admin_introspects(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let owner = app.create_user("alice", false).await;
    let (id, key, _) = create(
        &app,
        &owner,
        "limited reader",
        json!({"read_only": true, "scopes": ["orders"], "max_uses": 3,
               "metadata": {"secret-ish": "not for proxies"}}),
    )
    .await;
    // Refused for read-only (our API and the proxy) and for a missing scope: no use taken.
    let write = app
        .post("/api/tokens/", Some(&key), json!({"name": "x"}))
        .await;
    assert_eq!(write.status(), StatusCode::FORBIDDEN);
    for (query, method) in [("?scope=billing", "GET"), ("", "DELETE")] {
        let response = app
            .client
            .get(app.url(&format!("/auth/verify{query}")))
            .header("Authorization", format!("Token {key}"))
            .header("X-Forwarded-Method", method)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{query} {method}");
    }
    let (_, listed) = status_and_json(app.get("/api/tokens/", Some(&owner)).await).await;
    let token = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(token["remaining_uses"], 3, "refusals take no use: {token}");

    // Let through: one use, and the proxy's answer carries no metadata.
    let response = app
        .client
        .get(app.url("/auth/verify?scope=orders"))
        .header("Authorization", format!("Token {key}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    for (name, value) in response.headers() {
        let value = value.to_str().unwrap_or_default();
        assert!(
            !value.contains("not for proxies") && !name.as_str().contains("metadata"),
            "metadata stays out of forward-auth headers: {name}: {value}"
        );
    }
    let (_, me) = status_and_json(app.get("/api/me/", Some(&key)).await).await;
    assert_eq!(me["token"]["remaining_uses"], 1, "two uses taken: {me}");

    // An admin's read-only token may introspect (a POST that only reads).
    let (_, admin_key, _) =
        create(&app, &app.admin_key, "auditor", json!({"read_only": true})).await;
    let (status, body) = status_and_json(
        app.post("/api/introspect/", Some(&admin_key), json!({"token": key}))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["active"], true, "{body}");
    assert_eq!(
        body["metadata"],
        json!({"secret-ish": "not for proxies"}),
        "{body}"
    );
}
