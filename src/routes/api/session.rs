//! Login, logout and "who am I": the Django recipe's endpoints, kept shape-compatible.

use actix_web::{
    HttpResponse, get,
    http::header::{self, HeaderValue},
    post,
    web::{self, Bytes},
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    AccessFields, AccessView, DetailResponse, ErrorResponse, policy_request::with_policy_fields,
};
use crate::{
    entities::tokens::TokenKind,
    error::ApiError,
    routes::body::JsonOrForm,
    routes::extract::{ApiUser, ClientAddress},
    services::{
        login::{self, Credentials, LoggedIn},
        tokens::{self, Everywhere, IssuedToken, NewToken, Removal, TokenName},
    },
    state::AppState,
};

#[derive(Deserialize, ToSchema)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
    /// Optional name for this session's token (default: "session" + the key's prefix).
    pub token_name: Option<String>,
}

with_policy_fields! {
    #[derive(Deserialize, ToSchema)]
    pub struct NonExpiringTokenRequest {
        pub username: String,
        pub password: String,
        pub token_name: String,
    }
}

/// A new key, shown this once.
#[derive(Serialize, ToSchema)]
pub struct IssuedKeyResponse {
    pub id_token: String,
    pub token_name: String,
    pub user: String,
    pub is_admin: bool,
    /// Present for session tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

impl IssuedKeyResponse {
    fn new(issued: &IssuedToken, user: &crate::entities::users::Model) -> IssuedKeyResponse {
        IssuedKeyResponse {
            id_token: issued.key.reveal().to_owned(),
            token_name: issued.token.name.clone(),
            user: user.username.clone(),
            is_admin: user.is_admin,
            expires_at: issued.token.expires_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct MeResponse<'a> {
    pub user: &'a str,
    pub is_admin: bool,
    pub token: PresentedToken<'a>,
}

#[derive(Serialize, ToSchema)]
pub struct PresentedToken<'a> {
    pub id: Uuid,
    pub name: &'a str,
    pub kind: TokenKind,
    #[serde(serialize_with = "super::timestamp::serialize")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "super::timestamp::option::serialize")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(flatten)]
    #[schema(value_type = AccessFields)]
    pub access: AccessView<'a>,
}

#[derive(Deserialize, ToSchema, Default)]
pub struct LogoutAllRequest {
    /// Also delete device tokens (default: only session tokens).
    #[serde(default, deserialize_with = "crate::routes::checkbox::deserialize")]
    pub include_devices: bool,
}

#[derive(Serialize, ToSchema)]
pub struct LogoutAllResponse {
    pub detail: String,
    pub revoked: u64,
}

/// Log in with username and password: a new session token on every call, expiring after the session TTL.
#[utoipa::path(
    tag = "session",
    request_body(content((LoginRequest = "application/json"), (LoginRequest = "application/x-www-form-urlencoded"))),
    responses(
        (status = 200, body = IssuedKeyResponse),
        (status = 400, description = "Unable to log in with provided credentials.", body = ErrorResponse),
        (status = 403, description = "token limit reached by device tokens alone", body = ErrorResponse),
        (status = 429, description = "Too many failed logins for this username or address; see Retry-After.", body = ErrorResponse,
         headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
#[post("/api/token")]
pub async fn create_session_token(
    state: web::Data<AppState>,
    client: ClientAddress,
    body: JsonOrForm<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let request = body.0;
    let name = request
        .token_name
        .as_deref()
        .map(TokenName::parse)
        .transpose()?;
    let LoggedIn { user, issued } = login::log_in(
        &state.db,
        &state.revocations,
        &state.policy,
        &state.throttle,
        Credentials {
            username: &request.username,
            password: request.password,
            address: client.text(),
        },
        NewToken::session(&state.policy, name),
    )
    .await?;
    Ok(HttpResponse::Ok().json(IssuedKeyResponse::new(&issued, &user)))
}

/// Log in with username and password and create a named device token that never expires.
#[utoipa::path(
    tag = "session",
    request_body(content((NonExpiringTokenRequest = "application/json"), (NonExpiringTokenRequest = "application/x-www-form-urlencoded"))),
    responses(
        (status = 201, body = IssuedKeyResponse),
        (status = 400, body = ErrorResponse),
        (status = 403, description = "token limit reached", body = ErrorResponse),
        (status = 409, description = "name taken", body = ErrorResponse),
        (status = 429, description = "Too many failed logins for this username or address; see Retry-After.", body = ErrorResponse,
         headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
#[post("/api/non-expiring-token")]
pub async fn create_non_expiring_token(
    state: web::Data<AppState>,
    client: ClientAddress,
    body: JsonOrForm<NonExpiringTokenRequest>,
) -> Result<HttpResponse, ApiError> {
    let mut request = body.0;
    let name = TokenName::parse(&request.token_name)?;
    let access = request
        .take_policy()
        .validate(state.policy.device_idle_expiry_days)
        .map_err(|problems| ApiError::InvalidFields(problems.into_problems()))?;
    let LoggedIn { user, issued } = login::log_in(
        &state.db,
        &state.revocations,
        &state.policy,
        &state.throttle,
        Credentials {
            username: &request.username,
            password: request.password,
            address: client.text(),
        },
        NewToken::device(name, tokens::Lifetime::Forever).with_access(access),
    )
    .await?;
    Ok(HttpResponse::Created().json(IssuedKeyResponse::new(&issued, &user)))
}

/// The caller and the token it presented.
#[utoipa::path(
    tag = "session",
    security(("token" = [])),
    responses((status = 200, body = MeResponse), (status = 401, body = ErrorResponse))
)]
#[get("/api/me")]
pub async fn me(caller: ApiUser) -> Result<HttpResponse, ApiError> {
    let ApiUser(caller, _) = caller;
    // Rendered once per cached answer (a device polls this with the same key all day); the
    // bytes are shared, not serialized again, by every later hit.
    let body = match caller.rendered.get() {
        Some(body) => body.clone(),
        None => {
            let answer = MeResponse {
                user: &caller.user.username,
                is_admin: caller.user.is_admin,
                token: PresentedToken {
                    id: caller.token.id,
                    name: &caller.token.name,
                    kind: caller.token.kind,
                    created_at: caller.token.created_at,
                    expires_at: caller.token.expires_at,
                    access: AccessView(&caller.access),
                },
            };
            let body = Bytes::from(serde_json::to_vec(&answer).map_err(ApiError::internal)?);
            caller.rendered.set(body.clone()).ok();
            body
        }
    };
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, JSON))
        .body(body))
}

/// `Content-Type: application/json`, as a constant rather than formatted from a `Mime` per answer.
const JSON: HeaderValue = HeaderValue::from_static("application/json");

async fn delete_presented_token(
    state: web::Data<AppState>,
    caller: ApiUser,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.actor();
    let ApiUser(caller, _) = caller;
    let why = Removal::LoggedOut;
    tokens::end_session(
        &state.db,
        &state.revocations,
        &actor,
        &caller.user,
        caller.token.id,
        why,
    )
    .await?;
    Ok(HttpResponse::Ok().json(DetailResponse {
        detail: "User successfully logged out".into(),
    }))
}

/// Log out: deletes the presented token only.
#[utoipa::path(
    tag = "session",
    security(("token" = [])),
    responses((status = 200, body = DetailResponse), (status = 401, body = ErrorResponse))
)]
#[post("/api/logout")]
pub async fn logout(state: web::Data<AppState>, caller: ApiUser) -> Result<HttpResponse, ApiError> {
    delete_presented_token(state, caller).await
}

