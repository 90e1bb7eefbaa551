//! What protects every page: CSRF on every form, HTML error pages without internals, security headers.

use super::*;

on_every_backend!(
    forms_without_the_right_csrf_token_are_refused_and_change_nothing,
    browser_routes_answer_html_error_pages,
    a_server_error_is_an_html_page_without_internals_and_changes_nothing,
    every_state_changing_route_needs_the_csrf_token,
    pages_forbid_framing_and_inline_script,
);

async fn forms_without_the_right_csrf_token_are_refused_and_change_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut browser = Browser::signed_in(&app, "admin", ADMIN_PASSWORD).await;
    let before = token_ids(&browser.get("/tokens").await.body).len();

    let posts: [(&str, Vec<(&str, &str)>); 5] = [
        ("/tokens", vec![("name", "no csrf")]),
        ("/tokens", vec![("csrf", "forged"), ("name", "forged csrf")]),
        ("/logout", vec![]),
        (
            "/account/password",
            vec![
                ("current_password", ADMIN_PASSWORD),
                ("new_password", "a brand new password"),
                ("confirm_password", "a brand new password"),
            ],
        ),
        (
            "/admin/users",
            vec![("username", "mallory"), ("password", PASSWORD)],
        ),
    ];
    for (path, form) in posts {
        let refused = browser.post_raw(path, &form).await;
        refused.assert_html(StatusCode::FORBIDDEN, path);
        assert!(
            refused.body.contains("This form has expired"),
            "{path}: {}",
            refused.body
        );
    }
    // A token from this site, but sent from another origin.
    let csrf = browser.csrf.clone();
    let cross_site = browser
        .client
        .post(format!("{}/tokens", browser.base))
        .header("Origin", "https://evil.example")
        .form(&[("csrf", csrf.as_str()), ("name", "cross site")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        cross_site.status(),
        StatusCode::FORBIDDEN,
        "a foreign Origin is refused"
    );
    // A fresh visitor without a session cannot post the sign-in form either.
    let stranger = Browser::new(&app)
        .post_raw(
            "/login",
            &[("username", "admin"), ("password", ADMIN_PASSWORD)],
        )
        .await;
    stranger.assert_html(StatusCode::FORBIDDEN, "sign-in without the form's token");

    let after = browser.get("/tokens").await;
    after.assert_html(StatusCode::OK, "still signed in: the logout was refused");
    assert_eq!(token_ids(&after.body).len(), before, "no token was created");
    let login = app.try_login("admin", ADMIN_PASSWORD).await;
    assert!(login.is_ok(), "the password is unchanged: {login:?}");
    assert!(
        app.try_login("mallory", PASSWORD).await.is_err(),
        "no user was created"
    );
}

async fn browser_routes_answer_html_error_pages(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut browser = Browser::signed_in(&app, "admin", ADMIN_PASSWORD).await;
    for path in [
        "/nothing",
        "/tokens/not-a-uuid/delete",
        "/admin/users/123/revoke-all",
    ] {
        let page = browser.get(path).await;
        page.assert_html(StatusCode::NOT_FOUND, path);
        assert!(page.body.contains("404"), "{path}");
    }
    let bad_query = browser.get("/admin/audit?page=minus-one").await;
    bad_query.assert_html(StatusCode::BAD_REQUEST, "a malformed query string");
    let csrf = browser.csrf.clone();
    let huge = "x".repeat(100 * 1024);
    let too_large = browser
        .post_raw(
            "/tokens",
            &[("csrf", csrf.as_str()), ("name", huge.as_str())],
        )
        .await;
    too_large.assert_html(StatusCode::PAYLOAD_TOO_LARGE, "a 100 KiB form");
    let garbage = browser
        .client
        .post(format!("{}/tokens", browser.base))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("%%%&&&=\u{0}")
        .send()
        .await
        .unwrap();
    assert!(
        garbage.status().is_client_error(),
        "garbage: {}",
        garbage.status()
    );
    // The API stays JSON.
    let api = app.get("/api/nothing/", None).await;
    assert_eq!(api.headers()["content-type"], "application/json");
    for page in [bad_query, too_large] {
        assert!(!page.body.contains("sea_orm") && !page.body.contains("panicked"));
    }
}

