//! Admin-only endpoints: every token, any revocation, user lifecycle.

use actix_web::{HttpResponse, delete, get, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{
    ErrorResponse, TokenResponse,
    tokens::{RotateRequest, RotatedResponse, rotation},
};
use crate::{
    entities::{tokens::TokenKind, users::Model as User},
    error::ApiError,
    routes::body::JsonOrForm,
    routes::extract::AdminUser,
    services::{
        audit, tokens,
        users::{self, NewUser, Username},
    },
    state::AppState,
};

const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;

#[derive(Deserialize, IntoParams)]
pub struct TokenFilter {
    /// Only this user's tokens.
    pub user: Option<String>,
    /// Only tokens of this kind.
    pub kind: Option<TokenKind>,
    /// Page size, 1–1000 (default 100).
    pub limit: Option<u32>,
    pub offset: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct AdminTokenResponse {
    #[serde(flatten)]
    pub token: TokenResponse,
    /// The owner's username.
    pub user: String,
}

#[derive(Serialize, ToSchema)]
pub struct UserResponse {
    pub user: String,
    pub is_admin: bool,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
}

impl From<User> for UserResponse {
    fn from(user: User) -> UserResponse {
        UserResponse {
            user: user.username,
            is_admin: user.is_admin,
            is_active: user.is_active,
            created_at: user.created_at,
        }
    }
}

#[derive(Deserialize, ToSchema)]
pub struct NewUserRequest {
    pub username: String,
    /// At least 8 characters.
    pub password: String,
    #[serde(default, deserialize_with = "crate::routes::checkbox::deserialize")]
    pub is_admin: bool,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedUserResponse {
    #[serde(flatten)]
    pub user: UserResponse,
    /// With `MULTITOKEN_TOKEN_ON_SIGNUP`: the new user's `default` token, shown this once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_token: Option<SignupToken>,
}

#[derive(Serialize, ToSchema)]
pub struct SignupToken {
    pub id_token: String,
    pub token_name: String,
}

#[derive(Serialize, ToSchema)]
pub struct RevokedResponse {
    pub revoked: u64,
}

/// Every token, newest first, optionally one user's.
#[utoipa::path(
    tag = "admin",
    security(("token" = [])),
    params(TokenFilter),
    responses(
        (status = 200, body = Vec<AdminTokenResponse>),
        (status = 400, description = "a malformed query (an unknown kind, a negative or non-numeric limit or offset)", body = ErrorResponse),
        (status = 401, body = ErrorResponse),
        (status = 403, body = ErrorResponse),
        (status = 404, description = "no such user", body = ErrorResponse),
    )
)]
#[get("/api/admin/tokens")]
pub async fn list_all_tokens(
    state: web::Data<AppState>,
    _admin: AdminUser,
    filter: web::Query<TokenFilter>,
) -> Result<HttpResponse, ApiError> {
    let filter = filter.into_inner();
    let owner = match filter.user.as_deref() {
        Some(username) => Some(users::find_by_username(&state.db, username).await?.id),
        None => None,
    };
    let limit = filter.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let offset = u64::from(filter.offset.unwrap_or(0));
    let selection = tokens::TokenFilter {
        owner,
        kind: filter.kind,
    };
    let rows = tokens::list_all(
        &state.db,
        state.verifier.last_used(),
        &selection,
        u64::from(limit),
        offset,
    )
    .await?;
    let body: Vec<AdminTokenResponse> = rows
        .into_iter()
        .map(|(token, user)| AdminTokenResponse {
            token: token.into(),
            user: user.username,
        })
        .collect();
    Ok(HttpResponse::Ok().json(body))
}

/// Revoke any token.
#[utoipa::path(
    tag = "admin",
    security(("token" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 204), (status = 401, body = ErrorResponse), (status = 403, body = ErrorResponse), (status = 404, body = ErrorResponse))
)]
#[delete("/api/admin/tokens/{id}")]
pub async fn revoke_token(
    state: web::Data<AppState>,
    admin: AdminUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    tokens::revoke(
        &state.db,
        &state.revocations,
        &admin.actor(),
        id.into_inner(),
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Give any token a new key (as its owner can, `POST /api/tokens/{id}/rotate/`).
#[utoipa::path(
    tag = "admin",
    security(("token" = [])),
    params(("id" = Uuid, Path)),
    request_body(content((RotateRequest = "application/json"), (RotateRequest = "application/x-www-form-urlencoded"))),
    responses(
        (status = 200, body = RotatedResponse),
        (status = 400, body = ErrorResponse),
        (status = 401, body = ErrorResponse),
        (status = 403, body = ErrorResponse),
        (status = 404, body = ErrorResponse),
    )
)]
#[post("/api/admin/tokens/{id}/rotate")]
pub async fn rotate_token(
    state: web::Data<AppState>,
    admin: AdminUser,
    id: web::Path<Uuid>,
    body: JsonOrForm<RotateRequest>,
) -> Result<HttpResponse, ApiError> {
    let by = tokens::RotatedBy::Admin;
    rotation(&state, &admin.actor(), by, id.into_inner(), body.0).await
}

