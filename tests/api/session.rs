//! Login, the presented token, logout: the Django recipe's endpoints.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Backend, PASSWORD, spawn_app, spawn_app_with, status_and_json};
use crate::on_every_backend;

on_every_backend!(
    each_login_returns_a_new_session_token_that_expires_after_the_ttl,
    logins_accept_json_and_form_bodies_with_or_without_the_trailing_slash,
    bad_credentials_are_one_indistinguishable_400,
    non_expiring_token_is_created_named_and_unique_per_user,
    me_describes_the_caller_and_the_presented_token,
    missing_malformed_and_unknown_keys_are_401_with_a_challenge,
    an_expired_session_token_is_refused_as_expired,
    logout_deletes_only_the_presented_token_by_post_or_get,
    logout_all_ends_sessions_and_keeps_devices_unless_asked,
    a_login_over_the_limit_evicts_the_oldest_session,
    concurrent_logins_never_take_a_user_over_the_limit,
    a_login_is_refused_when_only_device_tokens_fill_the_limit,
);

async fn each_login_returns_a_new_session_token_that_expires_after_the_ttl(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_user("alice", false).await;
    let (status, first) = status_and_json(
        app.post(
            "/api/token/",
            None,
            json!({ "username": "alice", "password": PASSWORD }),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let (_, second) = status_and_json(
        app.post(
            "/api/token/",
            None,
            json!({ "username": "alice", "password": PASSWORD }),
        )
        .await,
    )
    .await;
    assert_ne!(
        first["id_token"], second["id_token"],
        "every login must issue its own token"
    );
    assert_eq!(first["user"], "alice");
    assert_eq!(first["is_admin"], false);
    assert!(
        first["token_name"]
            .as_str()
            .unwrap()
            .starts_with("session "),
        "{first}"
    );
    let key = first["id_token"].as_str().unwrap();
    assert!(
        key.starts_with("mt_") && key.len() == 39,
        "key format mt_ + 36 chars: {key}"
    );
    let expires_at: chrono::DateTime<chrono::Utc> =
        first["expires_at"].as_str().unwrap().parse().unwrap();
    let in_a_day = chrono::Utc::now() + chrono::TimeDelta::hours(24);
    assert!(
        (expires_at - in_a_day).num_seconds().abs() < 60,
        "session tokens expire after 24 h: {expires_at}"
    );
    assert_eq!(app.me_status(key).await, StatusCode::OK);
    let response = app
        .post(
            "/api/token/",
            None,
            json!({ "username": "alice", "password": PASSWORD }),
        )
        .await;
    let cache_control = response
        .headers()
        .get("cache-control")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(
        cache_control.as_deref(),
        Some("no-store"),
        "an answer carrying a key must not be cached"
    );
}

async fn logins_accept_json_and_form_bodies_with_or_without_the_trailing_slash(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_user("bob", false).await;
    for path in ["/api/token", "/api/token/"] {
        let form = app
            .client
            .post(app.url(path))
            .form(&[("username", "bob"), ("password", PASSWORD)])
            .send()
            .await
            .unwrap();
        assert_eq!(form.status(), StatusCode::OK, "form login at {path}");
        let json = app
            .post(
                path,
                None,
                json!({ "username": "BOB", "password": PASSWORD }),
            )
            .await;
        assert_eq!(
            json.status(),
            StatusCode::OK,
            "JSON login at {path}, username in another case"
        );
    }
}

async fn bad_credentials_are_one_indistinguishable_400(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_user("carol", false).await;
    app.create_user("dave", false).await;
    let response = app
        .post(
            "/api/admin/users/dave/deactivate/",
            Some(&app.admin_key),
            json!({}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let expected = json!({ "error": "Unable to log in with provided credentials.", "is_authenticated": false });
    for (username, password) in [
        ("nobody", PASSWORD),
        ("carol", "wrong password"),
        ("dave", PASSWORD),
        ("", ""),
    ] {
        let (status, body) = status_and_json(
            app.post(
                "/api/token/",
                None,
                json!({ "username": username, "password": password }),
            )
            .await,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "login as {username:?}");
        assert_eq!(
            body, expected,
            "login as {username:?} must not tell why it failed"
        );
        let (status, body) = status_and_json(
            app.post(
                "/api/non-expiring-token/",
                None,
                json!({ "username": username, "password": password, "token_name": "x" }),
            )
            .await,
        )
        .await;
        assert_eq!((status, body), (StatusCode::BAD_REQUEST, expected.clone()));
    }
}

async fn non_expiring_token_is_created_named_and_unique_per_user(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_user("erin", false).await;
    app.create_user("frank", false).await;
    let request = json!({ "username": "erin", "password": PASSWORD, "token_name": "thermostat" });
    let (status, body) = status_and_json(
        app.post("/api/non-expiring-token/", None, request.clone())
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["token_name"], "thermostat");
    assert_eq!(body["user"], "erin");
    assert_eq!(body["is_admin"], false);
    assert!(
        body.get("expires_at").is_none(),
        "a non-expiring token has no expiry: {body}"
    );
    let key = body["id_token"].as_str().unwrap();
    let (_, me) = status_and_json(app.get("/api/me/", Some(key)).await).await;
    assert_eq!(me["token"]["kind"], "device");
    assert_eq!(me["token"]["expires_at"], serde_json::Value::Null);

    let (status, body) =
        status_and_json(app.post("/api/non-expiring-token/", None, request).await).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a second 'thermostat' for erin: {body}"
    );
    let other_user =
        json!({ "username": "frank", "password": PASSWORD, "token_name": "thermostat" });
    let response = app.post("/api/non-expiring-token/", None, other_user).await;
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "names are unique per user, not globally"
    );
    let missing_name = json!({ "username": "frank", "password": PASSWORD });
    let (status, body) = status_and_json(
        app.post("/api/non-expiring-token/", None, missing_name)
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

async fn me_describes_the_caller_and_the_presented_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let key = app.create_user("grace", false).await;
    let device = app.create_token(&key, "partner app").await;
    let (status, body) = status_and_json(app.get("/api/me", Some(&device.key)).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["user"], "grace");
    assert_eq!(body["is_admin"], false);
    assert_eq!(body["token"]["id"], device.id.as_str());
    assert_eq!(body["token"]["name"], "partner app");
    assert_eq!(body["token"]["kind"], "device");
    assert!(body["token"]["created_at"].is_string());
    let (_, admin) = status_and_json(app.get("/api/me/", Some(&app.admin_key)).await).await;
    assert_eq!(admin["is_admin"], true);
    assert_eq!(admin["token"]["kind"], "session");
}

async fn missing_malformed_and_unknown_keys_are_401_with_a_challenge(backend: Backend) {
    let app = spawn_app(backend).await;
    let valid = app.admin_key.clone();
    let unknown_but_well_formed = {
        // Same shape and a valid checksum, but never issued: generated by the real key code.
        multitoken::auth::key::TokenKey::generate()
            .reveal()
            .to_owned()
    };
    let mut typo = valid.clone().into_bytes();
    typo[10] = if typo[10] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();
    let headers: Vec<Option<String>> = vec![
        None,
        Some(String::new()),
        Some("Token".into()),
        Some(format!("Basic {valid}")),
        Some(format!("Token {typo}")),
        Some(format!("Token {unknown_but_well_formed}")),
        Some("Token mt_😀😀😀".into()),
        Some(format!("Token {}", "x".repeat(5000))),
    ];
    for header in headers {
        let mut request = app.client.get(app.url("/api/me/"));
        if let Some(header) = &header {
            request = request.header(
                "Authorization",
                reqwest::header::HeaderValue::from_bytes(header.as_bytes()).unwrap(),
            );
        }
        let response = request.send().await.unwrap();
        let challenge = response.headers().get("www-authenticate").cloned();
        let (status, body) = status_and_json(response).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "header {header:?}");
        assert!(
            challenge.is_some(),
            "a 401 carries WWW-Authenticate (header {header:?})"
        );
        assert_eq!(
            body,
            json!({ "error": "Invalid or Inactive Token", "is_authenticated": false })
        );
    }
    let bearer = app
        .client
        .get(app.url("/api/me/"))
        .bearer_auth(&valid)
        .send()
        .await
        .unwrap();
    assert_eq!(
        bearer.status(),
        StatusCode::OK,
        "Bearer works as well as Token"
    );
}

async fn an_expired_session_token_is_refused_as_expired(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.session_ttl = Duration::from_secs(2)).await;
    let key = app.login("admin", crate::helpers::ADMIN_PASSWORD).await;
    assert_eq!(
        app.me_status(&key).await,
        StatusCode::OK,
        "fresh session works"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (status, body) = status_and_json(app.get("/api/me/", Some(&key)).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body,
        json!({ "error": "Token has expired", "is_authenticated": false })
    );
    let fresh = app.login("admin", crate::helpers::ADMIN_PASSWORD).await;
    assert_eq!(
        app.me_status(&fresh).await,
        StatusCode::OK,
        "logging in again renews access"
    );
}

async fn logout_deletes_only_the_presented_token_by_post_or_get(backend: Backend) {
    let app = spawn_app(backend).await;
    let phone = app.create_user("heidi", false).await;
    let laptop = app.login("heidi", PASSWORD).await;
    let tablet = app.login("heidi", PASSWORD).await;
    let (status, body) =
        status_and_json(app.post("/api/logout/", Some(&phone), json!({})).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({ "detail": "User successfully logged out" }));
    assert_eq!(
        app.me_status(&phone).await,
        StatusCode::UNAUTHORIZED,
        "the logged-out key stops working"
    );
    assert_eq!(
        app.me_status(&laptop).await,
        StatusCode::OK,
        "other sessions are untouched"
    );
    let response = app.get("/api/logout", Some(&tablet)).await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "GET logout still works for old clients"
    );
    assert_eq!(app.me_status(&tablet).await, StatusCode::UNAUTHORIZED);
    assert_eq!(app.me_status(&laptop).await, StatusCode::OK);
    let again = app.post("/api/logout/", Some(&phone), json!({})).await;
    assert_eq!(
        again.status(),
        StatusCode::UNAUTHORIZED,
        "a deleted key cannot log out twice"
    );
}

async fn logout_all_ends_sessions_and_keeps_devices_unless_asked(backend: Backend) {
    let app = spawn_app(backend).await;
    let phone = app.create_user("ivan", false).await;
    let laptop = app.login("ivan", PASSWORD).await;
    let device = app.create_token(&phone, "thermostat").await;
    let other_user = app.create_user("judy", false).await;
    let response = app
        .client
        .post(app.url("/api/logout-all"))
        .bearer_auth(&phone)
        .send()
        .await
        .unwrap();
    let (status, body) = status_and_json(response).await;
    assert_eq!(status, StatusCode::OK, "an empty body is allowed: {body}");
    assert_eq!(body["revoked"], 2, "both sessions: {body}");
    assert!(body["detail"].is_string());
    assert_eq!(app.me_status(&phone).await, StatusCode::UNAUTHORIZED);
    assert_eq!(app.me_status(&laptop).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.me_status(&device.key).await,
        StatusCode::OK,
        "device tokens survive a plain logout-all"
    );
    assert_eq!(
        app.me_status(&other_user).await,
        StatusCode::OK,
        "other users are untouched"
    );

    let session = app.login("ivan", PASSWORD).await;
    let (status, body) = status_and_json(
        app.post(
            "/api/logout-all/",
            Some(&session),
            json!({ "include_devices": true }),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["revoked"], 2, "the session and the device: {body}");
    assert_eq!(app.me_status(&device.key).await, StatusCode::UNAUTHORIZED);
}

async fn a_login_over_the_limit_evicts_the_oldest_session(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.max_tokens_per_user = 3).await;
    let first = app.create_user("kim", false).await;
    let device = app.create_token(&first, "sensor").await;
    let second = app.login("kim", PASSWORD).await;
    // kim now holds 3: first, sensor, second. A new login must push out `first`.
    let third = app.login("kim", PASSWORD).await;
    assert_eq!(
        app.me_status(&first).await,
        StatusCode::UNAUTHORIZED,
        "the oldest session is evicted"
    );
    for key in [&second, &third, &device.key] {
        assert_eq!(
            app.me_status(key).await,
            StatusCode::OK,
            "newer sessions and devices stay"
        );
    }
    let (status, body) = status_and_json(
        app.post(
            "/api/tokens/",
            Some(&third),
            json!({ "name": "one too many" }),
        )
        .await,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a device token over the limit is refused: {body}"
    );
    assert!(body["error"].as_str().unwrap().contains("limit"), "{body}");
    let listed = app
        .get("/api/tokens/", Some(&third))
        .await
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(
        listed.as_array().unwrap().len(),
        3,
        "never more than the limit: {listed}"
    );
}

/// Not a speed claim: a check that an unknown username costs an argon2 verification too. Without
/// the dummy hash an unknown user answers in about a millisecond, a wrong password in tens. The
/// two kinds of login alternate, so noise from other tests hits both alike, and the fastest of
/// each is compared: the floor is what the work itself costs.
#[tokio::test]
async fn an_unknown_username_takes_as_long_as_a_wrong_password() {
    let app = spawn_app(Backend::Sqlite).await;
    app.create_user("known", false).await;
    let timed_login = async |username: &str| {
        let started = std::time::Instant::now();
        let body = json!({ "username": username, "password": "wrong password" });
        let response = app.post("/api/token/", None, body).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        started.elapsed()
    };
    let (mut wrong_password, mut unknown_user) = (Duration::MAX, Duration::MAX);
    for _ in 0..9 {
        wrong_password = wrong_password.min(timed_login("known").await);
        unknown_user = unknown_user.min(timed_login("unknown").await);
    }
    assert!(
        unknown_user * 4 >= wrong_password,
        "unknown user {unknown_user:?} vs wrong password {wrong_password:?}: a timing oracle for usernames"
    );
}

async fn concurrent_logins_never_take_a_user_over_the_limit(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.max_tokens_per_user = 3).await;
    app.create_user("lena", false).await;
    let logins = (0..12).map(|_| {
        app.post(
            "/api/token/",
            None,
            json!({ "username": "lena", "password": PASSWORD }),
        )
    });
    let responses = futures_util::future::join_all(logins).await;
    let mut keys = Vec::new();
    for response in responses {
        let (status, body) = status_and_json(response).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "every login succeeds by evicting an older session: {body}"
        );
        keys.push(body["id_token"].as_str().unwrap().to_owned());
    }
    let mut working = 0;
    for key in &keys {
        if app.me_status(key).await == StatusCode::OK {
            working += 1;
        }
    }
    assert_eq!(working, 3, "exactly the limit's worth of sessions survive");
}

async fn a_login_is_refused_when_only_device_tokens_fill_the_limit(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.max_tokens_per_user = 2).await;
    let session = app.create_user("mona", false).await;
    app.create_token(&session, "sensor").await;
    // At the limit with one session and one device; logging out frees a place for a second device.
    app.post("/api/logout/", Some(&session), json!({})).await;
    let request = json!({ "username": "mona", "password": PASSWORD, "token_name": "camera" });
    let response = app.post("/api/non-expiring-token/", None, request).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let login = json!({ "username": "mona", "password": PASSWORD });
    let (status, body) = status_and_json(app.post("/api/token/", None, login).await).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "device tokens are never evicted for a login: {body}"
    );
    assert!(body["error"].as_str().unwrap().contains("limit"), "{body}");
}
