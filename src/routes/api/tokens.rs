//! The caller's own tokens: list, create named device tokens, delete.

use actix_web::{HttpResponse, delete, get, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{ErrorResponse, TokenResponse};
use crate::{
    entities::tokens::TokenKind,
    error::ApiError,
    routes::body::JsonOrForm,
    routes::extract::ApiUser,
    services::{
        Invalid,
        tokens::{self, Lifetime, NewToken, TokenName},
    },
    state::AppState,
};

#[derive(Deserialize, ToSchema)]
pub struct NewTokenRequest {
    /// 1–64 characters, unique among the caller's tokens.
    pub name: String,
    /// Days until the token expires; omit for a token that never expires.
    #[schema(minimum = 1, maximum = 36500)]
    pub expires_in_days: Option<u32>,
}

impl NewTokenRequest {
    fn validate(self) -> Result<NewToken, Invalid> {
        let name = TokenName::parse(&self.name)?;
        let lifetime = match self.expires_in_days {
            None => Lifetime::Forever,
            Some(days) => Lifetime::in_days(days, "expires_in_days")?,
        };
        Ok(NewToken::device(name, lifetime))
    }
}

/// A new token with its key, shown this once.
#[derive(Serialize, ToSchema)]
pub struct CreatedTokenResponse {
    pub id: Uuid,
    pub name: String,
    pub kind: TokenKind,
    pub id_token: String,
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// The caller's tokens, newest first. Keys are never shown again.
#[utoipa::path(
    tag = "tokens",
    security(("token" = [])),
    responses((status = 200, body = Vec<TokenResponse>), (status = 401, body = ErrorResponse))
)]
#[get("/api/tokens")]
pub async fn list_tokens(
    state: web::Data<AppState>,
    caller: ApiUser,
) -> Result<HttpResponse, ApiError> {
    let tokens = tokens::list_for(&state.db, state.verifier.last_used(), caller.0.user.id).await?;
    Ok(HttpResponse::Ok().json(
        tokens
            .into_iter()
            .map(TokenResponse::from)
            .collect::<Vec<_>>(),
    ))
}

/// Create a named device token.
#[utoipa::path(
    tag = "tokens",
    security(("token" = [])),
    request_body(content((NewTokenRequest = "application/json"), (NewTokenRequest = "application/x-www-form-urlencoded"))),
    responses(
        (status = 201, body = CreatedTokenResponse),
        (status = 400, body = ErrorResponse),
        (status = 401, body = ErrorResponse),
        (status = 403, description = "token limit reached", body = ErrorResponse),
        (status = 409, description = "name taken", body = ErrorResponse),
    )
)]
#[post("/api/tokens")]
pub async fn create_token(
    state: web::Data<AppState>,
    caller: ApiUser,
    body: JsonOrForm<NewTokenRequest>,
) -> Result<HttpResponse, ApiError> {
    let request = body.0.validate()?;
    let issued = tokens::issue(
        &state.db,
        &state.revocations,
        &state.policy,
        &caller.actor(),
        &caller.0.user,
        request,
    )
    .await?;
    Ok(HttpResponse::Created().json(CreatedTokenResponse {
        id: issued.token.id,
        name: issued.token.name,
        kind: issued.token.kind,
        id_token: issued.key.reveal().to_owned(),
        prefix: issued.token.key_prefix,
        created_at: issued.token.created_at,
        expires_at: issued.token.expires_at,
    }))
}

/// Delete one of the caller's tokens. Another user's token answers 404.
#[utoipa::path(
    tag = "tokens",
    security(("token" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 204), (status = 401, body = ErrorResponse), (status = 404, body = ErrorResponse))
)]
#[delete("/api/tokens/{id}")]
pub async fn delete_token(
    state: web::Data<AppState>,
    caller: ApiUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    tokens::delete_own(
        &state.db,
        &state.revocations,
        &caller.actor(),
        &caller.0.user,
        id.into_inner(),
        tokens::Removal::Deleted,
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}
