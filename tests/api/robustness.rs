//! Bad input of every kind gets a clear JSON 4xx; probes and the OpenAPI document answer.

use reqwest::{Method, StatusCode};
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

use crate::helpers::{Backend, spawn_app, status_and_json};
use crate::on_every_backend;

on_every_backend!(
    a_body_over_64_kib_is_413_in_json,
    malformed_bodies_are_400_and_unknown_media_types_415,
    unknown_routes_are_json_404s_and_wrong_methods_405s,
    health_answers_and_readiness_reflects_the_database,
    the_openapi_document_describes_every_endpoint,
    answers_to_bad_input_are_statuses_the_document_lists,
    paths_are_normalized_and_every_answer_carries_its_headers,
);

async fn a_body_over_64_kib_is_413_in_json(backend: Backend) {
    let app = spawn_app(backend).await;
    let huge = json!({ "username": "admin", "password": "x".repeat(70 * 1024) });
    let (status, body) = status_and_json(app.post("/api/token/", None, huge).await).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(body["error"].as_str().unwrap().contains("64"), "{body}");
    // Streamed without a Content-Length: the limit holds while reading, too.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..80).map(|_| Ok(vec![b' '; 1024])).collect();
    let streamed = app
        .client
        .post(app.url("/api/tokens/"))
        .bearer_auth(&app.admin_key)
        .header("Content-Type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        app.me_status(&app.admin_key).await,
        StatusCode::OK,
        "the server keeps answering"
    );
}

