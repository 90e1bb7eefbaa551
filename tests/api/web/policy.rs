//! A token's access in the UI: the create form's access fields, the marks in the lists, the
//! token's own page (policy, last use, refused attempts) and its edit form.

use super::*;
use serde_json::{Value, json};

on_every_backend!(
    the_create_form_sets_access_and_the_lists_mark_it,
    the_token_page_shows_policy_last_use_and_refused_attempts,
    the_edit_form_changes_the_policy_at_once_and_refuses_bad_input,
    a_token_page_is_its_owners_only_and_its_form_needs_the_csrf_token,
    the_token_page_rotates_the_key_shows_it_once_and_says_until_when_the_old_one_works,
);

/// The HTML of the table row of token `id`.
fn row<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html
        .find(&format!("data-token-id=\"{id}\""))
        .unwrap_or_else(|| panic!("a row for {id}"));
    let end = html[start..].find("</tr>").unwrap() + start;
    &html[start..end]
}

async fn the_create_form_sets_access_and_the_lists_mark_it(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_user("gina", false).await;
    let owner = app.login("gina", PASSWORD).await;
    let mut browser = Browser::signed_in(&app, "gina", PASSWORD).await;
    let created = browser
        .post(
            "/tokens",
            &[
                ("name", "thermostat"),
                ("expires", "7"),
                ("access", "read_only"),
                ("scopes", "schedule, telemetry"),
                ("allowed_ips", "127.0.0.1\r\n10.0.0.0/8"),
                ("idle_expiry_days", "30"),
                ("max_uses", "5"),
                ("rate_limit_per_minute", "30"),
                ("description", "in the kitchen"),
            ],
        )
        .await;
    created.assert_html(StatusCode::OK, "the token is created with its access");
    let id = token_ids(&created.body)[0].clone();
    let token = app.listed_token(&owner, &id).await;
    assert_eq!(token["read_only"], true, "{token}");
    assert_eq!(token["scopes"], json!(["schedule", "telemetry"]), "{token}");
    assert_eq!(
        token["allowed_ips"],
        json!(["127.0.0.1/32", "10.0.0.0/8"]),
        "{token}"
    );
    assert_eq!(token["idle_expiry_days"], 30, "{token}");
    assert_eq!(token["remaining_uses"], 5, "{token}");
    assert_eq!(token["rate_limit_per_minute"], 30, "{token}");
    assert!(
        row(&created.body, &id).contains("30/min"),
        "the list marks the rate limit"
    );
    assert_eq!(token["description"], "in the kitchen", "{token}");

    let plain = browser
        .post("/tokens", &[("name", "plain"), ("expires", "never")])
        .await;
    plain.assert_html(StatusCode::OK, "a token without access fields");
    let plain_id = token_ids(&plain.body)[0].clone();
    let token = app.listed_token(&owner, &plain_id).await;
    assert_eq!(token["read_only"], false, "full access by default: {token}");
    assert_eq!(token["allowed_ips"], json!([]), "{token}");
    assert_eq!(token["idle_expiry_days"], Value::Null, "{token}");
    assert_eq!(token["rate_limit_per_minute"], Value::Null, "{token}");

    let page = browser.get("/tokens").await;
    let marked = row(&page.body, &id);
    for mark in [
        "read-only",
        "network-bound",
        "scoped",
        "5 uses left",
        "expires soon",
    ] {
        assert!(
            marked.contains(&format!(">{mark}</span>")),
            "{mark}: {marked}"
        );
    }
    let unmarked = row(&page.body, &plain_id);
    assert!(!unmarked.contains("badge mark"), "no marks: {unmarked}");
    assert!(
        marked.contains(&format!("href=\"/tokens/{id}\"")),
        "the name links to the token's page"
    );

    let mut admin = Browser::signed_in(&app, "admin", ADMIN_PASSWORD).await;
    let all = admin.get("/admin/tokens?user=gina").await;
    all.assert_html(StatusCode::OK, "the admin's list");
    let marked = row(&all.body, &id);
    for mark in ["read-only", "network-bound", "5 uses left", "expires soon"] {
        assert!(
            marked.contains(&format!(">{mark}</span>")),
            "admin list, {mark}: {marked}"
        );
    }

    let refused = browser
        .post(
            "/tokens",
            &[
                ("name", "both"),
                ("allowed_ips", "127.0.0.1"),
                ("pin_ip", "on"),
            ],
        )
        .await;
    refused.assert_redirect("/tokens", "pin beside networks goes back to the form");
    let page = browser.get("/tokens").await;
    assert!(
        page.body.contains("flash-error") && page.body.contains("pin_ip"),
        "the conflict is explained: {}",
        page.body
    );
    let bad = browser
        .post("/tokens", &[("name", "bad"), ("allowed_ips", "10.0.0.1/8")])
        .await;
    bad.assert_redirect("/tokens", "host bits set");
    let (_, list) = status_and_json(app.get("/api/tokens/", Some(&owner)).await).await;
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|t| t["name"] != "both" && t["name"] != "bad"),
        "refused forms create nothing: {list}"
    );
}