/// Log out by GET, for clients of the Django recipe. Prefer POST.
#[utoipa::path(
    tag = "session",
    security(("token" = [])),
    responses((status = 200, body = DetailResponse), (status = 401, body = ErrorResponse))
)]
#[get("/api/logout")]
pub async fn logout_by_get(
    state: web::Data<AppState>,
    caller: ApiUser,
) -> Result<HttpResponse, ApiError> {
    delete_presented_token(state, caller).await
}

/// Log out everywhere: deletes all of the caller's session tokens, and device tokens when asked.
#[utoipa::path(
    tag = "session",
    security(("token" = [])),
    // The body may be left out (a bare POST keeps device tokens): see routes::OPTIONAL_BODIES.
    request_body(content((LogoutAllRequest = "application/json"), (LogoutAllRequest = "application/x-www-form-urlencoded"))),
    responses(
        (status = 200, body = LogoutAllResponse),
        (status = 400, description = "a malformed body", body = ErrorResponse),
        (status = 401, body = ErrorResponse),
    )
)]
#[post("/api/logout-all")]
pub async fn logout_all(
    state: web::Data<AppState>,
    caller: ApiUser,
    body: JsonOrForm<LogoutAllRequest>,
) -> Result<HttpResponse, ApiError> {
    let include_devices = body.0.include_devices;
    let scope = if include_devices {
        Everywhere::AllTokens
    } else {
        Everywhere::Sessions
    };
    let revoked = tokens::delete_all_own(
        &state.db,
        &state.revocations,
        &caller.actor(),
        &caller.0.user,
        scope,
    )
    .await?;
    let detail = if include_devices {
        "All tokens revoked"
    } else {
        "All sessions logged out"
    };
    Ok(HttpResponse::Ok().json(LogoutAllResponse {
        detail: detail.into(),
        revoked,
    }))
}
