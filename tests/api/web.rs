//! The web UI at the handler level: real HTTP with a cookie-keeping client, real database.
//! Every page and form: status, redirects, CSRF refusal, escaping, admin-only pages, key shown once.

use std::time::Duration;

use reqwest::{StatusCode, header};
use sea_orm::ConnectionTrait;

use crate::audit::audit_log;
use crate::helpers::{
    ADMIN_PASSWORD, Backend, PASSWORD, TestApp, spawn_app, spawn_app_with, status_and_json,
};
use crate::on_both_backends;

/// A browser: keeps cookies, does not follow redirects, remembers the last page's CSRF token.
struct Browser {
    client: reqwest::Client,
    base: String,
    csrf: String,
}

struct Page {
    status: StatusCode,
    location: Option<String>,
    content_type: String,
    set_cookie: Vec<String>,
    body: String,
}

impl Page {
    fn assert_redirect(&self, to: &str, context: &str) {
        assert_eq!(
            self.status,
            StatusCode::SEE_OTHER,
            "{context}: {}",
            self.body
        );
        assert_eq!(self.location.as_deref(), Some(to), "{context}");
    }

    fn assert_html(&self, status: StatusCode, context: &str) {
        assert_eq!(self.status, status, "{context}: {}", self.body);
        assert!(
            self.content_type.starts_with("text/html"),
            "{context}: an HTML page, got {}",
            self.content_type
        );
    }
}

/// The value of the first `<… name="NAME" value="…">` in a page.
fn field_value(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_owned())
}

/// The key shown once on the tokens page.
fn revealed_key(html: &str) -> Option<String> {
    let marker = "<code id=\"new-key\" tabindex=\"0\" aria-label=\"The new key\">";
    let start = html.find(marker)? + marker.len();
    let end = html[start..].find('<')? + start;
    Some(html[start..end].to_owned())
}

/// Token ids in a table, in order.
fn token_ids(html: &str) -> Vec<String> {
    html.split("data-token-id=\"")
        .skip(1)
        .map(|rest| rest[..36].to_owned())
        .collect()
}

impl Browser {
    fn new(app: &TestApp) -> Browser {
        Browser {
            client: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: app.address.clone(),
            csrf: String::new(),
        }
    }

    async fn page(&mut self, response: reqwest::Response) -> Page {
        let headers = response.headers().clone();
        let page = Page {
            status: response.status(),
            location: headers
                .get(header::LOCATION)
                .map(|v| v.to_str().unwrap().to_owned()),
            content_type: headers
                .get(header::CONTENT_TYPE)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default(),
            set_cookie: headers
                .get_all(header::SET_COOKIE)
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect(),
            body: response.text().await.unwrap(),
        };
        if let Some(csrf) = field_value(&page.body, "csrf") {
            self.csrf = csrf;
        }
        page
    }

    async fn get(&mut self, path: &str) -> Page {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        self.page(response).await
    }

    /// Posts a form with the CSRF token of the last page seen.
    async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let csrf = self.csrf.clone();
        let mut form: Vec<(&str, &str)> = vec![("csrf", &csrf)];
        form.extend_from_slice(fields);
        self.post_raw(path, &form).await
    }

    async fn post_raw(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .form(form)
            .send()
            .await
            .unwrap();
        self.page(response).await
    }

    async fn sign_in(&mut self, username: &str, password: &str) -> Page {
        let login = self.get("/login").await;
        login.assert_html(StatusCode::OK, "the sign-in page");
        self.post("/login", &[("username", username), ("password", password)])
            .await
    }

    /// Signs in and lands on `/tokens`.
    async fn signed_in(app: &TestApp, username: &str, password: &str) -> Browser {
        let mut browser = Browser::new(app);
        let signed_in = browser.sign_in(username, password).await;
        signed_in.assert_redirect("/tokens", "a successful sign-in goes to the tokens page");
        let tokens = browser.get("/tokens").await;
        tokens.assert_html(StatusCode::OK, "the tokens page after sign-in");
        browser
    }

    /// Creates a device token through the form and returns its id and key, read from the page.
    async fn create_token(&mut self, name: &str, expires: &str) -> (String, String) {
        let created = self
            .post("/tokens", &[("name", name), ("expires", expires)])
            .await;
        created.assert_html(StatusCode::OK, "creating a token answers with its key");
        let key = revealed_key(&created.body).expect("the new key is shown after creation");
        (token_ids(&created.body)[0].clone(), key)
    }
}

