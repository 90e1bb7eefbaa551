//! Yes/no fields read one way everywhere (issue 11 finding 3): `on`, `true`, `1` yes; absent,
//! `false`, `0` no; anything else a 400 (an HTML page in the UI, JSON in the API) that changes
//! nothing.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::forms::FormClient;
use crate::helpers::{ADMIN_PASSWORD, Backend, PASSWORD, TestApp, spawn_app, status_and_json};
use crate::on_every_backend;

on_every_backend!(
    the_new_user_form_makes_an_admin_only_when_is_admin_says_yes,
    sign_out_everywhere_false_keeps_the_other_sessions,
    api_bodies_read_yes_no_fields_like_the_forms,
);

/// `username` → `is_admin` of every user, from the admin API.
async fn admins(app: &TestApp) -> Vec<(String, bool)> {
    let (status, body) =
        status_and_json(app.get("/api/admin/users/", Some(&app.admin_key)).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body.as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["user"].as_str().unwrap().to_owned(),
                u["is_admin"] == json!(true),
            )
        })
        .collect()
}

async fn the_new_user_form_makes_an_admin_only_when_is_admin_says_yes(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut admin = FormClient::signed_in(&app, "admin", ADMIN_PASSWORD).await;
    let cases = [
        ("no-field", None, false),
        ("false-word", Some("false"), false),
        ("zero", Some("0"), false),
        ("on-word", Some("on"), true),
        ("true-word", Some("true"), true),
        ("one", Some("1"), true),
    ];
    for (name, value, _) in cases {
        admin.get("/admin/users").await;
        let mut fields = vec![("username", name), ("password", PASSWORD)];
        if let Some(value) = value {
            fields.push(("is_admin", value));
        }
        let answer = admin.post("/admin/users", &fields).await;
        assert_eq!(
            answer.status,
            StatusCode::SEE_OTHER,
            "{name}: {}",
            answer.body
        );
    }
    let users = admins(&app).await;
    for (name, value, expected) in cases {
        let made = users.iter().find(|(user, _)| user == name);
        assert_eq!(
            made.map(|(_, is_admin)| *is_admin),
            Some(expected),
            "is_admin={value:?} must make {name} {}",
            if expected { "an admin" } else { "no admin" }
        );
    }
    for bad in ["yes", "", "False", "2"] {
        admin.get("/admin/users").await;
        let answer = admin
            .post(
                "/admin/users",
                &[
                    ("username", "maybe"),
                    ("password", PASSWORD),
                    ("is_admin", bad),
                ],
            )
            .await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "is_admin={bad:?}: {}",
            answer.body
        );
        assert!(
            answer.content_type.starts_with("text/html"),
            "the UI answers an HTML page: {}",
            answer.content_type
        );
    }
    assert!(
        !admins(&app).await.iter().any(|(user, _)| user == "maybe"),
        "a refused form creates no user"
    );
}

async fn sign_out_everywhere_false_keeps_the_other_sessions(backend: Backend) {
    let app = spawn_app(backend).await;
    let phone = app.create_user("judy", false).await;
    let mut browser = FormClient::signed_in(&app, "judy", PASSWORD).await;
    let change = |current: &'static str, new: &'static str, everywhere: &'static str| {
        [
            ("current_password", current),
            ("new_password", new),
            ("confirm_password", new),
            ("sign_out_everywhere", everywhere),
        ]
    };
    browser.get("/account/password").await;
    let bad = browser
        .post(
            "/account/password",
            &change(PASSWORD, "second password", "please"),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
    assert!(
        bad.content_type.starts_with("text/html"),
        "{}",
        bad.content_type
    );
    assert!(
        app.try_login("judy", PASSWORD).await.is_ok(),
        "a refused form changes nothing"
    );

    browser.get("/account/password").await;
    let kept = browser
        .post(
            "/account/password",
            &change(PASSWORD, "second password", "false"),
        )
        .await;
    assert_eq!(kept.location.as_deref(), Some("/tokens"), "{}", kept.body);
    assert_eq!(
        app.me_status(&phone).await,
        StatusCode::OK,
        "sign_out_everywhere=false signs nobody out"
    );

    browser.get("/account/password").await;
    let ended = browser
        .post(
            "/account/password",
            &change("second password", "third password", "1"),
        )
        .await;
    assert_eq!(ended.location.as_deref(), Some("/tokens"), "{}", ended.body);
    assert_eq!(
        app.me_status(&phone).await,
        StatusCode::UNAUTHORIZED,
        "sign_out_everywhere=1 signs the other sessions out"
    );
}

async fn form_post(
    app: &TestApp,
    path: &str,
    key: &str,
    form: &[(&str, &str)],
) -> (StatusCode, Value) {
    let response = app
        .client
        .post(app.url(path))
        .header("Authorization", format!("Token {key}"))
        .form(form)
        .send()
        .await
        .unwrap();
    status_and_json(response).await
}

async fn api_bodies_read_yes_no_fields_like_the_forms(backend: Backend) {
    let app = spawn_app(backend).await;
    let (status, body) = form_post(
        &app,
        "/api/admin/users/",
        &app.admin_key,
        &[
            ("username", "formadmin"),
            ("password", PASSWORD),
            ("is_admin", "on"),
        ],
    )
    .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "a ticked checkbox in a form body: {body}"
    );
    assert_eq!(body["is_admin"], json!(true), "is_admin=on is yes: {body}");
    for bad in [json!("yes"), json!(2), json!(null)] {
        let (status, body) = status_and_json(
            app.post(
                "/api/admin/users/",
                Some(&app.admin_key),
                json!({ "username": "jsonmaybe", "password": PASSWORD, "is_admin": bad }),
            )
            .await,
        )
        .await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "is_admin: {bad} is no yes/no: {body}"
        );
    }
    assert!(
        !admins(&app)
            .await
            .iter()
            .any(|(user, _)| user == "jsonmaybe")
    );

    let alice = app.create_user("alice", false).await;
    let device = app.create_token(&alice, "sensor").await;
    let (status, body) = form_post(
        &app,
        "/api/logout-all/",
        &alice,
        &[("include_devices", "maybe")],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        app.me_status(&alice).await,
        StatusCode::OK,
        "a refused body changes nothing"
    );
    let (status, body) = form_post(
        &app,
        "/api/logout-all/",
        &alice,
        &[("include_devices", "on")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        app.me_status(&device.key).await,
        StatusCode::UNAUTHORIZED,
        "include_devices=on revokes the device tokens too"
    );
}
