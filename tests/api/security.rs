//! Findings of the security review (issue 11), each pinned by a test: the password-change form
//! is throttled like a login; the CSRF `Origin` check believes forwarded hosts only from a
//! trusted proxy and compares the scheme too.

use multitoken::config::Settings;
use reqwest::StatusCode;

use crate::forms::FormClient;
use crate::helpers::{
    Backend, PASSWORD, TestApp, TestDatabase, spawn_app_with, start, test_settings,
};
use crate::on_every_backend;

on_every_backend!(
    wrong_current_passwords_count_as_failed_logins_of_the_username,
    failed_logins_from_the_address_lock_the_password_change_too,
    with_redis_the_password_change_shares_the_redis_counters,
    forwarded_host_headers_from_an_untrusted_peer_do_not_make_a_foreign_origin_ours,
    behind_a_trusted_proxy_the_forwarded_scheme_and_host_must_match_the_origin,
);

fn limits(per_username: u32, per_address: u32) -> impl FnOnce(&mut Settings) {
    move |settings: &mut Settings| {
        settings.login_max_failures = per_username;
        settings.login_max_failures_per_address = per_address;
    }
}

/// `POST /account/password` from `browser`; returns the flash message of the page it leads to.
async fn change_password(browser: &mut FormClient, current: &str, new: &str) -> String {
    browser.get("/account/password").await;
    let answer = browser
        .post(
            "/account/password",
            &[
                ("current_password", current),
                ("new_password", new),
                ("confirm_password", new),
            ],
        )
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    browser.follow(&answer).await.body
}

/// Fails `limit` current-password checks, then shows that the right password is refused too,
/// without being checked, and that the API login of the user is locked as well.
async fn guess_until_locked(app: &TestApp, limit: usize) {
    let mut browser = FormClient::signed_in(app, "judy", PASSWORD).await;
    for guess in 1..=limit {
        let page = change_password(
            &mut browser,
            &format!("guess number {guess}"),
            "new password 1",
        )
        .await;
        assert!(
            page.contains("The current password is wrong"),
            "guess {guess} of {limit} is within the limit and answered as wrong: {page}"
        );
    }
    let page = change_password(&mut browser, PASSWORD, "new password 1").await;
    assert!(
        page.contains("Too many failed"),
        "past the limit even the right current password is refused unchecked: {page}"
    );
    assert!(
        !page.contains("Password changed"),
        "a locked password change changes nothing: {page}"
    );
    let api = app.try_login("judy", PASSWORD).await;
    assert!(
        api.as_ref().is_err_and(|body| body["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("Too many failed login attempts"))),
        "the password-change failures count against the same login counter: {api:?}"
    );
}

async fn wrong_current_passwords_count_as_failed_logins_of_the_username(backend: Backend) {
    let app = spawn_app_with(backend, limits(3, 1000)).await;
    app.create_user("judy", false).await;
    guess_until_locked(&app, 3).await;
}

async fn failed_logins_from_the_address_lock_the_password_change_too(backend: Backend) {
    let app = spawn_app_with(backend, limits(1000, 4)).await;
    app.create_user("judy", false).await;
    let mut browser = FormClient::signed_in(&app, "judy", PASSWORD).await;
    for name in ["ghost1", "ghost2", "ghost3", "ghost4"] {
        assert!(
            app.try_login(name, "wrong password").await.is_err(),
            "a failed login as {name}"
        );
    }
    let page = change_password(&mut browser, PASSWORD, "new password 1").await;
    assert!(
        page.contains("Too many failed"),
        "four failures from this address lock its password checks, whatever the username: {page}"
    );
}

async fn with_redis_the_password_change_shares_the_redis_counters(backend: Backend) {
    let Some(redis_url) = std::env::var("MULTITOKEN_TEST_REDIS_URL")
        .ok()
        .filter(|url| !url.is_empty())
    else {
        eprintln!("MULTITOKEN_TEST_REDIS_URL is not set: Redis run skipped");
        return;
    };
    let database = TestDatabase::create(&backend).await;
    let mut settings = test_settings(&database.url);
    limits(3, 1000)(&mut settings);
    settings.redis_url = Some(redis_url);
    settings.redis_prefix = format!("mt_test_{}:", uuid::Uuid::new_v4().simple());
    let app = start(database, &settings).await;
    app.create_user("judy", false).await;
    guess_until_locked(&app, 3).await;
}

/// Signs in through `/login` with the right CSRF token and `headers`; the status tells whether
/// the `Origin` check let it through (303) or refused it (403).
async fn sign_in_with(app: &TestApp, headers: &[(&str, &str)]) -> StatusCode {
    let mut browser = FormClient::new(app);
    browser.get("/login").await;
    let fields = [("username", "judy"), ("password", PASSWORD)];
    let answer = browser.post_with_headers("/login", &fields, headers).await;
    assert!(
        [StatusCode::SEE_OTHER, StatusCode::FORBIDDEN].contains(&answer.status),
        "{headers:?}: {} {}",
        answer.status,
        answer.body
    );
    answer.status
}

async fn forwarded_host_headers_from_an_untrusted_peer_do_not_make_a_foreign_origin_ours(
    backend: Backend,
) {
    let app = spawn_app_with(backend, |_| {}).await;
    app.create_user("judy", false).await;
    let ours = app.address.clone();
    assert_eq!(
        sign_in_with(&app, &[("Origin", ours.as_str())]).await,
        StatusCode::SEE_OTHER,
        "our own origin is accepted"
    );
    let https_ours = ours.replace("http://", "https://");
    for headers in [
        vec![
            ("Origin", "http://evil.example"),
            ("X-Forwarded-Host", "evil.example"),
        ],
        vec![
            ("Origin", "http://evil.example"),
            ("Forwarded", "host=evil.example"),
        ],
        vec![("Origin", "http://evil.example")],
        vec![("Origin", https_ours.as_str())],
        vec![
            ("Origin", https_ours.as_str()),
            ("X-Forwarded-Proto", "https"),
        ],
    ] {
        assert_eq!(
            sign_in_with(&app, &headers).await,
            StatusCode::FORBIDDEN,
            "no trusted proxy: forwarded headers are not believed, and the scheme must match: {headers:?}"
        );
    }
}

async fn behind_a_trusted_proxy_the_forwarded_scheme_and_host_must_match_the_origin(
    backend: Backend,
) {
    let app = spawn_app_with(backend, |settings| {
        settings.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    app.create_user("judy", false).await;
    let proxied = [
        ("X-Forwarded-Host", "public.example"),
        ("X-Forwarded-Proto", "https"),
    ];
    let with_origin = |origin: &'static str| {
        let mut headers = proxied.to_vec();
        headers.push(("Origin", origin));
        headers
    };
    assert_eq!(
        sign_in_with(&app, &with_origin("https://public.example")).await,
        StatusCode::SEE_OTHER,
        "the proxy's forwarded scheme and host are what the browser used"
    );
    assert_eq!(
        sign_in_with(&app, &with_origin("http://public.example")).await,
        StatusCode::FORBIDDEN,
        "the scheme counts: http is another origin than https"
    );
    assert_eq!(
        sign_in_with(&app, &with_origin("https://evil.example")).await,
        StatusCode::FORBIDDEN,
        "another host is another origin"
    );
}
