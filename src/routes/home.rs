//! The landing page: what this server is and where its API is described.

use actix_web::get;
use askama::Template;
use askama_web::WebTemplate;

/// Not part of the API, so not in the OpenAPI document.
#[derive(Template, WebTemplate)]
#[template(path = "index.html")]
pub struct HomePage {
    pub version: &'static str,
}

#[get("/")]
pub async fn home_page() -> HomePage {
    HomePage {
        version: env!("CARGO_PKG_VERSION"),
    }
}

/// Our stylesheet, compiled into the binary so the server needs no files beside it.
#[get("/static/app.css")]
pub async fn stylesheet() -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header(("Cache-Control", "public, max-age=3600"))
        .body(include_str!("../../static/app.css"))
}
