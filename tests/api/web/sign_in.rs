//! Signing in and out: redirects, browser sessions as tokens, failures, throttling, idle and revoked sessions, restarts.

use super::*;

on_every_backend!(
    signed_out_visitors_are_sent_to_the_sign_in_page,
    signing_in_starts_a_browser_session_that_shows_as_a_token,
    a_failed_sign_in_says_so_and_is_audited,
    signing_out_ends_the_session_token,
    a_revoked_or_idle_browser_session_is_signed_out,
    a_sign_in_survives_a_restart_with_the_same_secret_key,
    a_browser_can_sign_in_when_device_tokens_fill_the_limit,
    repeated_failed_sign_ins_are_throttled_with_a_clear_message,
    changing_the_password_keeps_or_ends_other_sessions_as_asked,
);

async fn signed_out_visitors_are_sent_to_the_sign_in_page(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut browser = Browser::new(&app);
    browser
        .get("/")
        .await
        .assert_redirect("/login", "/ when signed out");
    for (path, next) in [
        ("/tokens", "/login?next=%2Ftokens"),
        ("/account/password", "/login?next=%2Faccount%2Fpassword"),
        ("/admin/users", "/login?next=%2Fadmin%2Fusers"),
        (
            "/admin/audit?page=2",
            "/login?next=%2Fadmin%2Faudit%3Fpage%3D2",
        ),
    ] {
        browser.get(path).await.assert_redirect(next, path);
    }
    let login = browser.get("/login?next=%2Fadmin%2Fusers").await;
    login.assert_html(StatusCode::OK, "the sign-in page");
    assert!(
        login.body.contains("<label for=\"username\">"),
        "labelled fields"
    );
    let signed_in = browser
        .post(
            "/login",
            &[
                ("username", "admin"),
                ("password", ADMIN_PASSWORD),
                ("next", "/admin/users"),
            ],
        )
        .await;
    signed_in.assert_redirect("/admin/users", "back to the page asked for");
    browser
        .get("/")
        .await
        .assert_redirect("/tokens", "/ when signed in");

    // Signing in again over a sign-in replaces its session token instead of leaving it behind.
    assert_eq!(browser_sessions(&app, "admin").await.len(), 1);
    browser.get("/tokens").await;
    browser
        .post(
            "/login",
            &[("username", "admin"), ("password", ADMIN_PASSWORD)],
        )
        .await
        .assert_redirect("/tokens", "signed in again");
    assert_eq!(
        browser_sessions(&app, "admin").await.len(),
        1,
        "the old browser session was ended"
    );
}

async fn signing_in_starts_a_browser_session_that_shows_as_a_token(backend: Backend) {
    let app = spawn_app_with(backend.clone(), |settings| settings.cookie_secure = true).await;
    let mut browser = Browser::new(&app);
    let login = browser.get("/login").await;
    let cookie = login
        .set_cookie
        .iter()
        .find(|c| c.starts_with("__Host-multitoken_session="))
        .expect("the sign-in page starts a session (for its CSRF token), host-bound when Secure");
    for attribute in ["HttpOnly", "SameSite=Lax", "Secure", "Max-Age=3600"] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie}");
    }
    assert!(
        !cookie.contains(&browser.csrf),
        "the cookie is encrypted: its content is not readable"
    );

    // Plain HTTP (the default) gets a cookie without `Secure`, so local use works.
    let app = spawn_app(backend).await;
    let mut browser = Browser::new(&app);
    let signed_in = browser.sign_in("admin", ADMIN_PASSWORD).await;
    signed_in.assert_redirect("/tokens", "sign-in");
    let cookie = signed_in.set_cookie.join("; ");
    assert!(!cookie.contains("Secure"), "{cookie}");
    let tokens = browser.get("/tokens").await;
    tokens.assert_html(StatusCode::OK, "tokens page");
    assert!(
        tokens.body.contains("Signed in as admin."),
        "a flash message"
    );
    assert!(
        tokens.body.contains("this browser"),
        "the browser's own session is listed"
    );
    assert!(tokens.body.contains(">session<"), "…as a session token");
    let again = browser.get("/tokens").await;
    assert!(
        !again.body.contains("Signed in as admin."),
        "a flash shows once"
    );
    let listed = browser_sessions(&app, "admin").await;
    assert!(
        !listed.is_empty(),
        "the web sign-in is a session token named 'browser …': {listed:?}"
    );
}

async fn a_failed_sign_in_says_so_and_is_audited(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut browser = Browser::new(&app);
    let refused = browser.sign_in("admin", "not the password").await;
    refused.assert_redirect("/login", "a refused sign-in goes back to the form");
    let page = browser.get("/login").await;
    assert!(
        page.body
            .contains("Unable to log in with provided credentials."),
        "{}",
        page.body
    );
    browser
        .get("/tokens")
        .await
        .assert_redirect("/login?next=%2Ftokens", "still signed out");
    let log = audit_log(&app).await;
    assert!(
        log.iter()
            .any(|e| e["action"] == "login.failed" && e["target_name"] == "admin"),
        "the web's failed sign-in is in the audit log: {log:?}"
    );
}