async fn malformed_bodies_are_400_and_unknown_media_types_415(backend: Backend) {
    let app = spawn_app(backend).await;
    let cases: [(&str, &[u8], StatusCode); 7] = [
        (
            "application/json",
            b"{\"username\": ",
            StatusCode::BAD_REQUEST,
        ),
        ("application/json", b"[1, 2, 3]", StatusCode::BAD_REQUEST),
        (
            "application/json",
            b"\xff\xfe\x00garbage",
            StatusCode::BAD_REQUEST,
        ),
        (
            "application/json",
            b"{\"username\": 5, \"password\": null}",
            StatusCode::BAD_REQUEST,
        ),
        (
            "application/x-www-form-urlencoded",
            b"username=%ZZ&&&=",
            StatusCode::BAD_REQUEST,
        ),
        (
            "text/plain",
            b"username=admin",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "multipart/form-data; boundary=x",
            b"--x--",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
    ];
    for (content_type, body, expected) in cases {
        let response = app
            .client
            .post(app.url("/api/token/"))
            .header("Content-Type", content_type)
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        let (status, json) = status_and_json(response).await;
        assert_eq!(
            status,
            expected,
            "{content_type} {:?}: {json}",
            String::from_utf8_lossy(body)
        );
        assert!(
            json["error"].is_string(),
            "errors are JSON with an `error`: {json}"
        );
    }
    let hostile_username = json!({ "username": "admin\u{0}' OR 1=1 --", "password": "x" });
    let (status, _) = status_and_json(app.post("/api/token/", None, hostile_username).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Invisible direction and spacing marks could make a name look like another: refused.
    let rtl_and_zero_width = "\u{202e}evil\u{200b}";
    let request = json!({ "name": rtl_and_zero_width });
    let (status, body) = status_and_json(
        app.post("/api/tokens/", Some(&app.admin_key), request)
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // Emoji sequences joined by zero-width joiners are ordinary text: stored exactly as sent.
    let family = "\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467} sensor";
    let (status, body) = status_and_json(
        app.post(
            "/api/tokens/",
            Some(&app.admin_key),
            json!({ "name": family }),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["name"], family);
    let hostile_paths = [
        "/api/admin/tokens/?user=%00",
        "/api/admin/users/%00/deactivate/",
        "/api/admin/users/a%2Fb/activate",
    ];
    for path in hostile_paths {
        let response = if path.contains('?') {
            app.get(path, Some(&app.admin_key)).await
        } else {
            app.post(path, Some(&app.admin_key), json!({})).await
        };
        let (status, body) = status_and_json(response).await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "{path}: a name no user can have is not found: {body}"
        );
    }
}

async fn unknown_routes_are_json_404s_and_wrong_methods_405s(backend: Backend) {
    let app = spawn_app(backend).await;
    // (Paths outside the API answer an HTML page instead: see `web::browser_routes_answer_html_error_pages`.)
    for path in [
        "/api/nothing/",
        "/api",
        "/api/tokens/x/y/z",
        "/auth/nothing",
    ] {
        let (status, body) = status_and_json(app.get(path, None).await).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(body, json!({ "error": "not found" }));
    }
    let cases = [
        (Method::PUT, "/api/tokens/", "GET, POST"),
        (
            Method::GET,
            "/api/tokens/0193a1b2-0000-7000-8000-000000000000",
            "DELETE, PATCH",
        ),
        (Method::PATCH, "/api/admin/users/someone/", "DELETE"),
        (Method::DELETE, "/api/token", "POST"),
    ];
    for (method, path, allow) in cases {
        let response = app
            .client
            .request(method.clone(), app.url(path))
            .send()
            .await
            .unwrap();
        let allowed = response
            .headers()
            .get("allow")
            .map(|v| v.to_str().unwrap().to_owned());
        let (status, body) = status_and_json(response).await;
        assert_eq!(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}: {body}"
        );
        assert_eq!(
            allowed.as_deref(),
            Some(allow),
            "{method} {path} says what is allowed"
        );
        assert!(body["error"].is_string());
    }
}

async fn health_answers_and_readiness_reflects_the_database(backend: Backend) {
    let is_postgres = matches!(backend, Backend::Postgres(_));
    let app = spawn_app(backend.clone()).await;
    for path in ["/healthz", "/healthz/", "/readyz", "/readyz/"] {
        assert_eq!(app.get(path, None).await.status(), StatusCode::OK, "{path}");
    }
    if let (true, Backend::Postgres(server_url)) = (is_postgres, backend) {
        // Take the database away under the running server: readiness must say so, liveness must not.
        let name = app.database.url.rsplit('/').next().unwrap().to_owned();
        let admin = sea_orm::Database::connect(server_url.as_str())
            .await
            .unwrap();
        admin
            .execute_unprepared(&format!(r#"DROP DATABASE "{name}" WITH (FORCE)"#))
            .await
            .expect("drop the test database");
        let (status, body) = status_and_json(app.get("/readyz", None).await).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(app.get("/healthz", None).await.status(), StatusCode::OK);
        let (status, body) = status_and_json(app.get("/api/me/", Some(&app.admin_key)).await).await;
        assert!(
            status.is_server_error() && body["error"] == "internal server error",
            "no internals leak: {body}"
        );
    }
}

async fn the_openapi_document_describes_every_endpoint(backend: Backend) {
    let app = spawn_app(backend).await;
    let (status, doc) = status_and_json(app.get("/api/openapi.json", None).await).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "OpenAPI 3"
    );
    let paths = doc["paths"].as_object().unwrap();
    let expected: [(&str, &str); 19] = [
        ("/api/token", "post"),
        ("/api/non-expiring-token", "post"),
        ("/api/me", "get"),
        ("/api/logout", "post"),
        ("/api/logout", "get"),
        ("/api/logout-all", "post"),
        ("/api/tokens", "get"),
        ("/api/tokens", "post"),
        ("/api/tokens/{id}", "delete"),
        ("/api/admin/tokens", "get"),
        ("/api/admin/tokens/{id}", "delete"),
        ("/api/admin/users/{username}/revoke-all", "post"),
        ("/api/admin/users/{username}/deactivate", "post"),
        ("/api/admin/users/{username}/activate", "post"),
        ("/api/admin/users", "get"),
        ("/api/admin/users", "post"),
        ("/api/admin/users/{username}", "delete"),
        ("/healthz", "get"),
        ("/readyz", "get"),
    ];
    for (path, method) in expected {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} missing from the document"
        );
    }
    assert!(
        doc["components"]["schemas"]
            .get("IssuedKeyResponse")
            .is_some()
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["token"]["scheme"],
        Value::from("bearer")
    );
}

/// Whether the OpenAPI document lists `status` for `method path`.
fn documents(doc: &Value, method: &str, path: &str, status: StatusCode) -> bool {
    doc["paths"][path][method]["responses"]
        .get(status.as_str())
        .is_some()
}

/// Found by schemathesis (.ci/schemathesis): answers the document did not describe.
async fn answers_to_bad_input_are_statuses_the_document_lists(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, doc) = status_and_json(app.get("/api/openapi.json", None).await).await;
    for (path, query) in [
        ("/api/admin/audit", "offset=-1"),
        ("/api/admin/tokens", "limit=ten"),
        ("/api/admin/tokens", "kind=nonsense"),
    ] {
        let response = app
            .get(&format!("{path}/?{query}"), Some(&app.admin_key))
            .await;
        let (status, body) = status_and_json(response).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}?{query}: {body}");
        assert!(body["error"].is_string(), "{path}?{query}: {body}");
        assert!(
            documents(&doc, "get", path, status),
            "GET {path} must document its 400"
        );
    }
    let session = app.login("admin", crate::helpers::ADMIN_PASSWORD).await;
    let malformed = app
        .client
        .post(app.url("/api/logout-all/"))
        .bearer_auth(&session)
        .header("Content-Type", "application/json")
        .body("\"not an object\"")
        .send()
        .await
        .unwrap();
    let (status, body) = status_and_json(malformed).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(documents(&doc, "post", "/api/logout-all", status));
    // A bare POST is accepted, so the document must not call the body required.
    let bare = app
        .request(Method::POST, "/api/logout-all/", Some(&session))
        .await;
    assert_eq!(bare.status(), StatusCode::OK);
    assert_ne!(
        doc["paths"]["/api/logout-all"]["post"]["requestBody"]["required"],
        Value::Bool(true),
        "logout-all's body is optional"
    );
    assert!(
        documents(&doc, "post", "/api/token", StatusCode::FORBIDDEN),
        "a login refused when device tokens fill the limit is a documented 403"
    );
}