/// Revoke every token of a user, sessions and devices alike.
#[utoipa::path(
    tag = "admin",
    security(("token" = [])),
    params(("username" = String, Path)),
    responses((status = 200, body = RevokedResponse), (status = 401, body = ErrorResponse), (status = 403, body = ErrorResponse), (status = 404, body = ErrorResponse))
)]
#[post("/api/admin/users/{username}/revoke-all")]
pub async fn revoke_all_user_tokens(
    state: web::Data<AppState>,
    admin: AdminUser,
    username: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user = users::find_by_username(&state.db, &username).await?;
    let revoked =
        tokens::revoke_all_for(&state.db, &state.revocations, &admin.actor(), &user).await?;
    Ok(HttpResponse::Ok().json(RevokedResponse { revoked }))
}

/// Deactivate a user: their tokens answer "Invalid user" and they cannot log in.
#[utoipa::path(
    tag = "admin",
    security(("token" = [])),
    params(("username" = String, Path)),
    responses((status = 200, body = UserResponse), (status = 401, body = ErrorResponse), (status = 403, body = ErrorResponse), (status = 404, body = ErrorResponse), (status = 409, description = "own account", body = ErrorResponse))
)]
#[post("/api/admin/users/{username}/deactivate")]
pub async fn deactivate_user(
    state: web::Data<AppState>,
    admin: AdminUser,
    username: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user = users::find_by_username(&state.db, &username).await?;
    let user =
        users::set_active(&state.db, &state.revocations, &admin.actor(), user, false).await?;
    Ok(HttpResponse::Ok().json(UserResponse::from(user)))
}

/// Reactivate a user.
#[utoipa::path(
    tag = "admin",
    security(("token" = [])),
    params(("username" = String, Path)),
    responses((status = 200, body = UserResponse), (status = 401, body = ErrorResponse), (status = 403, body = ErrorResponse), (status = 404, body = ErrorResponse))
)]
#[post("/api/admin/users/{username}/activate")]
pub async fn activate_user(
    state: web::Data<AppState>,
    admin: AdminUser,
    username: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user = users::find_by_username(&state.db, &username).await?;
    let user = users::set_active(&state.db, &state.revocations, &admin.actor(), user, true).await?;
    Ok(HttpResponse::Ok().json(UserResponse::from(user)))
}

/// Every user.
#[utoipa::path(
    tag = "admin",
    security(("token" = [])),
    responses((status = 200, body = Vec<UserResponse>), (status = 401, body = ErrorResponse), (status = 403, body = ErrorResponse))
)]
#[get("/api/admin/users")]
pub async fn list_users(
    state: web::Data<AppState>,
    _admin: AdminUser,
) -> Result<HttpResponse, ApiError> {
    let all = users::list(&state.db).await?;
    Ok(HttpResponse::Ok().json(all.into_iter().map(UserResponse::from).collect::<Vec<_>>()))
}

/// Create a user. With `MULTITOKEN_TOKEN_ON_SIGNUP` the answer carries its `default` token's key, once.
#[utoipa::path(
    tag = "admin",
    security(("token" = [])),
    request_body(content((NewUserRequest = "application/json"), (NewUserRequest = "application/x-www-form-urlencoded"))),
    responses(
        (status = 201, body = CreatedUserResponse),
        (status = 400, body = ErrorResponse),
        (status = 401, body = ErrorResponse),
        (status = 403, body = ErrorResponse),
        (status = 409, description = "username taken", body = ErrorResponse),
    )
)]
#[post("/api/admin/users")]
pub async fn create_user(
    state: web::Data<AppState>,
    admin: AdminUser,
    body: JsonOrForm<NewUserRequest>,
) -> Result<HttpResponse, ApiError> {
    let request = body.0;
    let new = NewUser {
        username: Username::parse(&request.username)?,
        password: request.password,
        is_admin: request.is_admin,
    };
    let created = users::create(
        &state.db,
        &state.revocations,
        &state.policy,
        &admin.actor(),
        new,
    )
    .await?;
    Ok(HttpResponse::Created().json(CreatedUserResponse {
        user: created.user.into(),
        default_token: created.signup_token.map(|issued| SignupToken {
            id_token: issued.key.reveal().to_owned(),
            token_name: issued.token.name,
        }),
    }))
}

/// Delete a user and, by cascade, all of its tokens.
#[utoipa::path(
    tag = "admin",
    security(("token" = [])),
    params(("username" = String, Path)),
    responses((status = 204), (status = 401, body = ErrorResponse), (status = 403, body = ErrorResponse), (status = 404, body = ErrorResponse), (status = 409, description = "own account", body = ErrorResponse))
)]
#[delete("/api/admin/users/{username}")]
pub async fn delete_user(
    state: web::Data<AppState>,
    admin: AdminUser,
    username: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user = users::find_by_username(&state.db, &username).await?;
    users::delete(&state.db, &state.revocations, &admin.actor(), user).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize, IntoParams)]