async fn signing_out_ends_the_session_token(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_user("pia", false).await;
    let mut browser = Browser::signed_in(&app, "pia", PASSWORD).await;
    let pia_tokens = || async {
        let log = audit_log(&app).await;
        log.iter()
            .filter(|e| e["target_owner"] == "pia" && e["action"] == "token.revoked")
            .count()
    };
    assert_eq!(pia_tokens().await, 0);
    let out = browser.post("/logout", &[]).await;
    out.assert_redirect("/login", "sign out");
    assert!(
        browser
            .get("/login")
            .await
            .body
            .contains("You have signed out.")
    );
    browser
        .get("/tokens")
        .await
        .assert_redirect("/login?next=%2Ftokens", "signed out");
    assert_eq!(
        pia_tokens().await,
        1,
        "the browser's session token was deleted"
    );
    let revoked: Vec<_> = audit_log(&app)
        .await
        .into_iter()
        .filter(|e| e["action"] == "token.revoked" && e["detail"] == "logged out")
        .collect();
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    assert!(
        revoked[0]["target_name"]
            .as_str()
            .unwrap()
            .starts_with("browser ")
    );
}

async fn a_revoked_or_idle_browser_session_is_signed_out(backend: Backend) {
    let app = spawn_app_with(backend, |settings| {
        settings.session_idle = Duration::from_secs(2);
    })
    .await;
    app.create_user("quinn", false).await;
    let mut revoked = Browser::signed_in(&app, "quinn", PASSWORD).await;
    let browser_token = browser_sessions(&app, "quinn")
        .await
        .first()
        .expect("the web sign-in's token")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let revoke = app
        .delete(
            &format!("/api/admin/tokens/{browser_token}/"),
            Some(&app.admin_key),
        )
        .await;
    assert_eq!(revoke.status(), StatusCode::NO_CONTENT);
    revoked.get("/tokens").await.assert_redirect(
        "/login?next=%2Ftokens",
        "revoking the token signs the browser out",
    );

    let mut idle = Browser::signed_in(&app, "quinn", PASSWORD).await;
    let active = idle.get("/tokens").await;
    active.assert_html(StatusCode::OK, "active");
    let cookie = active
        .set_cookie
        .iter()
        .find(|c| c.starts_with("multitoken_session="))
        .expect("the cookie is renewed on every request (sliding idle expiry)")
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    assert!(
        active.set_cookie.join(";").contains("Max-Age=2"),
        "the browser drops it when idle"
    );
    tokio::time::sleep(Duration::from_millis(3100)).await;
    idle.get("/tokens").await.assert_redirect(
        "/login?next=%2Ftokens",
        "the browser dropped the idle cookie",
    );
    // A copy of the cookie, replayed after the idle time, is refused by the server itself.
    let replayed = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(app.url("/tokens"))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(
        replayed.status(),
        StatusCode::SEE_OTHER,
        "an idle session is over"
    );
    assert_eq!(replayed.headers()["location"], "/login?next=%2Ftokens");
    let log = audit_log(&app).await;
    assert!(
        log.iter().any(|e| e["detail"] == "signed out: idle"),
        "the idle session's token is ended too: {log:?}"
    );
}

async fn a_sign_in_survives_a_restart_with_the_same_secret_key(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut browser = Browser::signed_in(&app, "admin", ADMIN_PASSWORD).await;
    let settings = crate::helpers::test_settings(&app.database.url);
    let database = app.stop().await;
    let app = crate::helpers::start(database, &settings).await;
    browser.base = app.address.clone();
    browser.get("/tokens").await.assert_html(
        StatusCode::OK,
        "the cookie is keyed by MULTITOKEN_SECRET_KEY, not per process",
    );

    let mut other_key = crate::helpers::test_settings(&app.database.url);
    other_key.secret_key = Some(multitoken::config::SecretKey::parse(&"k".repeat(64)).unwrap());
    let database = app.stop().await;
    let app = crate::helpers::start(database, &other_key).await;
    browser.base = app.address.clone();
    browser.get("/tokens").await.assert_redirect(
        "/login?next=%2Ftokens",
        "a cookie under another key is worthless",
    );
}

