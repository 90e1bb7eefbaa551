//! Token introspection in the shape of RFC 7662, for backends that check tokens themselves.

use actix_web::{HttpResponse, post, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::ErrorResponse;
use crate::{
    entities::tokens::TokenKind,
    error::ApiError,
    routes::body::JsonOrForm,
    routes::extract::AdminUser,
    state::AppState,
    verify::{Attempt, AuthError, Authenticated},
};

#[derive(Deserialize, ToSchema)]
pub struct IntrospectionRequest {
    /// The key to check.
    pub token: String,
    /// Accepted and ignored (RFC 7662 § 2.1): there is one kind of token.
    pub token_type_hint: Option<String>,
}

/// `{"active": false}` alone for any token that is not valid now, whatever the reason.
#[derive(Serialize, ToSchema, Default)]
pub struct IntrospectionResponse {
    pub active: bool,
    /// The owner.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_kind: Option<TokenKind>,
    /// Whether the owner is an admin.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_admin: Option<bool>,
    /// Expiry, seconds since the epoch; absent for a token that never expires.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// Issue time, seconds since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// The token's scopes, space-separated (RFC 7662's `scope`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    /// For a limited token: uses left (as of the verifier's last read of it). Introspecting takes
    /// none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remaining_uses: Option<i64>,
}

impl From<Authenticated> for IntrospectionResponse {
    fn from(found: Authenticated) -> IntrospectionResponse {
        IntrospectionResponse {
            active: true,
            username: Some(found.user.username.clone()),
            token_id: Some(found.token.id),
            token_name: Some(found.token.name.clone()),
            token_kind: Some(found.token.kind),
            is_admin: Some(found.user.is_admin),
            exp: found.token.expires_at.map(|at| at.timestamp()),
            iat: Some(found.token.created_at.timestamp()),
            scope: Some(found.access.scopes().join(" ")),
            read_only: Some(found.access.read_only()),
            metadata: Some(found.access.metadata().clone()),
            remaining_uses: found.access.remaining_uses(),
        }
    }
}

/// Introspect a token (RFC 7662): is it valid now, and whose is it. Callable with an admin token.
/// Counts as a use of the introspected token.
#[utoipa::path(
    tag = "introspection",
    security(("token" = [])),
    request_body(content((IntrospectionRequest = "application/x-www-form-urlencoded"), (IntrospectionRequest = "application/json"))),
    responses(
        (status = 200, body = IntrospectionResponse),
        (status = 400, description = "no `token` field", body = ErrorResponse),
        (status = 401, description = "the caller presented no valid token", body = ErrorResponse),
        (status = 403, description = "the caller is not an admin", body = ErrorResponse),
    )
)]
#[post("/api/introspect")]
pub async fn introspect_token(
    state: web::Data<AppState>,
    _admin: AdminUser,
    body: JsonOrForm<IntrospectionRequest>,
) -> Result<HttpResponse, ApiError> {
    let answer = match state
        .verifier
        .verify_text(body.0.token.trim(), &Attempt::Inspect)
        .await
    {
        Ok(found) => IntrospectionResponse::from(found),
        // (Read-only and scope refusals cannot come from an inspection; if they did, the token
        // is inactive for this question.)
        Err(
            AuthError::Invalid
            | AuthError::Expired
            | AuthError::InactiveUser
            | AuthError::ReadOnly
            | AuthError::InsufficientScope
            | AuthError::RateLimited(_),
        ) => IntrospectionResponse::default(),
        // An outage is not an answer about the token: it must not look like a revocation.
        Err(AuthError::Db(e)) => return Err(ApiError::internal(e)),
    };
    Ok(HttpResponse::Ok().json(answer))
}
