//! Verification everywhere: forward-auth (`/auth/verify`), introspection (`/api/introspect/`),
//! and the verification cache, which every revocation must invalidate at once.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Backend, PASSWORD, TestApp, spawn_app, spawn_app_with, status_and_json};
use crate::on_every_backend;

on_every_backend!(
    forward_auth_answers_200_with_the_caller_in_safe_headers,
    forward_auth_refuses_with_401_whatever_is_wrong,
    introspection_describes_a_valid_token_in_rfc_7662_shape,
    introspection_answers_only_active_false_for_anything_not_valid,
    introspection_is_for_admins_only,
    a_cached_verification_answers_without_the_database,
    every_revocation_refuses_a_cached_token_on_the_very_next_request,
    a_login_that_evicts_the_oldest_session_refuses_it_at_once,
    a_cached_token_expires_exactly_when_it_should,
    with_the_cache_disabled_every_request_asks_the_database,
    every_miss_is_answered_by_the_direct_lookup_with_every_column_read,
    lookups_cut_short_by_a_bad_request_leave_no_connection_behind,
);

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("header {name} missing from {:?}", response.headers()))
        .to_str()
        .unwrap()
}

async fn forward_auth_answers_200_with_the_caller_in_safe_headers(backend: Backend) {
    let app = spawn_app(backend).await;
    let session = app.create_user("Zoë+ci", false).await;
    let device = app.create_token(&session, "Küche 🌡️ #1").await;
    for method in [Method::GET, Method::HEAD] {
        let response = app
            .request(method.clone(), "/auth/verify", Some(&device.key))
            .await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "{method} with a valid key"
        );
        assert_eq!(
            header(&response, "X-Auth-User"),
            "Zo%C3%AB%2Bci",
            "{method}: non-ASCII and '+' are percent-encoded"
        );
        assert_eq!(header(&response, "X-Auth-Token-Id"), device.id);
        assert_eq!(
            header(&response, "X-Auth-Token-Name"),
            "K%C3%BCche%20%F0%9F%8C%A1%EF%B8%8F%20%231",
            "{method}: a token name in any script becomes a valid header value"
        );
        assert_eq!(header(&response, "X-Auth-Admin"), "false");
        assert!(
            response.bytes().await.unwrap().is_empty(),
            "{method}: the caller is in the headers, not a body"
        );
    }
    let admin = app
        .request(Method::GET, "/auth/verify/", Some(&app.admin_key))
        .await;
    assert_eq!(admin.status(), StatusCode::OK, "trailing slash works too");
    assert_eq!(header(&admin, "X-Auth-User"), "admin");
    assert_eq!(header(&admin, "X-Auth-Admin"), "true");
    let bearer = app
        .client
        .get(app.url("/auth/verify"))
        .bearer_auth(&device.key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        bearer.status(),
        StatusCode::OK,
        "Bearer is accepted as well"
    );
}

async fn forward_auth_refuses_with_401_whatever_is_wrong(backend: Backend) {
    let app = spawn_app(backend).await;
    let session = app.create_user("alice", false).await;
    let revoked = app.create_token(&session, "revoked").await;
    assert_eq!(app.me_status(&revoked.key).await, StatusCode::OK);
    app.delete(&format!("/api/tokens/{}/", revoked.id), Some(&session))
        .await;
    let typo = {
        let mut key = session.clone();
        key.replace_range(5..6, if &key[5..6] == "a" { "b" } else { "a" });
        key
    };
    for (what, key) in [
        ("no key", None),
        ("a malformed key", Some("mt_nonsense")),
        ("a mistyped key", Some(typo.as_str())),
        ("a revoked key", Some(revoked.key.as_str())),
    ] {
        let response = app.request(Method::GET, "/auth/verify", key).await;
        assert!(
            response.headers().get("X-Auth-User").is_none(),
            "{what}: nobody is named on a refusal"
        );
        let (status, body) = status_and_json(response).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "GET with {what}: {body}");
        assert_eq!(body["is_authenticated"], false, "{what}: {body}");
        let head = app.request(Method::HEAD, "/auth/verify", key).await;
        assert_eq!(head.status(), StatusCode::UNAUTHORIZED, "HEAD with {what}");
        assert!(
            head.headers().get("WWW-Authenticate").is_some(),
            "HEAD with {what}: a 401 names its scheme"
        );
        assert_eq!(
            head.headers().get("Content-Type").map(|v| v.as_bytes()),
            Some(&b"application/json"[..]),
            "HEAD with {what}: the headers GET would send, as the document says (found by schemathesis)"
        );
        assert!(
            head.bytes().await.unwrap().is_empty(),
            "HEAD with {what}: no body"
        );
    }
    let wrong_method = app
        .request(Method::POST, "/auth/verify", Some(&session))
        .await;
    assert_eq!(
        wrong_method.status(),
        StatusCode::METHOD_NOT_ALLOWED,
        "forward-auth is GET or HEAD only"
    );
}

