//! `/pair` in the browser: sign in first and come back, the code typed in any form, the
//! device's request shown, the token's name and access chosen, approve or deny; wrong codes
//! answered with a message and throttled.

use super::*;
use crate::pairing::{poll, start};
use serde_json::{Value, json};

on_every_backend!(
    pairing_signs_in_first_then_approves_with_the_chosen_name_and_access,
    wrong_codes_get_a_message_and_are_throttled_and_deny_refuses_the_device,
);

async fn pairing_app(backend: Backend, max_failures: u32) -> TestApp {
    spawn_app_with(backend, |settings| {
        settings.pairing_interval = Duration::from_secs(1);
        settings.login_max_failures = max_failures;
    })
    .await
}

fn code_of(started: &Value) -> String {
    started["user_code"].as_str().unwrap().to_owned()
}

async fn pairing_signs_in_first_then_approves_with_the_chosen_name_and_access(backend: Backend) {
    let app = pairing_app(backend, 1000).await;
    app.create_user("hana", false).await;
    let owner = app.login("hana", PASSWORD).await;
    let started = start(&app, json!({"name": "garage <sensor>"})).await;
    let code = code_of(&started);
    let link = started["verification_uri_complete"].as_str().unwrap();
    let path = &link[app.address.len()..];

    let mut browser = Browser::new(&app);
    let first = browser.get(path).await;
    assert_eq!(first.status, StatusCode::SEE_OTHER, "sign in first");
    let login = first.location.clone().unwrap();
    assert!(
        login.starts_with("/login?next=") && login.contains("pair"),
        "and come back to /pair: {login}"
    );
    browser.get(&login).await;
    let signed_in = browser
        .post(
            "/login",
            &[("username", "hana"), ("password", PASSWORD), ("next", path)],
        )
        .await;
    signed_in.assert_redirect(path, "back to the pairing link after signing in");
    let entry = browser.get(path).await;
    entry.assert_html(StatusCode::OK, "the code form");
    assert_eq!(
        field_value(&entry.body, "code").as_deref(),
        Some(code.as_str()),
        "the link fills the code in"
    );

    let typed = code.replace('-', " ").to_lowercase();
    let review = browser.post("/pair", &[("code", &typed)]).await;
    review.assert_html(
        StatusCode::OK,
        "the right code shows what the device asked for",
    );
    assert!(
        review.body.contains("garage &#60;sensor&#62;") && !review.body.contains("<sensor>"),
        "the device's suggested name, escaped"
    );
    assert!(
        review.body.contains("127.0.0.1"),
        "where the device asked from"
    );
    assert!(
        review.body.contains("data-fact=\"code-expires\""),
        "until when the code works"
    );

    let decided = browser
        .post(
            "/pair/decision",
            &[
                ("code", &code),
                ("decision", "approve"),
                ("name", "garage"),
                ("expires", "30"),
                ("access", "read_only"),
                ("scopes", "doors"),
            ],
        )
        .await;
    assert_eq!(decided.status, StatusCode::SEE_OTHER, "{}", decided.body);
    let to = decided.location.clone().unwrap();
    assert!(to.starts_with("/tokens/"), "to the new token's page: {to}");
    let token_page = browser.get(&to).await;
    token_page.assert_html(StatusCode::OK, "the paired token's page");
    assert!(
        token_page.body.contains("Device paired"),
        "{}",
        token_page.body
    );

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, collected) = poll(&app, started["device_code"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{collected}");
    assert_eq!(collected["token_name"], "garage");
    assert_eq!(
        to,
        format!("/tokens/{}", collected["token_id"].as_str().unwrap())
    );
    let (_, listed) = status_and_json(app.get("/api/tokens/", Some(&owner)).await).await;
    let token = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "garage")
        .unwrap_or_else(|| panic!("the paired token listed: {listed}"))
        .clone();
    assert_eq!(token["read_only"], true, "{token}");
    assert_eq!(token["scopes"], json!(["doors"]), "{token}");
    assert!(token["expires_at"].is_string(), "30 days: {token}");
}

async fn wrong_codes_get_a_message_and_are_throttled_and_deny_refuses_the_device(backend: Backend) {
    let app = pairing_app(backend, 2).await;
    app.create_user("ivo", false).await;
    let mut browser = Browser::signed_in(&app, "ivo", PASSWORD).await;
    browser.get("/pair").await;

    let denied = start(&app, json!({})).await;
    let code = code_of(&denied);
    let no_csrf = browser
        .post_raw("/pair/decision", &[("code", &code), ("decision", "deny")])
        .await;
    assert_eq!(no_csrf.status, StatusCode::FORBIDDEN, "no CSRF token");
    let refused = browser
        .post("/pair/decision", &[("code", &code), ("decision", "deny")])
        .await;
    refused.assert_redirect("/tokens", "denied");
    let (status, body) = poll(&app, denied["device_code"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "access_denied", "{body}");

    // The denied code is used; one more wrong code reaches the limit of two.
    let wrong = browser.post("/pair", &[("code", &code)]).await;
    let back = wrong.location.clone().expect("back to the form");
    assert!(back.starts_with("/pair?code="), "{back}");
    let message = browser.get(&back).await;
    message.assert_html(StatusCode::OK, "the form again");
    assert!(
        message
            .body
            .contains("unknown, has expired or was already used"),
        "{}",
        message.body
    );
    browser.post("/pair", &[("code", "ZZZZ-ZZZZ")]).await;
    let fresh = start(&app, json!({})).await;
    let locked = browser.post("/pair", &[("code", &code_of(&fresh))]).await;
    let page = browser.get(locked.location.as_deref().unwrap()).await;
    assert!(
        page.body.contains("Too many wrong codes"),
        "throttled like failed sign-ins: {}",
        page.body
    );
}
