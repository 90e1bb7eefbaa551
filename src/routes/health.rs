//! Liveness and readiness probes.

use actix_web::{HttpResponse, get, web};
use sea_orm::ConnectionTrait;
use serde_json::json;

use crate::{error::ApiError, state::AppState};

const READINESS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Liveness: answers without any I/O.
#[utoipa::path(tag = "health", responses((status = 200, description = "the process is up")))]
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Readiness: 200 when the database answers, 503 otherwise.
#[utoipa::path(tag = "health", responses((status = 200), (status = 503)))]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    // A load balancer wants an answer, not a hang while the pool waits for a dead server.
    let check = tokio::time::timeout(READINESS_TIMEOUT, state.db.execute_unprepared("SELECT 1"));
    match check.await {
        Ok(Ok(_)) => Ok(HttpResponse::Ok().json(json!({ "status": "ready" }))),
        Ok(Err(e)) => {
            log::warn!("readiness check failed: {e}");
            Err(ApiError::Unavailable("database"))
        }
        Err(_) => {
            log::warn!("readiness check timed out after {READINESS_TIMEOUT:?}");
            Err(ApiError::Unavailable("database"))
        }
    }
}
