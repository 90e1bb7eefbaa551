//! The caller's own tokens: list, create named device tokens, change, rotate, delete.

use actix_web::{HttpResponse, delete, get, patch, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{AccessFields, ErrorResponse, TokenResponse, policy_request::with_policy_fields};
use crate::{
    entities::tokens::TokenKind,
    error::ApiError,
    routes::body::JsonOrForm,
    routes::extract::ApiUser,
    services::{
        Invalid,
        audit::Actor,
        tokens::{
            self, Lifetime, NewToken, TokenChange, TokenName,
            policy::{Patch, Policy, PolicyPatch},
        },
    },
    state::AppState,
};

with_policy_fields! {
    #[derive(Deserialize, ToSchema)]
    pub struct NewTokenRequest {
        /// 1–64 characters, unique among the caller's tokens.
        pub name: String,
        /// Days until the token expires; omit for a token that never expires.
        #[schema(minimum = 1, maximum = 36500)]
        pub expires_in_days: Option<u32>,
    }
}

impl NewTokenRequest {
    /// `idle_by_default`: the idle expiry a device token gets when the request names none.
    fn validate(mut self, idle_by_default: Option<u32>) -> Result<NewToken, ApiError> {
        let name = TokenName::parse(&self.name)?;
        let lifetime = match self.expires_in_days {
            None => Lifetime::Forever,
            Some(days) => Lifetime::in_days(days, "expires_in_days")?,
        };
        let access = self
            .take_policy()
            .validate(idle_by_default)
            .map_err(|problems| ApiError::InvalidFields(problems.into_problems()))?;
        Ok(NewToken::device(name, lifetime).with_access(access))
    }
}

/// What `PATCH /api/tokens/{id}/` changes: a field left out stays as it is; `idle_expiry_days:
/// null` turns idle expiry off. `max_uses` cannot be changed.
#[derive(Deserialize, ToSchema)]
pub struct TokenChangeRequest {
    pub name: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub description: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<bool>)]
    pub read_only: Patch<bool>,
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>)]
    pub scopes: Patch<Vec<String>>,
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>)]
    pub allowed_ips: Patch<Vec<String>>,
    #[serde(default)]
    #[schema(value_type = Option<bool>)]
    pub pin_ip: Patch<bool>,
    #[serde(default)]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 3650)]
    pub idle_expiry_days: Patch<i64>,
    /// Requests per minute (1–1000000); `null` removes the limit.
    #[serde(default)]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 1000000)]
    pub rate_limit_per_minute: Patch<i64>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Patch<serde_json::Value>,
}