/// One hand-written middleware (`routes/middleware.rs`) does what three stock ones did: it must
/// merge and trim slashes (keeping the query), and add `nosniff` everywhere and `no-store`
/// wherever a handler chose no caching of its own.
async fn paths_are_normalized_and_every_answer_carries_its_headers(backend: Backend) {
    let app = spawn_app(backend).await;
    for path in ["/api/me", "/api/me/", "//api//me", "/api/me///"] {
        let response = app.get(path, Some(&app.admin_key)).await;
        assert_eq!(response.status(), StatusCode::OK, "{path} is /api/me");
        let headers = response.headers();
        assert_eq!(headers["cache-control"], "no-store", "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert!(
            !headers.contains_key("content-security-policy"),
            "{path}: page headers are for HTML only"
        );
    }
    let (status, body) = status_and_json(
        app.get("/api/admin/tokens//?limit=ten", Some(&app.admin_key))
            .await,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "the query survives: {body}"
    );
    let (status, _) = status_and_json(
        app.get("/api/admin/tokens//?limit=1", Some(&app.admin_key))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let stylesheet = app.get("/static/app.css", None).await;
    assert_eq!(stylesheet.status(), StatusCode::OK);
    assert_eq!(
        stylesheet.headers()["cache-control"],
        "public, max-age=3600",
        "a handler's own Cache-Control is kept"
    );
    assert_eq!(stylesheet.headers()["x-content-type-options"], "nosniff");
    let missing = app.get("/api/no/such/thing/", None).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(missing.headers()["cache-control"], "no-store");
}