pub struct AuditQuery {
    /// Page size, 1–1000 (default 100).
    pub limit: Option<u32>,
    pub offset: Option<u32>,
    /// A username: the events it made, and those about it or its tokens.
    pub user: Option<String>,
    /// One action, such as `login.failed` or `token.revoked`.
    pub action: Option<String>,
    /// From this time on: RFC 3339, or a date (from its start, UTC).
    pub since: Option<String>,
    /// Before this time: RFC 3339, or a date (to its end, UTC).
    pub until: Option<String>,
}

impl AuditQuery {
    /// Which events: every one unless narrowed.
    pub fn filter(&self) -> Result<audit::Filter, ApiError> {
        Ok(audit::Filter::parse(
            self.user.as_deref(),
            self.action.as_deref(),
            self.since.as_deref(),
            self.until.as_deref(),
        )?)
    }
}

/// An audit-log entry.
#[derive(Serialize, ToSchema)]
pub struct AuditEventResponse {
    pub id: Uuid,
    pub occurred_at: DateTime<Utc>,
    /// `token.created`, `token.revoked`, `token.expired`, `token.pruned`, `login.failed`,
    /// `user.created`, `user.deactivated`, `user.activated`, `user.deleted`, `password.changed`.
    pub action: String,
    /// A username, `anonymous` (failed logins), `system` or `command line`.
    pub actor: String,
    pub client_address: Option<String>,
    /// `token` or `user`.
    pub target_type: String,
    pub target_id: Option<Uuid>,
    /// The token's name or the username.
    pub target_name: String,
    /// For tokens: the owner's username.
    pub target_owner: Option<String>,
    pub detail: Option<String>,
    /// How many attempts this event stands for (failed logins flooding from one address are
    /// one event a minute after the first five).
    pub repeats: i64,
}

/// The audit log, newest first.
#[utoipa::path(
    tag = "admin",
    security(("token" = [])),
    params(AuditQuery),
    responses(
        (status = 200, body = Vec<AuditEventResponse>),
        (status = 400, description = "a malformed query (a negative or non-numeric limit or offset)", body = ErrorResponse),
        (status = 401, body = ErrorResponse),
        (status = 403, body = ErrorResponse),
    )
)]
#[get("/api/admin/audit")]
pub async fn list_audit_events(
    state: web::Data<AppState>,
    _admin: AdminUser,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let offset = u64::from(query.offset.unwrap_or(0));
    let filter = query.filter()?;
    let events = audit::page(&state.db, &filter, u64::from(limit), offset)
        .await
        .map_err(ApiError::internal)?;
    let body: Vec<AuditEventResponse> = events.into_iter().map(AuditEventResponse::from).collect();
    Ok(HttpResponse::Ok().json(body))
}

impl From<crate::entities::audit_events::Model> for AuditEventResponse {
    fn from(event: crate::entities::audit_events::Model) -> AuditEventResponse {
        AuditEventResponse {
            id: event.id,
            occurred_at: event.occurred_at,
            action: event.action,
            actor: event.actor_name,
            client_address: event.client_address,
            target_type: event.target_type,
            target_id: event.target_id,
            target_name: event.target_name,
            target_owner: event.target_owner,
            detail: event.detail,
            repeats: event.repeats,
        }
    }
}

/// The most events one export holds; narrow the filter (a time range) for more.
const EXPORT_MAX: u64 = 100_000;

/// The audit log as JSON lines (`application/x-ndjson`, one event per line, newest first, as
/// listed), for a SIEM: the same filters as the list, at most 100,000 events at once (`limit` and
/// `offset` page through more).
#[utoipa::path(
    tag = "admin",
    security(("token" = [])),
    params(AuditQuery),
    responses(
        (status = 200, description = "one JSON object per line, as the list's entries", content_type = "application/x-ndjson", body = String),
        (status = 400, body = ErrorResponse),
        (status = 401, body = ErrorResponse),
        (status = 403, body = ErrorResponse),
    )
)]
#[get("/api/admin/audit/export")]
pub async fn export_audit_events(
    state: web::Data<AppState>,
    _admin: AdminUser,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    let filter = query.filter()?;
    let limit = query.limit.map_or(EXPORT_MAX, u64::from).min(EXPORT_MAX);
    let offset = u64::from(query.offset.unwrap_or(0));
    let events = audit::page(&state.db, &filter, limit, offset)
        .await
        .map_err(ApiError::internal)?;
    let mut lines = String::new();
    for event in events {
        let line =
            serde_json::to_string(&AuditEventResponse::from(event)).map_err(ApiError::internal)?;
        lines.push_str(&line);
        lines.push('\n');
    }
    Ok(HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .insert_header((
            actix_web::http::header::CONTENT_DISPOSITION,
            "attachment; filename=\"multitoken-audit.jsonl\"",
        ))
        .body(lines))
}