on_both_backends!(
    signed_out_visitors_are_sent_to_the_sign_in_page,
    signing_in_starts_a_browser_session_that_shows_as_a_token,
    a_failed_sign_in_says_so_and_is_audited,
    forms_without_the_right_csrf_token_are_refused_and_change_nothing,
    a_new_token_key_is_shown_exactly_once_and_works,
    token_names_and_usernames_are_escaped,
    deleting_a_token_takes_a_confirmation_and_ends_the_key,
    expiry_choices_set_the_expiry_and_bad_ones_are_refused,
    changing_the_password_keeps_or_ends_other_sessions_as_asked,
    admin_pages_refuse_non_admins,
    admins_create_deactivate_and_activate_users_and_revoke_all_their_tokens,
    admins_filter_every_token_and_revoke_any,
    the_audit_page_lists_ui_actions_newest_first_with_pages,
    browser_routes_answer_html_error_pages,
    signing_out_ends_the_session_token,
    a_revoked_or_idle_browser_session_is_signed_out,
    a_server_error_is_an_html_page_without_internals_and_changes_nothing,
    a_sign_in_survives_a_restart_with_the_same_secret_key,
    every_state_changing_route_needs_the_csrf_token,
    ui_actions_are_audited_and_hostile_login_names_are_escaped,
    audit_pages_past_the_end_or_absurdly_far_answer_the_last_page,
    a_browser_can_sign_in_when_device_tokens_fill_the_limit,
    deleting_this_browsers_own_session_signs_it_out_with_a_message,
    pages_forbid_framing_and_inline_script,
    repeated_failed_sign_ins_are_throttled_with_a_clear_message,
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

async fn a_new_token_key_is_shown_exactly_once_and_works(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_user("frank", false).await;
    let mut browser = Browser::signed_in(&app, "frank", PASSWORD).await;
    let created = browser
        .post(
            "/tokens",
            &[("name", "kitchen thermostat"), ("expires", "30")],
        )
        .await;
    created.assert_html(StatusCode::OK, "the answer to the form shows the key");
    let page = created;
    assert!(
        page.set_cookie
            .iter()
            .all(|cookie| cookie.len() < 600 || !cookie.starts_with("multitoken_session=")),
        "the key does not travel in the session cookie"
    );
    let key = revealed_key(&page.body).expect("the key is on the page after creation");
    assert!(key.starts_with("mt_"), "{key}");
    assert!(
        page.body.contains("It will not be shown again"),
        "a plain warning"
    );
    assert!(page.body.contains("data-copy=\"new-key\""), "a copy button");
    assert!(page.body.contains("Token “kitchen thermostat” created."));
    assert!(
        page.body.contains("in 30 days"),
        "expires in 30 days, rounded to the nearest day"
    );
    assert!(page.body.contains(">never<"), "never used yet");
    assert_eq!(
        app.me_status(&key).await,
        StatusCode::OK,
        "the shown key works"
    );

    let reload = browser.get("/tokens").await;
    assert!(
        revealed_key(&reload.body).is_none(),
        "a later visit does not show the key"
    );
    assert!(
        !reload.body.contains(&key),
        "the key is nowhere on the page any more"
    );
    assert!(reload.body.contains("kitchen thermostat"));
    let used = browser.get("/tokens").await;
    assert!(
        used.body.contains("just now"),
        "last used is shown once the key was used"
    );

    let duplicate = browser
        .post(
            "/tokens",
            &[("name", "kitchen thermostat"), ("expires", "never")],
        )
        .await;
    duplicate.assert_redirect("/tokens", "a duplicate name goes back to the form");
    let page = browser.get("/tokens").await;
    assert!(
        page.body
            .contains("You already have a token with this name."),
        "{}",
        page.body
    );
    assert!(revealed_key(&page.body).is_none());
}

async fn token_names_and_usernames_are_escaped(backend: Backend) {
    let app = spawn_app(backend).await;
    let hostile = "<script>alert(1)</script>";
    let mut admin = Browser::signed_in(&app, "admin", ADMIN_PASSWORD).await;
    admin.create_token(hostile, "never").await;
    for path in ["/tokens", "/admin/tokens", "/admin/audit"] {
        let page = admin.get(path).await;
        page.assert_html(StatusCode::OK, path);
        assert!(
            !page.body.contains(hostile),
            "{path} shows the name unescaped"
        );
        assert!(
            page.body
                .contains("&#60;script&#62;alert(1)&#60;/script&#62;")
                || page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{path} shows the name as text"
        );
    }
    let id = token_ids(&admin.get("/tokens").await.body)[0].clone();
    let confirm = admin.get(&format!("/tokens/{id}/delete")).await;
    assert!(
        !confirm.body.contains(hostile),
        "the confirmation page escapes too"
    );
}

async fn deleting_a_token_takes_a_confirmation_and_ends_the_key(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_user("gina", false).await;
    let hank = app.create_user("hank", false).await;
    let hanks = app.create_token(&hank, "hank's").await;
    let mut browser = Browser::signed_in(&app, "gina", PASSWORD).await;
    let (id, key) = browser.create_token("garage door", "never").await;

    let confirm = browser.get(&format!("/tokens/{id}/delete")).await;
    confirm.assert_html(StatusCode::OK, "the confirmation step");
    assert!(
        confirm
            .body
            .contains("Delete the device token “garage door”")
    );
    assert_eq!(
        app.me_status(&key).await,
        StatusCode::OK,
        "nothing deleted by looking"
    );
    let deleted = browser.post(&format!("/tokens/{id}/delete"), &[]).await;
    deleted.assert_redirect("/tokens", "delete");
    let page = browser.get("/tokens").await;
    assert!(page.body.contains("Token “garage door” deleted."));
    assert!(!token_ids(&page.body).contains(&id));
    assert_eq!(
        app.me_status(&key).await,
        StatusCode::UNAUTHORIZED,
        "the key stops working"
    );

    // Someone else's token: it does not exist, as far as gina can tell.
    browser
        .get(&format!("/tokens/{}/delete", hanks.id))
        .await
        .assert_html(StatusCode::NOT_FOUND, "another user's token");
    let refused = browser
        .post(&format!("/tokens/{}/delete", hanks.id), &[])
        .await;
    refused.assert_redirect("/tokens", "another user's token");
    assert_eq!(
        app.me_status(&hanks.key).await,
        StatusCode::OK,
        "hank's token survives"
    );
}

async fn expiry_choices_set_the_expiry_and_bad_ones_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_user("ivy", false).await;
    let mut browser = Browser::signed_in(&app, "ivy", PASSWORD).await;
    let date = (chrono::Utc::now().date_naive() + chrono::TimeDelta::days(10)).to_string();
    let created = browser
        .post(
            "/tokens",
            &[
                ("name", "until a date"),
                ("expires", "date"),
                ("expires_on", &date),
            ],
        )
        .await;
    created.assert_html(StatusCode::OK, "create with a date");
    let key = revealed_key(&created.body).unwrap();
    let me: serde_json::Value = app.get("/api/me/", Some(&key)).await.json().await.unwrap();
    assert_eq!(
        me["token"]["expires_at"].as_str().unwrap()[..10],
        (chrono::Utc::now().date_naive() + chrono::TimeDelta::days(11)).to_string(),
        "valid through the chosen day, expiring at the next midnight UTC"
    );
    for (expires, on, message) in [
        ("8", "", "Expires is not one of the choices."),
        ("date", "", "Expiry date must be a date such as 2027-03-31."),
        ("date", "2001-01-01", "Expiry date must be today or later"),
    ] {
        let before = token_ids(&browser.get("/tokens").await.body).len();
        let refused = browser
            .post(
                "/tokens",
                &[("name", "bad"), ("expires", expires), ("expires_on", on)],
            )
            .await;
        refused.assert_redirect("/tokens", "a refused expiry");
        let page = browser.get("/tokens").await;
        assert!(page.body.contains(message), "{expires} {on}: {}", page.body);
        assert_eq!(token_ids(&page.body).len(), before, "nothing created");
    }
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

async fn admin_pages_refuse_non_admins(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_user("kim", false).await;
    let mut browser = Browser::signed_in(&app, "kim", PASSWORD).await;
    let page = browser.get("/tokens").await;
    assert!(
        !page.body.contains("/admin/users"),
        "no admin links for users"
    );
    let admin_id = {
        let users: serde_json::Value = app
            .get("/api/admin/users/", Some(&app.admin_key))
            .await
            .json()
            .await
            .unwrap();
        assert!(
            users
                .as_array()
                .unwrap()
                .iter()
                .any(|u| u["user"] == "admin")
        );
        let mut admin = Browser::signed_in(&app, "admin", ADMIN_PASSWORD).await;
        let page = admin.get("/admin/users").await;
        let marker = "/admin/users/";
        let rest = &page.body[page.body.find(marker).unwrap() + marker.len()..];
        rest[..36].to_owned()
    };
    for path in [
        "/admin/users".to_owned(),
        "/admin/tokens".to_owned(),
        "/admin/audit".to_owned(),
        format!("/admin/users/{admin_id}/revoke-all"),
    ] {
        let refused = browser.get(&path).await;
        refused.assert_html(StatusCode::FORBIDDEN, &path);
        assert!(refused.body.contains("for administrators only"), "{path}");
    }
    browser.get("/tokens").await;
    for path in [
        "/admin/users".to_owned(),
        format!("/admin/users/{admin_id}/deactivate"),
        format!("/admin/users/{admin_id}/revoke-all"),
    ] {
        let refused = browser
            .post(&path, &[("username", "sneaky"), ("password", PASSWORD)])
            .await;
        refused.assert_html(StatusCode::FORBIDDEN, &path);
    }
    assert!(
        app.try_login("sneaky", PASSWORD).await.is_err(),
        "no user was created"
    );
    assert!(
        app.try_login("admin", ADMIN_PASSWORD).await.is_ok(),
        "the admin is untouched"
    );
}

async fn admins_create_deactivate_and_activate_users_and_revoke_all_their_tokens(backend: Backend) {
    let app = spawn_app_with(backend, |settings| settings.token_on_signup = true).await;
    let mut admin = Browser::signed_in(&app, "admin", ADMIN_PASSWORD).await;
    admin
        .get("/admin/users")
        .await
        .assert_html(StatusCode::OK, "users page");
    let created = admin
        .post(
            "/admin/users",
            &[("username", "<b>leo</b>"), ("password", PASSWORD)],
        )
        .await;
    created.assert_redirect("/admin/users", "an invalid username goes back");
    let page = admin.get("/admin/users").await;
    assert!(
        page.body.contains("Username may contain only letters"),
        "{}",
        page.body
    );

    let created = admin
        .post(
            "/admin/users",
            &[("username", "leo"), ("password", PASSWORD)],
        )
        .await;
    created.assert_html(
        StatusCode::OK,
        "create user: the signup key is in the answer",
    );
    let page = created;
    assert!(page.body.contains("User leo created."));
    let signup_key = revealed_key(&page.body).expect("the signup token's key, shown once");
    assert_eq!(app.me_status(&signup_key).await, StatusCode::OK);
    assert!(page.body.contains("data-username=\"leo\""));
    let leo_row = &page.body[page.body.find("data-username=\"leo\"").unwrap()..];
    let leo_id = leo_row[leo_row.find("/admin/users/").unwrap() + 13..][..36].to_owned();

    let mut leo = Browser::signed_in(&app, "leo", PASSWORD).await;
    let phone = app.login("leo", PASSWORD).await;
    let deactivated = admin
        .post(&format!("/admin/users/{leo_id}/deactivate"), &[])
        .await;
    deactivated.assert_redirect("/admin/users", "deactivate");
    let page = admin.get("/admin/users").await;
    assert!(page.body.contains("User leo deactivated."));
    leo.get("/tokens").await.assert_redirect(
        "/login?next=%2Ftokens",
        "a deactivated user is signed out at once",
    );
    assert!(
        leo.get("/login")
            .await
            .body
            .contains("Your session has ended")
    );
    assert_eq!(app.me_status(&phone).await, StatusCode::UNAUTHORIZED);

    let activated = admin
        .post(&format!("/admin/users/{leo_id}/activate"), &[])
        .await;
    activated.assert_redirect("/admin/users", "activate");
    assert_eq!(app.me_status(&phone).await, StatusCode::OK, "reactivated");

    let confirm = admin
        .get(&format!("/admin/users/{leo_id}/revoke-all"))
        .await;
    confirm.assert_html(StatusCode::OK, "revoke-all confirmation");
    assert!(confirm.body.contains("Revoke every token of leo?"));
    let revoked = admin
        .post(&format!("/admin/users/{leo_id}/revoke-all"), &[])
        .await;
    revoked.assert_redirect("/admin/users", "revoke all");
    assert!(
        admin
            .get("/admin/users")
            .await
            .body
            .contains("Revoked 3 token(s) of leo.")
    );
    for key in [&phone, &signup_key] {
        assert_eq!(app.me_status(key).await, StatusCode::UNAUTHORIZED);
    }
    let own_id = admin_own_id(&mut admin).await;
    let own = admin
        .post(&format!("/admin/users/{own_id}/deactivate"), &[])
        .await;
    own.assert_redirect("/admin/users", "deactivating yourself is refused");
    assert!(
        admin
            .get("/admin/users")
            .await
            .body
            .contains("cannot deactivate or delete your own account")
    );
}

async fn admin_own_id(admin: &mut Browser) -> String {
    let page = admin.get("/admin/users").await;
    let row = &page.body[page.body.find("data-username=\"admin\"").unwrap()..];
    row[row.find("/admin/users/").unwrap() + 13..][..36].to_owned()
}

async fn admins_filter_every_token_and_revoke_any(backend: Backend) {
    let app = spawn_app(backend).await;
    let mia = app.create_user("mia", false).await;
    let nora = app.create_user("nora", false).await;
    let mias = app.create_token(&mia, "mia sensor").await;
    app.create_token(&nora, "nora sensor").await;
    let mut admin = Browser::signed_in(&app, "admin", ADMIN_PASSWORD).await;

    let all = admin.get("/admin/tokens").await;
    all.assert_html(StatusCode::OK, "every token");
    assert!(all.body.contains("mia sensor") && all.body.contains("nora sensor"));
    let mine = admin.get("/admin/tokens?user=MIA&kind=device").await;
    assert!(
        mine.body.contains("mia sensor"),
        "filter by user, in any case"
    );
    assert!(!mine.body.contains("nora sensor"));
    assert_eq!(
        token_ids(&mine.body),
        vec![mias.id.clone()],
        "only mia's device token"
    );
    let sessions = admin.get("/admin/tokens?user=mia&kind=session").await;
    assert!(!sessions.body.contains("mia sensor"), "filter by kind");
    assert_eq!(token_ids(&sessions.body).len(), 1, "mia's login session");
    let nobody = admin.get("/admin/tokens?user=nobody").await;
    assert!(
        nobody
            .body
            .contains("There is no user named &ldquo;nobody&rdquo;.")
    );

    let confirm = admin
        .get(&format!("/admin/tokens/{}/revoke", mias.id))
        .await;
    confirm.assert_html(StatusCode::OK, "revoke confirmation");
    assert!(confirm.body.contains("“mia sensor”"), "{}", confirm.body);
    assert_eq!(
        app.me_status(&mias.key).await,
        StatusCode::OK,
        "not yet revoked"
    );
    let revoked = admin
        .post(&format!("/admin/tokens/{}/revoke", mias.id), &[])
        .await;
    revoked.assert_redirect("/admin/tokens", "revoke");
    assert!(
        admin
            .get("/admin/tokens")
            .await
            .body
            .contains("Token revoked.")
    );
    assert_eq!(app.me_status(&mias.key).await, StatusCode::UNAUTHORIZED);
    admin
        .get(&format!("/admin/tokens/{}/revoke", mias.id))
        .await
        .assert_html(StatusCode::NOT_FOUND, "a revoked token is gone");
}

async fn the_audit_page_lists_ui_actions_newest_first_with_pages(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut admin = Browser::signed_in(&app, "admin", ADMIN_PASSWORD).await;
    admin.get("/admin/users").await;
    admin
        .post(
            "/admin/users",
            &[("username", "olga"), ("password", PASSWORD)],
        )
        .await;
    let (id, _) = admin.create_token("printer", "7").await;
    admin.post(&format!("/tokens/{id}/delete"), &[]).await;
    let page = admin.get("/admin/audit").await;
    page.assert_html(StatusCode::OK, "audit page");
    let actions: Vec<&str> = page
        .body
        .split("data-action=\"")
        .skip(1)
        .map(|rest| &rest[..rest.find('"').unwrap()])
        .collect();
    assert_eq!(
        &actions[..3],
        ["token.revoked", "token.created", "user.created"],
        "newest first: {actions:?}"
    );
    assert!(page.body.contains("token “printer” of admin"));
    assert!(page.body.contains("127.0.0.1"), "client address shown");
    assert!(!page.body.contains("rel=\"next\""), "one page so far");

    for attempt in 0..50 {
        assert!(
            app.try_login(&format!("nobody{attempt}"), "wrong password")
                .await
                .is_err()
        );
    }
    let first = admin.get("/admin/audit").await;
    assert!(first.body.contains("Page 1 of 2"), "50 per page");
    assert!(first.body.contains("href=\"?page=2\""));
    let second = admin.get("/admin/audit?page=2").await;
    assert!(second.body.contains("Page 2 of 2"));
    assert!(
        second.body.contains("data-action=\"user.created\""),
        "older events on page 2"
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

/// The session tokens of `username`'s web sign-ins ("browser …"), through the admin API.
async fn browser_sessions(app: &TestApp, username: &str) -> Vec<serde_json::Value> {
    let path = format!("/api/admin/tokens/?user={username}&kind=session");
    let (status, listed) = status_and_json(app.get(&path, Some(&app.admin_key)).await).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["name"].as_str().unwrap().starts_with("browser "))
        .cloned()
        .collect()
}

/// The last `/admin/users/<uuid>` id on the row of `username`.
async fn user_id(admin: &mut Browser, username: &str) -> String {
    let page = admin.get("/admin/users").await;
    let row = &page.body[page
        .body
        .find(&format!("data-username=\"{username}\""))
        .unwrap_or_else(|| panic!("{username} listed"))..];
    row[row.find("/admin/users/").unwrap() + 13..][..36].to_owned()
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

async fn ui_actions_are_audited_and_hostile_login_names_are_escaped(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_user("sam", false).await;
    let hostile = "<img src=x onerror=alert(1)>";
    let mut stranger = Browser::new(&app);
    stranger
        .sign_in(hostile, "whatever")
        .await
        .assert_redirect("/login", "refused");
    let mut sam = Browser::signed_in(&app, "sam", PASSWORD).await;
    sam.get("/account/password").await;
    let changed = sam
        .post(
            "/account/password",
            &[
                ("current_password", PASSWORD),
                ("new_password", "sam's new password"),
                ("confirm_password", "sam's new password"),
            ],
        )
        .await;
    changed.assert_redirect("/tokens", "password changed");
    let mut admin = Browser::signed_in(&app, "admin", ADMIN_PASSWORD).await;
    let id = user_id(&mut admin, "sam").await;
    for action in ["deactivate", "activate", "revoke-all"] {
        admin
            .post(&format!("/admin/users/{id}/{action}"), &[])
            .await
            .assert_redirect("/admin/users", action);
    }
    let log = audit_log(&app).await;
    for (action, target) in [
        ("password.changed", "sam"),
        ("user.deactivated", "sam"),
        ("user.activated", "sam"),
        ("login.failed", hostile),
    ] {
        let event = log
            .iter()
            .find(|e| e["action"] == action && e["target_name"] == target)
            .unwrap_or_else(|| panic!("{action} of {target} from the UI: {log:?}"));
        let actor = if action == "login.failed" {
            "anonymous"
        } else if action == "password.changed" {
            "sam"
        } else {
            "admin"
        };
        assert_eq!(event["actor"], actor, "{action}");
        assert_eq!(event["client_address"], "127.0.0.1", "{action}");
    }
    assert!(
        log.iter()
            .any(|e| e["detail"] == "all tokens revoked" && e["target_owner"] == "sam"),
        "revoke-all from the UI: {log:?}"
    );
    let page = admin.get("/admin/audit").await;
    assert!(
        !page.body.contains(hostile),
        "a login name is shown as text, never as markup"
    );
    assert!(page.body.contains("&#60;img") || page.body.contains("&lt;img"));
}

async fn audit_pages_past_the_end_or_absurdly_far_answer_the_last_page(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut admin = Browser::signed_in(&app, "admin", ADMIN_PASSWORD).await;
    admin.create_token("one event", "never").await;
    for page in ["999", "184467440737095518", "18446744073709551615", "0"] {
        let answer = admin.get(&format!("/admin/audit?page={page}")).await;
        answer.assert_html(StatusCode::OK, page);
        assert!(
            answer.body.contains("Page 1 of 1") || !answer.body.contains("Page "),
            "{page}"
        );
        assert!(
            answer.body.contains("token “one event”"),
            "{page}: the events are shown"
        );
    }
    admin
        .get("/admin/audit?page=18446744073709551616")
        .await
        .assert_html(StatusCode::BAD_REQUEST, "a number too large for any page");
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

async fn deleting_this_browsers_own_session_signs_it_out_with_a_message(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut browser = Browser::signed_in(&app, "admin", ADMIN_PASSWORD).await;
    let page = browser.get("/tokens").await;
    let row = &page.body[..page.body.find("this browser").unwrap()];
    let own = &row[row.rfind("data-token-id=\"").unwrap() + 15..][..36];
    browser
        .post(&format!("/tokens/{own}/delete"), &[])
        .await
        .assert_redirect("/login", "deleting this browser's session signs out");
    let login = browser.get("/login").await;
    assert!(
        login
            .body
            .contains("Token deleted: this browser is signed out."),
        "{}",
        login.body
    );
    browser
        .get("/tokens")
        .await
        .assert_redirect("/login?next=%2Ftokens", "signed out");
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
