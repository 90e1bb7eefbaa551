//! The bare reference for `benches/hotpath`: actix-web with one route, `GET /api/me/`, that takes
//! the key from `Authorization: Token KEY` (or `Bearer`), SHA-256s it and compares the digest in
//! constant time with the one digest held in memory, then answers a small JSON body. No
//! middleware, no database, no cache: the floor that multitoken's `/api/me/` is measured against.
//!
//! Built in release by the bench script: `cargo build --release --example reference`.
//! Settings: `REFERENCE_BIND` (default `127.0.0.1:18090`), `REFERENCE_KEY` (the one valid key),
//! `REFERENCE_WORKERS` (default 2, as the bench runs multitoken).

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, http::header, web};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

struct Expected([u8; 32]);

async fn me(req: HttpRequest, expected: web::Data<Expected>) -> HttpResponse {
    let key = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            value
                .strip_prefix("Token ")
                .or_else(|| value.strip_prefix("Bearer "))
        });
    let Some(key) = key else {
        return HttpResponse::Unauthorized().json(serde_json::json!({"error": "no key"}));
    };
    let digest: [u8; 32] = Sha256::digest(key.trim().as_bytes()).into();
    if bool::from(digest.ct_eq(&expected.0)) {
        HttpResponse::Ok().json(serde_json::json!({"user": "bench", "is_admin": false}))
    } else {
        HttpResponse::Unauthorized().json(serde_json::json!({"error": "Invalid or Inactive Token"}))
    }
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let bind = std::env::var("REFERENCE_BIND").unwrap_or_else(|_| "127.0.0.1:18090".into());
    let key =
        std::env::var("REFERENCE_KEY").expect("REFERENCE_KEY: the one key this server accepts");
    let workers = std::env::var("REFERENCE_WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(2);
    let expected = web::Data::new(Expected(Sha256::digest(key.as_bytes()).into()));
    HttpServer::new(move || {
        App::new()
            .app_data(expected.clone())
            .route("/api/me/", web::get().to(me))
    })
    .workers(workers)
    .bind(bind)?
    .run()
    .await
}