async fn a_server_error_is_an_html_page_without_internals_and_changes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut browser = Browser::signed_in(&app, "admin", ADMIN_PASSWORD).await;
    // Break the database under the running server: every change writes the audit log.
    app.db()
        .await
        .execute_unprepared("DROP TABLE audit_events")
        .await
        .unwrap();
    let failed = browser
        .post("/tokens", &[("name", "doomed"), ("expires", "never")])
        .await;
    failed.assert_html(StatusCode::INTERNAL_SERVER_ERROR, "a database failure");
    assert!(failed.body.contains("Something went wrong on our side"));
    for internal in ["audit_events", "sqlx", "SqliteError", "relation", "DbErr"] {
        assert!(
            !failed.body.contains(internal),
            "{internal} leaked: {}",
            failed.body
        );
    }
    let listed: serde_json::Value = app
        .get("/api/tokens/", Some(&app.admin_key))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        !listed.to_string().contains("doomed"),
        "the token and its audit event are one transaction: no token without its record"
    );
}

async fn every_state_changing_route_needs_the_csrf_token(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_user("rita", false).await;
    let mut admin = Browser::signed_in(&app, "admin", ADMIN_PASSWORD).await;
    let (own_token, own_key) = admin.create_token("kept", "never").await;
    let rita = user_id(&mut admin, "rita").await;
    let routes = [
        "/login".to_owned(),
        "/logout".to_owned(),
        "/tokens".to_owned(),
        format!("/tokens/{own_token}/delete"),
        "/account/password".to_owned(),
        "/admin/users".to_owned(),
        format!("/admin/users/{rita}/deactivate"),
        format!("/admin/users/{rita}/activate"),
        format!("/admin/users/{rita}/revoke-all"),
        format!("/admin/tokens/{own_token}/revoke"),
    ];
    for path in &routes {
        for csrf in [None, Some("0".repeat(43))] {
            let mut form = vec![("name", "x"), ("username", "x"), ("password", "x")];
            if let Some(csrf) = &csrf {
                form.push(("csrf", csrf));
            }
            let refused = admin.post_raw(path, &form).await;
            refused.assert_html(StatusCode::FORBIDDEN, &format!("{path} with csrf {csrf:?}"));
        }
    }
    assert_eq!(
        app.me_status(&own_key).await,
        StatusCode::OK,
        "nothing was deleted"
    );
    admin
        .get("/tokens")
        .await
        .assert_html(StatusCode::OK, "still signed in");
    let page = admin.get("/admin/users").await;
    assert!(!page.body.contains("deactivated"), "nobody was deactivated");
    let rita_key = app.login("rita", PASSWORD).await;
    assert_eq!(app.me_status(&rita_key).await, StatusCode::OK);
}

/// The headers every HTML answer carries, whether a page, a form's error page or a 404.
fn assert_html_security_headers(headers: &header::HeaderMap, context: &str) {
    let csp = headers["content-security-policy"].to_str().unwrap();
    for directive in [
        "frame-ancestors 'none'",
        "script-src 'self'",
        "form-action 'self'",
    ] {
        assert!(csp.contains(directive), "{context}: {directive} in {csp}");
    }
    assert!(!csp.contains("unsafe-inline"), "{context}: {csp}");
    assert_eq!(headers["x-frame-options"], "DENY", "{context}");
    assert_eq!(headers["x-content-type-options"], "nosniff", "{context}");
    assert_eq!(headers["referrer-policy"], "same-origin", "{context}");
}

async fn pages_forbid_framing_and_inline_script(backend: Backend) {
    let app = spawn_app(backend.clone()).await;
    let response = reqwest::get(app.url("/login")).await.unwrap();
    assert_html_security_headers(response.headers(), "the sign-in page");
    assert!(
        !response.headers().contains_key("strict-transport-security"),
        "no HSTS while cookies are not secure (plain HTTP is allowed)"
    );
    let html = response.text().await.unwrap();
    assert!(!html.contains("<script>"), "no inline script on pages");
    assert!(!html.contains(" style=\""), "no inline style either");
    let missing = reqwest::get(app.url("/no/such/page")).await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_html_security_headers(missing.headers(), "the HTML 404 page");
    let forged = app
        .client
        .post(app.url("/login"))
        .form(&[("username", "admin"), ("password", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN, "no CSRF token");
    assert_html_security_headers(forged.headers(), "the HTML 403 page");

    let https = spawn_app_with(backend, |settings| settings.cookie_secure = true).await;
    for path in ["/login", "/no/such/page", "/api/me/"] {
        let response = reqwest::get(https.url(path)).await.unwrap();
        assert_eq!(
            response.headers()["strict-transport-security"],
            "max-age=31536000",
            "{path}: with secure cookies the site is HTTPS-only"
        );
    }
}
