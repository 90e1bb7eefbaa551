//! Usage history over the API: a token's uses and refusals per hour for its owner, and every
//! token's per hour for admins. Hours without any use are left out.

use actix_web::{HttpResponse, get, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::ErrorResponse;
use crate::{
    error::ApiError,
    routes::extract::{AdminUser, ApiUser},
    services::tokens::usage::{self, Days, Hour},
    state::AppState,
};

#[derive(Deserialize, IntoParams)]
pub struct UsageQuery {
    /// How many days back, 1–90 (default 7).
    #[param(minimum = 1, maximum = 90)]
    pub days: Option<i64>,
}

/// One hour: its start (UTC), the successful uses and the refused attempts in it.
#[derive(Serialize, ToSchema)]
pub struct HourResponse {
    pub hour: DateTime<Utc>,
    pub uses: i64,
    pub refused: i64,
}

/// One hour of every token: the sums, and how many tokens were active.
#[derive(Serialize, ToSchema)]
pub struct TotalHourResponse {
    pub hour: DateTime<Utc>,
    pub uses: i64,
    pub refused: i64,
    pub tokens: i64,
}

/// A token's uses and refusals per hour, oldest first; written in batches (every
/// `MULTITOKEN_LAST_USED_FLUSH`), so the last seconds may not be in yet. Another user's token
/// answers 404.
#[utoipa::path(
    tag = "tokens",
    security(("token" = [])),
    params(("id" = Uuid, Path), UsageQuery),
    responses(
        (status = 200, body = Vec<HourResponse>),
        (status = 400, body = ErrorResponse),
        (status = 401, body = ErrorResponse),
        (status = 404, body = ErrorResponse),
    )
)]
#[get("/api/tokens/{id}/usage")]
pub async fn token_usage(
    state: web::Data<AppState>,
    caller: ApiUser,
    id: web::Path<Uuid>,
    query: web::Query<UsageQuery>,
) -> Result<HttpResponse, ApiError> {
    let days = Days::parse(query.days)?;
    let hours = usage::of_own_token(&state.db, caller.0.user.id, id.into_inner(), days).await?;
    Ok(HttpResponse::Ok().json(
        hours
            .into_iter()
            .map(
                |Hour {
                     hour,
                     uses,
                     refused,
                     ..
                 }| HourResponse {
                    hour,
                    uses,
                    refused,
                },
            )
            .collect::<Vec<_>>(),
    ))
}

/// Every token's uses and refusals per hour, summed, oldest first (admins).
#[utoipa::path(
    tag = "admin",
    security(("token" = [])),
    params(UsageQuery),
    responses(
        (status = 200, body = Vec<TotalHourResponse>),
        (status = 400, body = ErrorResponse),
        (status = 401, body = ErrorResponse),
        (status = 403, body = ErrorResponse),
    )
)]
#[get("/api/admin/usage")]
pub async fn all_usage(
    state: web::Data<AppState>,
    _admin: AdminUser,
    query: web::Query<UsageQuery>,
) -> Result<HttpResponse, ApiError> {
    let days = Days::parse(query.days)?;
    let hours = usage::of_all_tokens(&state.db, days)
        .await
        .map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok().json(
        hours
            .into_iter()
            .map(|hour| TotalHourResponse {
                hour: hour.hour,
                uses: hour.uses,
                refused: hour.refused,
                tokens: hour.tokens,
            })
            .collect::<Vec<_>>(),
    ))
}