impl TokenChangeRequest {
    fn validate(self) -> Result<TokenChange, Invalid> {
        Ok(TokenChange {
            name: self.name.as_deref().map(TokenName::parse).transpose()?,
            access: PolicyPatch {
                description: self.description,
                read_only: self.read_only,
                scopes: self.scopes,
                allowed_ips: self.allowed_ips,
                pin_ip: self.pin_ip,
                idle_expiry_days: self.idle_expiry_days,
                rate_limit_per_minute: self.rate_limit_per_minute,
                metadata: self.metadata,
            },
        })
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
    #[serde(flatten)]
    pub access: AccessFields,
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
    let request = body.0.validate(state.policy.device_idle_expiry_days)?;
    let issued = tokens::issue(
        &state.db,
        &state.revocations,
        &state.policy,
        &caller.actor(),
        &caller.0.user,
        request,
    )
    .await?;
    let access = AccessFields::from(&Policy::of(&issued.token));
    Ok(HttpResponse::Created().json(CreatedTokenResponse {
        id: issued.token.id,
        name: issued.token.name,
        kind: issued.token.kind,
        id_token: issued.key.reveal().to_owned(),
        prefix: issued.token.key_prefix,
        created_at: issued.token.created_at,
        expires_at: issued.token.expires_at,
        access,
    }))
}

/// Change one of the caller's tokens: its name and policy. Effective on the next request here
/// and within a second on every other instance. Another user's token answers 404.
#[utoipa::path(
    tag = "tokens",
    security(("token" = [])),
    params(("id" = Uuid, Path)),
    request_body = TokenChangeRequest,
    responses(
        (status = 200, body = TokenResponse),
        (status = 400, body = ErrorResponse),
        (status = 401, body = ErrorResponse),
        (status = 404, body = ErrorResponse),
        (status = 409, description = "name taken", body = ErrorResponse),
    )
)]
#[patch("/api/tokens/{id}")]
pub async fn change_token(
    state: web::Data<AppState>,
    caller: ApiUser,
    id: web::Path<Uuid>,
    body: JsonOrForm<TokenChangeRequest>,
) -> Result<HttpResponse, ApiError> {
    let change = body.0.validate()?;
    let id = id.into_inner();
    // Before the update's read (see `LastUsed::unwritten_of`).
    let unwritten = state.verifier.last_used().unwritten_of(&[id]);
    let mut updated = tokens::update_own(
        &state.db,
        &state.revocations,
        &caller.actor(),
        &caller.0.user,
        id,
        change,
    )
    .await?;
    unwritten.overlay(std::iter::once(&mut updated));
    Ok(HttpResponse::Ok().json(TokenResponse::from(updated)))
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

/// What `POST …/rotate/` takes: how long the previous key keeps working.
#[derive(Deserialize, ToSchema, Default)]
pub struct RotateRequest {
    /// 0–604800 seconds (a week); default 3600. `0`: the previous key stops at once (leaked).
    #[schema(minimum = 0, maximum = 604800)]
    pub grace_seconds: Option<i64>,
}

impl RotateRequest {
    pub fn grace(&self) -> Result<tokens::Grace, Invalid> {
        self.grace_seconds
            .map_or(Ok(tokens::Grace::default()), tokens::Grace::seconds)
    }
}

/// A rotated token: same id, name and policy, a new key shown this once.
#[derive(Serialize, ToSchema)]
pub struct RotatedResponse {
    pub id: Uuid,
    pub name: String,
    /// The new key.
    pub id_token: String,
    pub prefix: String,
    /// Until when the previous key still works (answers to it carry `X-Token-Rotated: true`);
    /// `null`: it already stopped.
    pub previous_key_expires_at: Option<DateTime<Utc>>,
}

/// What every rotate route does once it knows who rotates which token: the grace read, the
/// rotation, the new key answered.
pub async fn rotation(
    state: &AppState,
    actor: &Actor,
    by: tokens::RotatedBy<'_>,
    id: Uuid,
    request: RotateRequest,
) -> Result<HttpResponse, ApiError> {
    let grace = request.grace()?;
    let rotated = tokens::rotate(&state.db, &state.revocations, actor, by, id, grace).await?;
    Ok(HttpResponse::Ok().json(RotatedResponse::from(rotated)))
}

impl From<tokens::Rotated> for RotatedResponse {
    fn from(rotated: tokens::Rotated) -> RotatedResponse {
        RotatedResponse {
            id_token: rotated.key.reveal().to_owned(),
            id: rotated.token.id,
            name: rotated.token.name,
            prefix: rotated.token.key_prefix,
            previous_key_expires_at: rotated.previous_key_expires_at,
        }
    }
}

/// Give one of the caller's tokens a new key, keeping its id, name and policy; the previous key
/// works until the grace ends (never past the token's expiry), then 401. Rotating again ends the
/// previous key at once. Another user's token answers 404.
#[utoipa::path(
    tag = "tokens",
    security(("token" = [])),
    params(("id" = Uuid, Path)),
    request_body(content((RotateRequest = "application/json"), (RotateRequest = "application/x-www-form-urlencoded"))),
    responses(
        (status = 200, body = RotatedResponse),
        (status = 400, body = ErrorResponse),
        (status = 401, body = ErrorResponse),
        (status = 403, description = "a read-only token", body = ErrorResponse),
        (status = 404, body = ErrorResponse),
    )
)]
#[post("/api/tokens/{id}/rotate")]
pub async fn rotate_token(
    state: web::Data<AppState>,
    caller: ApiUser,
    id: web::Path<Uuid>,
    body: JsonOrForm<RotateRequest>,
) -> Result<HttpResponse, ApiError> {
    let by = tokens::RotatedBy::Owner(&caller.0.user);
    rotation(&state, &caller.actor(), by, id.into_inner(), body.0).await
}

/// Rotate the key presented, with the token itself (a device renewing its own key; read-only
/// tokens may): as the owner's rotate, and the previous key also stops the moment the new key
/// is first used, when the device has shown that it stored it.
#[utoipa::path(
    tag = "tokens",
    security(("token" = [])),
    request_body(content((RotateRequest = "application/json"), (RotateRequest = "application/x-www-form-urlencoded"))),
    responses(
        (status = 200, body = RotatedResponse),
        (status = 400, body = ErrorResponse),
        (status = 401, body = ErrorResponse),
    )
)]
#[post("/api/tokens/self/rotate")]
pub async fn rotate_self(
    state: web::Data<AppState>,
    caller: ApiUser,
    body: JsonOrForm<RotateRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = caller.0.token.id;
    rotation(
        &state,
        &caller.actor(),
        tokens::RotatedBy::Itself,
        id,
        body.0,
    )
    .await
}
