//! Admin endpoints: every token, any revocation, user lifecycle, and refusal for everyone else.

use reqwest::{Method, StatusCode};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};

use crate::helpers::{Backend, PASSWORD, spawn_app, spawn_app_with, status_and_json};
use crate::on_every_backend;
use multitoken::entities::{tokens, users};

on_every_backend!(
    admin_routes_refuse_non_admins_with_403_and_strangers_with_401,
    an_admin_lists_every_token_with_its_owner_and_filters_by_user,
    an_admin_revokes_any_single_token,
    an_admin_revokes_all_of_a_users_tokens_at_once,
    a_deactivated_user_is_locked_out_until_reactivated,
    deleting_a_user_deletes_its_tokens,
    usernames_are_unique_whatever_their_case,
    with_token_on_signup_a_new_user_gets_a_default_token_shown_once,
);

const ADMIN_ROUTES: [(&str, &str); 8] = [
    ("GET", "/api/admin/tokens/"),
    (
        "DELETE",
        "/api/admin/tokens/01a22804-46b4-7055-a65c-41a3a293599f/",
    ),
    ("POST", "/api/admin/users/admin/revoke-all/"),
    ("POST", "/api/admin/users/admin/deactivate/"),
    ("POST", "/api/admin/users/admin/activate/"),
    ("GET", "/api/admin/users/"),
    ("POST", "/api/admin/users/"),
    ("DELETE", "/api/admin/users/admin/"),
];

async fn admin_routes_refuse_non_admins_with_403_and_strangers_with_401(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.create_user("mallory", false).await;
    for (method, path) in ADMIN_ROUTES {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let body = json!({ "username": "eve", "password": PASSWORD, "is_admin": true });
        let as_user = app
            .client
            .request(method.clone(), app.url(path))
            .bearer_auth(&user)
            .json(&body)
            .send()
            .await
            .unwrap();
        let (status, body_seen) = status_and_json(as_user).await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "{method} {path} as a non-admin: {body_seen}"
        );
        assert!(body_seen["error"].is_string());
        let anonymous = app
            .client
            .request(method.clone(), app.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            anonymous.status(),
            StatusCode::UNAUTHORIZED,
            "{method} {path} without a token"
        );
    }
    assert_eq!(
        app.me_status(&app.admin_key).await,
        StatusCode::OK,
        "nothing happened to the admin"
    );
    let login = app
        .post(
            "/api/token/",
            None,
            json!({ "username": "eve", "password": PASSWORD }),
        )
        .await;
    assert_eq!(
        login.status(),
        StatusCode::BAD_REQUEST,
        "no user was created by the refused calls"
    );
}

