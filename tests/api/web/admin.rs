//! Admin pages: refused to others; users, every token, the audit log.

use super::*;

on_every_backend!(
    admin_pages_refuse_non_admins,
    admins_create_deactivate_and_activate_users_and_revoke_all_their_tokens,
    admins_filter_every_token_and_revoke_any,
    the_audit_page_lists_ui_actions_newest_first_with_pages,
    ui_actions_are_audited_and_hostile_login_names_are_escaped,
    audit_pages_past_the_end_or_absurdly_far_answer_the_last_page,
);

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
        "/admin".to_owned(),
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

    // (Not failed logins: a flood of those from one address is collapsed into a few events.)
    for n in 0..50 {
        app.create_token(&app.admin_key, &format!("filler {n}"))
            .await;
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

on_every_backend!(the_audit_page_filters_and_says_when_a_filter_is_wrong,);

async fn the_audit_page_filters_and_says_when_a_filter_is_wrong(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_user("pat", false).await;
    assert!(app.try_login("pat", "wrong password").await.is_err());
    let mut admin = Browser::signed_in(&app, "admin", ADMIN_PASSWORD).await;
    let page = admin.get("/admin/audit?action=login.failed&user=pat").await;
    page.assert_html(StatusCode::OK, "the filtered log");
    let actions: Vec<&str> = page
        .body
        .split("<tr data-action=\"")
        .skip(1)
        .map(|rest| &rest[..rest.find('"').unwrap()])
        .collect();
    assert_eq!(actions, ["login.failed"], "only pat's failed login");
    assert!(
        page.body
            .contains(r#"<option value="login.failed" selected>"#),
        "the filter is shown as chosen"
    );
    assert!(
        page.body
            .contains("/api/admin/audit/export?user=pat&#38;action=login.failed")
            || page
                .body
                .contains("/api/admin/audit/export?user=pat&amp;action=login.failed"),
        "the export link carries the filter"
    );
    let wrong = admin.get("/admin/audit?since=someday").await;
    wrong.assert_html(StatusCode::OK, "a wrong filter still shows the log");
    assert!(
        wrong
            .body
            .contains("The filter was not used: since: must be a date"),
        "{}",
        wrong.body
    );
}