async fn a_browser_can_sign_in_when_device_tokens_fill_the_limit(backend: Backend) {
    let app = spawn_app_with(backend, |settings| settings.max_tokens_per_user = 2).await;
    let tess = app.create_user("tess", false).await;
    app.create_token(&tess, "one").await;
    let logout = app
        .post("/api/logout/", Some(&tess), serde_json::json!({}))
        .await;
    assert_eq!(logout.status(), StatusCode::OK);
    let two = app
        .post(
            "/api/non-expiring-token/",
            None,
            serde_json::json!({ "username": "tess", "password": PASSWORD, "token_name": "two" }),
        )
        .await;
    assert_eq!(two.status(), StatusCode::CREATED);
    // Only sessions were evictable; now device tokens fill the limit.
    let api_login = app.try_login("tess", PASSWORD).await;
    assert!(
        api_login.is_err(),
        "an API login over the limit is refused: {api_login:?}"
    );
    let mut browser = Browser::signed_in(&app, "tess", PASSWORD).await;
    let page = browser.get("/tokens").await;
    assert!(page.body.contains("this browser"), "signed in to make room");
    let id = token_ids(&page.body)
        .into_iter()
        .find(|id| {
            page.body.contains(&format!(
                "/tokens/{id}/delete\" aria-label=\"Delete token one\""
            ))
        })
        .expect("token 'one' listed");
    browser
        .post(&format!("/tokens/{id}/delete"), &[])
        .await
        .assert_redirect("/tokens", "delete one device token");
    assert!(app.try_login("tess", PASSWORD).await.is_ok(), "room again");
}

async fn repeated_failed_sign_ins_are_throttled_with_a_clear_message(backend: Backend) {
    let app = spawn_app_with(backend, |settings| settings.login_max_failures = 3).await;
    let mut browser = Browser::new(&app);
    for attempt in 1..=3 {
        browser
            .sign_in("admin", "not the password")
            .await
            .assert_redirect("/login", "a refused sign-in goes back to the form");
        let page = browser.get("/login").await;
        assert!(
            page.body
                .contains("Unable to log in with provided credentials."),
            "failure {attempt} is an ordinary refusal: {}",
            page.body
        );
    }
    browser
        .sign_in("admin", ADMIN_PASSWORD)
        .await
        .assert_redirect(
            "/login",
            "over the limit even the right password is refused",
        );
    let page = browser.get("/login").await;
    page.assert_html(StatusCode::OK, "the sign-in page with the message");
    assert!(
        page.body
            .contains("Too many failed sign-in attempts. Try again in "),
        "the page says why and how long to wait: {}",
        page.body
    );
    browser
        .get("/tokens")
        .await
        .assert_redirect("/login?next=%2Ftokens", "still signed out");
    let (status, body) = status_and_json(
        app.post(
            "/api/token/",
            None,
            serde_json::json!({ "username": "admin", "password": ADMIN_PASSWORD }),
        )
        .await,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "the web's failures count for the API too: {body}"
    );
}

async fn changing_the_password_keeps_or_ends_other_sessions_as_asked(backend: Backend) {
    let app = spawn_app(backend).await;
    let phone = app.create_user("judy", false).await;
    let device = app.create_token(&phone, "judy's sensor").await;
    let mut browser = Browser::signed_in(&app, "judy", PASSWORD).await;
    browser
        .get("/account/password")
        .await
        .assert_html(StatusCode::OK, "password page");

    let wrong = browser
        .post(
            "/account/password",
            &[
                ("current_password", "not it at all"),
                ("new_password", "second password"),
                ("confirm_password", "second password"),
            ],
        )
        .await;
    wrong.assert_redirect("/account/password", "wrong current password");
    let page = browser.get("/account/password").await;
    assert!(
        page.body.contains("The current password is wrong"),
        "{}",
        page.body
    );
    let mismatch = browser
        .post(
            "/account/password",
            &[
                ("current_password", PASSWORD),
                ("new_password", "second password"),
                ("confirm_password", "another one"),
            ],
        )
        .await;
    mismatch.assert_redirect("/account/password", "confirmation differs");
    assert!(
        app.try_login("judy", PASSWORD).await.is_ok(),
        "unchanged so far"
    );

    let kept = browser
        .post(
            "/account/password",
            &[
                ("current_password", PASSWORD),
                ("new_password", "second password"),
                ("confirm_password", "second password"),
            ],
        )
        .await;
    kept.assert_redirect("/tokens", "changed");
    assert!(
        browser
            .get("/tokens")
            .await
            .body
            .contains("Password changed.")
    );
    assert!(
        app.try_login("judy", PASSWORD).await.is_err(),
        "the old password is gone"
    );
    assert_eq!(
        app.me_status(&phone).await,
        StatusCode::OK,
        "other sessions kept by default"
    );

    let everywhere = browser
        .post(
            "/account/password",
            &[
                ("current_password", "second password"),
                ("new_password", "third password"),
                ("confirm_password", "third password"),
                ("sign_out_everywhere", "on"),
            ],
        )
        .await;
    everywhere.assert_redirect("/tokens", "changed and signed out elsewhere");
    let page = browser.get("/tokens").await;
    page.assert_html(StatusCode::OK, "this browser stays signed in");
    assert!(page.body.contains("other session"), "{}", page.body);
    assert_eq!(
        app.me_status(&phone).await,
        StatusCode::UNAUTHORIZED,
        "the phone is signed out"
    );
    assert_eq!(
        app.me_status(&device.key).await,
        StatusCode::OK,
        "device tokens keep working"
    );
    assert!(app.try_login("judy", "third password").await.is_ok());
}