async fn introspect(app: &TestApp, caller: Option<&str>, token: &str) -> (StatusCode, Value) {
    let mut request = app
        .client
        .post(app.url("/api/introspect/"))
        .form(&[("token", token)]);
    if let Some(caller) = caller {
        request = request.bearer_auth(caller);
    }
    status_and_json(request.send().await.unwrap()).await
}

async fn introspection_describes_a_valid_token_in_rfc_7662_shape(backend: Backend) {
    let app = spawn_app(backend).await;
    let session = app.create_user("alice", false).await;
    let (status, created) = status_and_json(
        app.post(
            "/api/tokens/",
            Some(&session),
            json!({ "name": "ci job", "expires_in_days": 30 }),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let key = created["id_token"].as_str().unwrap();
    let (status, body) = introspect(&app, Some(&app.admin_key), key).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["active"], true, "{body}");
    assert_eq!(body["username"], "alice");
    assert_eq!(body["token_id"], created["id"]);
    assert_eq!(body["token_name"], "ci job");
    assert_eq!(body["token_kind"], "device");
    assert_eq!(body["is_admin"], false);
    let expires_at = chrono::DateTime::parse_from_rfc3339(created["expires_at"].as_str().unwrap())
        .unwrap()
        .timestamp();
    let created_at = chrono::DateTime::parse_from_rfc3339(created["created_at"].as_str().unwrap())
        .unwrap()
        .timestamp();
    assert_eq!(body["exp"], expires_at, "exp in seconds since the epoch");
    assert_eq!(body["iat"], created_at, "iat in seconds since the epoch");

    let (status, session_body) = status_and_json(
        app.post(
            "/api/introspect",
            Some(&app.admin_key),
            json!({ "token": session }),
        )
        .await,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "JSON is accepted too: {session_body}"
    );
    assert_eq!(session_body["active"], true);
    assert_eq!(session_body["token_kind"], "session");
    let device = app.create_token(&session, "thermostat").await;
    let (_, device_body) = introspect(&app, Some(&app.admin_key), &device.key).await;
    assert!(
        device_body.get("exp").is_none(),
        "a token that never expires has no exp: {device_body}"
    );
}

async fn introspection_answers_only_active_false_for_anything_not_valid(backend: Backend) {
    let mut app = spawn_app_with(backend, |settings| {
        settings.session_ttl = Duration::from_secs(1)
    })
    .await;
    // Sessions last a second, which a loaded machine can spend between two requests: the admin
    // works with a device token instead.
    let (status, body) = status_and_json(
        app.post(
            "/api/non-expiring-token/",
            None,
            json!({ "username": "admin", "password": crate::helpers::ADMIN_PASSWORD, "token_name": "introspection" }),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    app.admin_key = body["id_token"].as_str().unwrap().to_owned();
    let expired = app.create_user("alice", false).await;
    let bob = app.create_user("bob", false).await;
    let revoked = app.create_token(&bob, "revoked").await;
    app.delete(&format!("/api/tokens/{}/", revoked.id), Some(&bob))
        .await;
    let carol = app.create_user("carol", false).await;
    let carols_device = app.create_token(&carol, "car").await;
    let response = app
        .post(
            "/api/admin/users/carol/deactivate/",
            Some(&app.admin_key),
            json!({}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let admin = app.admin_key.clone();
    for (what, token) in [
        ("an expired token", expired.as_str()),
        ("a revoked token", revoked.key.as_str()),
        ("an inactive user's token", carols_device.key.as_str()),
        ("a malformed token", "mt_nope"),
        ("an empty token", ""),
        ("something else entirely", "Bearer xyz"),
    ] {
        let (status, body) = introspect(&app, Some(&admin), token).await;
        assert_eq!(status, StatusCode::OK, "{what}: {body}");
        assert_eq!(
            body,
            json!({ "active": false }),
            "{what}: nothing but active:false"
        );
    }
    let missing = app
        .client
        .post(app.url("/api/introspect/"))
        .bearer_auth(&admin)
        .form(&[("token_type_hint", "access_token")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        missing.status(),
        StatusCode::BAD_REQUEST,
        "the token field is required"
    );
}

async fn introspection_is_for_admins_only(backend: Backend) {
    let app = spawn_app(backend).await;
    let session = app.create_user("alice", false).await;
    let (status, body) = introspect(&app, Some(&session), &session).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a non-admin caller: {body}");
    let (status, body) = introspect(&app, None, &session).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "no caller token: {body}");
    let (status, body) = introspect(&app, Some("mt_wrong"), &session).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a bad caller token: {body}"
    );
}

async fn both_endpoints_are_in_the_openapi_document(app: &TestApp) {
    let (_, document) = status_and_json(app.get("/api/openapi.json", None).await).await;
    let paths = &document["paths"];
    assert!(
        paths["/auth/verify"]["get"].is_object() && paths["/auth/verify"]["head"].is_object(),
        "forward-auth documented for GET and HEAD: {}",
        paths["/auth/verify"]
    );
    assert!(
        paths["/api/introspect"]["post"].is_object(),
        "introspection documented"
    );
}

async fn a_cached_verification_answers_without_the_database(backend: Backend) {
    let app = spawn_app(backend).await;
    both_endpoints_are_in_the_openapi_document(&app).await;
    let session = app.create_user("alice", false).await;
    let device = app.create_token(&session, "thermostat").await;
    assert_eq!(
        app.me_status(&device.key).await,
        StatusCode::OK,
        "first use"
    );
    app.delete_token_row(&device.id).await;
    // Proves the cache is in play, which is why every revocation must go through the services.
    assert_eq!(
        app.me_status(&device.key).await,
        StatusCode::OK,
        "a cached token answers from memory (no revocation was announced)"
    );
    let never_used = app.create_token(&session, "never used").await;
    app.delete_token_row(&never_used.id).await;
    assert_eq!(
        app.me_status(&never_used.key).await,
        StatusCode::UNAUTHORIZED,
        "a token not in the cache is looked up"
    );
}

async fn with_the_cache_disabled_every_request_asks_the_database(backend: Backend) {
    let app = spawn_app_with(backend, |settings| settings.verify_cache = 0).await;
    let session = app.create_user("alice", false).await;
    let device = app.create_token(&session, "thermostat").await;
    assert_eq!(app.me_status(&device.key).await, StatusCode::OK);
    app.delete_token_row(&device.id).await;
    assert_eq!(
        app.me_status(&device.key).await,
        StatusCode::UNAUTHORIZED,
        "without a cache, a row gone is a token gone"
    );
}

/// `/metrics` as an admin reads it.
async fn scraped(app: &TestApp) -> String {
    app.get("/metrics", Some(&app.admin_key))
        .await
        .text()
        .await
        .unwrap()
}

/// A cache miss is read by the backend's direct path (the SQLite file, or a worker's own
/// connections on PostgreSQL and MariaDB), not by the shared pool it falls back to on trouble: a
/// column it could not decode would still answer (through the pool) and only show as a
/// fallback. So every policy column is set, the previous key too, and `/metrics` must count
/// every miss and no fallback.
async fn every_miss_is_answered_by_the_direct_lookup_with_every_column_read(backend: Backend) {
    let app = spawn_app_with(backend, |settings| settings.verify_cache = 0).await;
    let session = app.create_user("dora", false).await;
    let (status, created) = status_and_json(
        app.post(
            "/api/tokens/",
            Some(&session),
            json!({
                "name": "every column",
                "description": "set",
                "expires_in_days": 30,
                "read_only": true,
                "scopes": ["telemetry"],
                "allowed_ips": ["127.0.0.0/8"],
                "idle_expiry_days": 7,
                "max_uses": 1000,
                "metadata": {"room": 4},
                "rate_limit_per_minute": 600,
            }),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let (id, old_key) = (
        created["id"].as_str().unwrap().to_owned(),
        created["id_token"].as_str().unwrap().to_owned(),
    );
    // Rotated by its owner (a full-access session): the old key works through its grace, from
    // the row's previous-key columns.
    let (status, rotated) = status_and_json(
        app.post(
            &format!("/api/tokens/{id}/rotate/"),
            Some(&session),
            json!({"grace_seconds": 3600}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new_key = rotated["id_token"].as_str().unwrap().to_owned();
    let metrics = |text: &str, name: &str| -> u64 {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} in:\n{text}"))
    };
    let before = scraped(&app).await;
    let misses_before = metrics(&before, "multitoken_verify_cache_misses_total");
    for (which, key) in [("new", &new_key), ("old, in its grace", &old_key)] {
        for _ in 0..5 {
            let (status, me) = status_and_json(app.get("/api/me/", Some(key)).await).await;
            assert_eq!(status, StatusCode::OK, "the {which} key: {me}");
            let token = &me["token"];
            assert_eq!(token["name"], "every column", "{me}");
            assert_eq!(token["description"], "set", "{me}");
            assert_eq!(token["read_only"], true, "{me}");
            assert_eq!(token["scopes"], json!(["telemetry"]), "{me}");
            assert_eq!(token["allowed_ips"], json!(["127.0.0.0/8"]), "{me}");
            assert_eq!(token["idle_expiry_days"], 7, "{me}");
            assert_eq!(token["metadata"], json!({"room": 4}), "{me}");
            assert_eq!(token["rate_limit_per_minute"], 600, "{me}");
            assert!(token["expires_at"].is_string(), "{me}");
            assert!(token["remaining_uses"].is_u64(), "{me}");
            assert_eq!(me["user"], "dora", "{me}");
        }
    }
    let after = scraped(&app).await;
    let misses = metrics(&after, "multitoken_verify_cache_misses_total") - misses_before;
    assert!(misses >= 10, "ten requests, ten misses at least: {misses}");
    assert_eq!(
        metrics(&after, "multitoken_verify_direct_lookup_fallbacks_total"),
        0,
        "no miss fell back to the shared pool"
    );
}

/// A request whose query string is refused is answered while its lookup may still be waiting
/// for the database; the lookup is then dropped. On PostgreSQL each worker has only a few
/// connections for lookups: a dropped lookup that kept its place (as one did while connecting)
/// left every later verification waiting for ever once a handful had gone.
async fn lookups_cut_short_by_a_bad_request_leave_no_connection_behind(backend: Backend) {
    let app = spawn_app_with(backend, |settings| settings.verify_cache = 0).await;
    for attempt in 0..40 {
        let response = app.get("/api/admin/tokens/?limit=ten", Some(&app.admin_key));
        let response = tokio::time::timeout(Duration::from_secs(10), response)
            .await
            .unwrap_or_else(|_| panic!("attempt {attempt}: no answer within 10 s"));
        assert_eq!(
            response.status(),
            StatusCode::BAD_REQUEST,
            "attempt {attempt}: a bad limit is a 400"
        );
    }
    let me = tokio::time::timeout(Duration::from_secs(10), app.me_status(&app.admin_key))
        .await
        .expect("a verification after forty cut-short lookups is answered within 10 s");
    assert_eq!(me, StatusCode::OK, "and the key still works");
}

async fn every_revocation_refuses_a_cached_token_on_the_very_next_request(backend: Backend) {
    let app = spawn_app(backend).await;
    // (what, whose key is revoked, method, path with {user} and {device}, body, by the admin)
    let cases = [
        (
            "owner deletes the device token",
            "device",
            Method::DELETE,
            "/api/tokens/{device}/",
            json!(null),
            false,
        ),
        (
            "logout by POST",
            "session",
            Method::POST,
            "/api/logout/",
            json!({}),
            false,
        ),
        (
            "logout by GET",
            "session",
            Method::GET,
            "/api/logout/",
            json!(null),
            false,
        ),
        (
            "logout everywhere",
            "session",
            Method::POST,
            "/api/logout-all/",
            json!({}),
            false,
        ),
        (
            "logout everywhere, devices too",
            "device",
            Method::POST,
            "/api/logout-all/",
            json!({ "include_devices": true }),
            false,
        ),
        (
            "admin revokes the token",
            "device",
            Method::DELETE,
            "/api/admin/tokens/{device}/",
            json!(null),
            true,
        ),
        (
            "admin revokes all of the user's tokens",
            "device",
            Method::POST,
            "/api/admin/users/{user}/revoke-all/",
            json!({}),
            true,
        ),
        (
            "admin deactivates the user",
            "device",
            Method::POST,
            "/api/admin/users/{user}/deactivate/",
            json!({}),
            true,
        ),
        (
            "admin deletes the user",
            "session",
            Method::DELETE,
            "/api/admin/users/{user}/",
            json!(null),
            true,
        ),
    ];
    for (index, (what, victim, method, path, body, by_admin)) in cases.into_iter().enumerate() {
        // A fresh user per case, with a session and a device token, both used (so cached).
        let user = format!("user{index}");
        let session = app.create_user(&user, false).await;
        let device = app.create_token(&session, "device").await;
        let victim_key = if victim == "device" {
            &device.key
        } else {
            &session
        };
        for _ in 0..2 {
            assert_eq!(
                app.me_status(victim_key).await,
                StatusCode::OK,
                "{what}: before"
            );
        }
        let path = path
            .replace("{user}", &user)
            .replace("{device}", &device.id);
        let caller = if by_admin { &app.admin_key } else { &session };
        let mut request = app
            .client
            .request(method, app.url(&path))
            .bearer_auth(caller);
        if !body.is_null() {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        assert!(
            response.status().is_success(),
            "{what}: {path} answered {}",
            response.status()
        );
        assert_eq!(
            app.me_status(victim_key).await,
            StatusCode::UNAUTHORIZED,
            "{what}: the cached token must be refused on the very next request"
        );
        let forward = app
            .request(Method::GET, "/auth/verify", Some(victim_key))
            .await;
        assert_eq!(
            forward.status(),
            StatusCode::UNAUTHORIZED,
            "{what}: forward-auth refuses it too"
        );
    }
}

async fn a_login_that_evicts_the_oldest_session_refuses_it_at_once(backend: Backend) {
    let app = spawn_app_with(backend, |settings| settings.max_tokens_per_user = 2).await;
    let oldest = app.create_user("alice", false).await;
    let second = app.login("alice", PASSWORD).await;
    assert_eq!(app.me_status(&oldest).await, StatusCode::OK, "cached");
    let _third = app.login("alice", PASSWORD).await;
    assert_eq!(
        app.me_status(&oldest).await,
        StatusCode::UNAUTHORIZED,
        "the evicted oldest session is refused at once"
    );
    assert_eq!(
        app.me_status(&second).await,
        StatusCode::OK,
        "only the oldest went"
    );
}

async fn a_cached_token_expires_exactly_when_it_should(backend: Backend) {
    let app = spawn_app_with(backend, |settings| {
        settings.session_ttl = Duration::from_secs(2)
    })
    .await;
    let session = app.create_user("alice", false).await;
    let (_, me) = status_and_json(app.get("/api/me/", Some(&session)).await).await;
    let expires_at: chrono::DateTime<chrono::Utc> =
        me["token"]["expires_at"].as_str().unwrap().parse().unwrap();
    // Cached now; the cache keeps entries for a minute, far past this token's expiry.
    assert_eq!(app.me_status(&session).await, StatusCode::OK);
    let wait = (expires_at - chrono::Utc::now())
        .to_std()
        .unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_millis(50)).await;
    let (status, body) = status_and_json(app.get("/api/me/", Some(&session)).await).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "expired while cached: {body}"
    );
    assert_eq!(body["error"], "Token has expired", "{body}");
    let forward = app
        .request(Method::HEAD, "/auth/verify", Some(&session))
        .await;
    assert_eq!(
        forward.status(),
        StatusCode::UNAUTHORIZED,
        "forward-auth too"
    );
}
