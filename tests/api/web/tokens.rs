//! The tokens page: a new key shown once, names escaped, deletion, expiry choices.

use super::*;

on_every_backend!(
    a_new_token_key_is_shown_exactly_once_and_works,
    token_names_and_usernames_are_escaped,
    deleting_a_token_takes_a_confirmation_and_ends_the_key,
    expiry_choices_set_the_expiry_and_bad_ones_are_refused,
    deleting_this_browsers_own_session_signs_it_out_with_a_message,
);

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