async fn an_admin_lists_every_token_with_its_owner_and_filters_by_user(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.create_user("alice", false).await;
    let bob = app.create_user("bob", false).await;
    let alices = app.create_token(&alice, "phone").await;
    app.create_token(&bob, "phone").await;
    let (status, all) =
        status_and_json(app.get("/api/admin/tokens/", Some(&app.admin_key)).await).await;
    assert_eq!(status, StatusCode::OK);
    let all = all.as_array().unwrap();
    assert_eq!(
        all.len(),
        5,
        "admin's session, alice's and bob's sessions and phones: {all:?}"
    );
    let text = serde_json::to_string(all).unwrap();
    assert!(
        !text.contains(&alices.key) && !text.contains(&alice),
        "no keys in the admin list either"
    );
    let (status, only_alice) = status_and_json(
        app.get("/api/admin/tokens/?user=ALICE", Some(&app.admin_key))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let only_alice = only_alice.as_array().unwrap();
    assert_eq!(only_alice.len(), 2);
    assert!(
        only_alice.iter().all(|t| t["user"] == "alice"),
        "{only_alice:?}"
    );
    let phone = only_alice.iter().find(|t| t["name"] == "phone").unwrap();
    assert_eq!(phone["id"], alices.id.as_str());
    assert_eq!(phone["kind"], "device");
    assert!(phone["prefix"].is_string());
    let (status, _) = status_and_json(
        app.get("/api/admin/tokens/?user=nobody", Some(&app.admin_key))
            .await,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "an unknown user is not an empty list"
    );
    let (status, page) = status_and_json(
        app.get("/api/admin/tokens?limit=2&offset=1", Some(&app.admin_key))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page.as_array().unwrap().len(), 2, "limit applies");
    let (status, _) = status_and_json(
        app.get("/api/admin/tokens?limit=lots", Some(&app.admin_key))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

async fn an_admin_revokes_any_single_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let carol = app.create_user("carol", false).await;
    let device = app.create_token(&carol, "tv").await;
    let response = app
        .delete(
            &format!("/api/admin/tokens/{}/", device.id),
            Some(&app.admin_key),
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.me_status(&device.key).await,
        StatusCode::UNAUTHORIZED,
        "revoked at once"
    );
    assert_eq!(
        app.me_status(&carol).await,
        StatusCode::OK,
        "carol's other tokens stay"
    );
    let again = app
        .delete(
            &format!("/api/admin/tokens/{}/", device.id),
            Some(&app.admin_key),
        )
        .await;
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
}

async fn an_admin_revokes_all_of_a_users_tokens_at_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let dave = app.create_user("dave", false).await;
    let device = app.create_token(&dave, "car").await;
    let erin = app.create_user("erin", false).await;
    let (status, body) = status_and_json(
        app.post(
            "/api/admin/users/Dave/revoke-all/",
            Some(&app.admin_key),
            json!({}),
        )
        .await,
    )
    .await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "revoked": 2 })));
    assert_eq!(app.me_status(&dave).await, StatusCode::UNAUTHORIZED);
    assert_eq!(app.me_status(&device.key).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.me_status(&erin).await,
        StatusCode::OK,
        "other users keep their tokens"
    );
    let relogin = app.login("dave", PASSWORD).await;
    assert_eq!(
        app.me_status(&relogin).await,
        StatusCode::OK,
        "revoking tokens does not lock the user out"
    );
    let (status, _) = status_and_json(
        app.post(
            "/api/admin/users/nobody/revoke-all",
            Some(&app.admin_key),
            json!({}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn a_deactivated_user_is_locked_out_until_reactivated(backend: Backend) {
    let app = spawn_app(backend).await;
    let frank = app.create_user("frank", false).await;
    let device = app.create_token(&frank, "watch").await;
    let (status, body) = status_and_json(
        app.post(
            "/api/admin/users/frank/deactivate/",
            Some(&app.admin_key),
            json!({}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["user"], "frank");
    assert_eq!(body["is_active"], false);
    for key in [&frank, &device.key] {
        let (status, body) = status_and_json(app.get("/api/me/", Some(key)).await).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            body,
            json!({ "error": "Invalid user", "is_authenticated": false })
        );
    }
    let login = app
        .post(
            "/api/token/",
            None,
            json!({ "username": "frank", "password": PASSWORD }),
        )
        .await;
    assert_eq!(
        login.status(),
        StatusCode::BAD_REQUEST,
        "an inactive user cannot log in"
    );
    let (status, body) = status_and_json(
        app.post(
            "/api/admin/users/frank/activate/",
            Some(&app.admin_key),
            json!({}),
        )
        .await,
    )
    .await;
    assert_eq!((status, &body["is_active"]), (StatusCode::OK, &json!(true)));
    assert_eq!(
        app.me_status(&device.key).await,
        StatusCode::OK,
        "tokens work again once reactivated"
    );
    let (status, body) = status_and_json(
        app.post(
            "/api/admin/users/admin/deactivate/",
            Some(&app.admin_key),
            json!({}),
        )
        .await,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "an admin cannot lock themselves out: {body}"
    );
    let (status, _) = status_and_json(
        app.post(
            "/api/admin/users/nobody/deactivate/",
            Some(&app.admin_key),
            json!({}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn deleting_a_user_deletes_its_tokens(backend: Backend) {
    let app = spawn_app(backend).await;
    let grace = app.create_user("grace", false).await;
    let device = app.create_token(&grace, "sensor").await;
    let db = app.db().await;
    let user = users::Entity::find()
        .filter(users::Column::UsernameKey.eq("grace"))
        .one(&db)
        .await
        .unwrap()
        .unwrap();
    let before = tokens::Entity::find()
        .filter(tokens::Column::UserId.eq(user.id))
        .count(&db)
        .await
        .unwrap();
    assert_eq!(before, 2);
    let response = app
        .delete("/api/admin/users/grace/", Some(&app.admin_key))
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.me_status(&device.key).await, StatusCode::UNAUTHORIZED);
    let after = tokens::Entity::find()
        .filter(tokens::Column::UserId.eq(user.id))
        .count(&db)
        .await
        .unwrap();
    assert_eq!(
        after, 0,
        "the database cascades the deletion to every token row"
    );
    let own = app
        .delete("/api/admin/users/admin/", Some(&app.admin_key))
        .await;
    assert_eq!(
        own.status(),
        StatusCode::CONFLICT,
        "an admin cannot delete themselves"
    );
}

async fn usernames_are_unique_whatever_their_case(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_user("Heidi", false).await;
    for name in ["heidi", "HEIDI", " Heidi "] {
        let (status, body) = status_and_json(
            app.post(
                "/api/admin/users/",
                Some(&app.admin_key),
                json!({ "username": name, "password": PASSWORD }),
            )
            .await,
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT, "{name:?}: {body}");
    }
    let (status, body) = status_and_json(
        app.post(
            "/api/admin/users/",
            Some(&app.admin_key),
            json!({ "username": "ivan", "password": "short" }),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["fields"]["password"].is_array(), "{body}");
    let (status, body) = status_and_json(
        app.post(
            "/api/admin/users/",
            Some(&app.admin_key),
            json!({ "username": "a/b", "password": PASSWORD }),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["fields"]["username"].is_array(), "{body}");
    let (_, listed) =
        status_and_json(app.get("/api/admin/users/", Some(&app.admin_key)).await).await;
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["user"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin", "Heidi"], "the spelling is kept");
}

async fn with_token_on_signup_a_new_user_gets_a_default_token_shown_once(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.token_on_signup = true).await;
    let (status, body) = status_and_json(
        app.post(
            "/api/admin/users/",
            Some(&app.admin_key),
            json!({ "username": "judy", "password": PASSWORD }),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["user"], "judy");
    assert_eq!(body["default_token"]["token_name"], "default");
    let key = body["default_token"]["id_token"].as_str().unwrap();
    let (_, me) = status_and_json(app.get("/api/me/", Some(key)).await).await;
    assert_eq!(me["user"], "judy");
    assert_eq!(me["token"]["name"], "default");
    assert_eq!(me["token"]["kind"], "device");
    let listed: Value = app
        .get("/api/tokens/", Some(key))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        !listed.to_string().contains(key),
        "the key is not shown again"
    );
}
