//! Our stylesheet and script, compiled into the binary so the server needs no files beside it
//! and pages work offline (no CDN).

use actix_web::{HttpResponse, get};

const CACHE_FOR_AN_HOUR: (&str, &str) = ("Cache-Control", "public, max-age=3600");

#[get("/static/app.css")]
pub async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header(CACHE_FOR_AN_HOUR)
        .body(include_str!("../../../static/app.css"))
}

/// Conveniences only (copy buttons): every page works without it.
#[get("/static/app.js")]
pub async fn script() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header(CACHE_FOR_AN_HOUR)
        .body(include_str!("../../../static/app.js"))
}