async fn the_token_page_shows_policy_last_use_and_refused_attempts(backend: Backend) {
    let app = spawn_app_with(backend, |settings| {
        settings.last_used_flush = Duration::from_millis(200);
    })
    .await;
    app.create_user("hugo", false).await;
    let mut browser = Browser::signed_in(&app, "hugo", PASSWORD).await;
    let created = browser
        .post(
            "/tokens",
            &[
                ("name", "sensor"),
                ("access", "read_only"),
                ("allowed_ips", "127.0.0.1"),
                ("description", "<b>roof</b>"),
            ],
        )
        .await;
    let id = token_ids(&created.body)[0].clone();
    let key = revealed_key(&created.body).unwrap();
    let used = app
        .client
        .get(app.url("/api/me/"))
        .header("Authorization", format!("Token {key}"))
        .header("User-Agent", "sensor-firmware/1.2 <x>")
        .send()
        .await
        .unwrap();
    assert_eq!(used.status(), StatusCode::OK);
    let write = app
        .post("/api/tokens/", Some(&key), json!({"name": "x"}))
        .await;
    assert_eq!(
        write.status(),
        StatusCode::FORBIDDEN,
        "a read-only token cannot write"
    );

    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let page = loop {
        let page = browser.get(&format!("/tokens/{id}")).await;
        page.assert_html(StatusCode::OK, "the token's page");
        // Both are written back in batches; during a write-back a page may briefly show
        // neither the pending nor the written use, so wait for both.
        let settled = page.body.contains("id=\"refused\"")
            && page.body.contains("data-fact=\"last-used-address\"");
        if settled || std::time::Instant::now() > deadline {
            break page;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let body = &page.body;
    assert!(
        body.contains("only read (GET, HEAD, OPTIONS)</dd>"),
        "{body}"
    );
    assert!(body.contains("<code>127.0.0.1/32</code>"), "{body}");
    assert!(
        body.contains("&#60;b&#62;roof&#60;/b&#62;") && !body.contains("<b>roof</b>"),
        "the description is escaped"
    );
    assert!(
        body.contains("data-fact=\"last-used-address\">127.0.0.1</code>"),
        "the last use's address: {body}"
    );
    assert!(
        body.contains("sensor-firmware/1.2 &#60;x&#62;"),
        "the last use's user agent, escaped: {body}"
    );
    assert!(
        body.contains("id=\"refused\""),
        "a table of refused attempts: {body}"
    );
    let refused = &body[body.find("id=\"refused\"").unwrap()..];
    assert!(
        refused.contains("read-only token, a write") && refused.contains("<code>127.0.0.1</code>"),
        "the refused write, with its address: {refused}"
    );
    assert!(!body.contains(&key), "the key is never on the page");
}

async fn the_edit_form_changes_the_policy_at_once_and_refuses_bad_input(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_user("iris", false).await;
    let owner = app.login("iris", PASSWORD).await;
    let mut browser = Browser::signed_in(&app, "iris", PASSWORD).await;
    let (id, key) = browser.create_token("ci job", "never").await;
    let page = browser.get(&format!("/tokens/{id}")).await;
    page.assert_html(StatusCode::OK, "the token's page");
    assert!(
        page.body.contains("read and write</dd>"),
        "full access at first"
    );

    let saved = browser
        .post(
            &format!("/tokens/{id}"),
            &[
                ("name", "ci job (read)"),
                ("access", "read_only"),
                ("scopes", "deploy"),
                ("allowed_ips", ""),
                ("idle_expiry_days", "14"),
                ("rate_limit_per_minute", "120"),
                ("description", "nightly"),
                ("metadata", r#"{"team": "ops"}"#),
            ],
        )
        .await;
    saved.assert_redirect(&format!("/tokens/{id}"), "saved, back to the token's page");
    let write = app
        .post("/api/tokens/", Some(&key), json!({"name": "x"}))
        .await;
    assert_eq!(
        write.status(),
        StatusCode::FORBIDDEN,
        "read-only from the very next request"
    );
    let token = app.listed_token(&owner, &id).await;
    assert_eq!(token["name"], "ci job (read)", "{token}");
    assert_eq!(token["read_only"], true, "{token}");
    assert_eq!(token["scopes"], json!(["deploy"]), "{token}");
    assert_eq!(token["idle_expiry_days"], 14, "{token}");
    assert_eq!(token["rate_limit_per_minute"], 120, "{token}");
    assert_eq!(token["metadata"], json!({"team": "ops"}), "{token}");
    let page = browser.get(&format!("/tokens/{id}")).await;
    assert!(page.body.contains("saved."), "a success message");
    assert!(
        page.body.contains("&#34;team&#34;: &#34;ops&#34;"),
        "metadata shown"
    );

    for (field, value, why) in [
        ("allowed_ips", "10.0.0.1/8", "host bits set"),
        ("metadata", "[1, 2]", "metadata must be an object"),
        ("idle_expiry_days", "0", "idle expiry out of range"),
        ("scopes", "bad/scope", "a scope with a slash"),
        ("access", "admin", "an unknown access choice"),
    ] {
        let refused = browser
            .post(
                &format!("/tokens/{id}"),
                &[("name", "renamed?"), (field, value)],
            )
            .await;
        refused.assert_redirect(&format!("/tokens/{id}"), why);
        let page = browser.get(&format!("/tokens/{id}")).await;
        assert!(page.body.contains("flash-error"), "{why}: explained");
        let token = app.listed_token(&owner, &id).await;
        assert_eq!(
            token["name"], "ci job (read)",
            "{why}: nothing changed: {token}"
        );
        assert_eq!(token["read_only"], true, "{why}: nothing changed: {token}");
    }

    let reopened = browser
        .post(
            &format!("/tokens/{id}"),
            &[
                ("name", "ci job"),
                ("access", "full"),
                ("idle_expiry_days", ""),
            ],
        )
        .await;
    reopened.assert_redirect(&format!("/tokens/{id}"), "saved");
    let token = app.listed_token(&owner, &id).await;
    assert_eq!(token["read_only"], false, "{token}");
    assert_eq!(
        token["idle_expiry_days"],
        Value::Null,
        "an empty field clears it: {token}"
    );
    assert_eq!(token["scopes"], json!([]), "{token}");
    assert_eq!(token["metadata"], json!({}), "{token}");
}

async fn a_token_page_is_its_owners_only_and_its_form_needs_the_csrf_token(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_user("jack", false).await;
    app.create_user("kate", false).await;
    let kate = app.login("kate", PASSWORD).await;
    let mut jack = Browser::signed_in(&app, "jack", PASSWORD).await;
    let mut kates_browser = Browser::signed_in(&app, "kate", PASSWORD).await;
    let (id, _) = kates_browser.create_token("kate's", "never").await;

    let page = jack.get(&format!("/tokens/{id}")).await;
    page.assert_html(StatusCode::NOT_FOUND, "another user's token looks missing");
    assert!(!page.body.contains("kate&#39;s") && !page.body.contains("kate's"));
    let changed = jack
        .post(
            &format!("/tokens/{id}"),
            &[("name", "stolen"), ("access", "read_only")],
        )
        .await;
    changed.assert_html(
        StatusCode::NOT_FOUND,
        "another user's token cannot be changed",
    );
    let missing = jack.get(&format!("/tokens/{}", uuid::Uuid::new_v4())).await;
    missing.assert_html(StatusCode::NOT_FOUND, "an unknown id");
    let malformed = jack.get("/tokens/not-a-uuid").await;
    malformed.assert_html(StatusCode::NOT_FOUND, "a malformed id");

    let forged = kates_browser
        .post_raw(
            &format!("/tokens/{id}"),
            &[
                ("csrf", "forged"),
                ("name", "forged"),
                ("access", "read_only"),
            ],
        )
        .await;
    forged.assert_html(StatusCode::FORBIDDEN, "a forged CSRF token");
    let token = app.listed_token(&kate, &id).await;
    assert_eq!(token["name"], "kate's", "nothing changed: {token}");
    assert_eq!(token["read_only"], false, "nothing changed: {token}");
}

async fn the_token_page_rotates_the_key_shows_it_once_and_says_until_when_the_old_one_works(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.create_user("lena", false).await;
    let mut browser = Browser::signed_in(&app, "lena", PASSWORD).await;
    let (id, old) = browser.create_token("gateway", "never").await;
    browser.get(&format!("/tokens/{id}")).await;
    let rotated = browser
        .post(&format!("/tokens/{id}/rotate"), &[("grace", "86400")])
        .await;
    rotated.assert_html(StatusCode::OK, "the answer shows the new key");
    let new = revealed_key(&rotated.body).expect("the new key is on the page");
    assert_ne!(new, old);
    assert!(
        rotated.body.contains("data-fact=\"previous-key\""),
        "the old key's grace is shown"
    );
    assert!(rotated.body.contains("in 24 hours"), "{}", rotated.body);
    assert_eq!(
        app.me_status(&new).await,
        StatusCode::OK,
        "the new key works"
    );
    assert_eq!(
        app.me_status(&old).await,
        StatusCode::OK,
        "the old one, for now"
    );
    let again = browser.get(&format!("/tokens/{id}")).await;
    assert!(
        revealed_key(&again.body).is_none(),
        "a later visit does not show the key"
    );
    assert!(!again.body.contains(&new));

    let leaked = browser
        .post(&format!("/tokens/{id}/rotate"), &[("grace", "0")])
        .await;
    leaked.assert_html(StatusCode::OK, "rotated again");
    assert!(
        !leaked.body.contains("data-fact=\"previous-key\""),
        "no grace: {}",
        leaked.body
    );
    assert_eq!(
        app.me_status(&new).await,
        StatusCode::UNAUTHORIZED,
        "ended at once"
    );
    assert_eq!(app.me_status(&old).await, StatusCode::UNAUTHORIZED);
    for bad in ["5", "forever", ""] {
        let refused = browser
            .post(&format!("/tokens/{id}/rotate"), &[("grace", bad)])
            .await;
        refused.assert_redirect(&format!("/tokens/{id}"), bad);
    }
}
