//! Pairing a device (RFC 8628's device authorization grant): the device's two endpoints, which
//! take no key, and the approver's two, which take a full-access token.

use actix_web::{HttpRequest, HttpResponse, http::header, post, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{ErrorResponse, policy_request::with_policy_fields};
use crate::{
    error::ApiError,
    routes::{
        body::JsonOrForm,
        extract::{ApiUser, ClientAddress, site_origin},
    },
    services::{
        pairing::{self, Started},
        tokens::{Lifetime, NewToken, TokenName},
    },
    state::AppState,
};

/// RFC 8628 §3.4's one grant type; a poll may leave it out.
const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// What a device sends to start pairing. `client_id` and `scope`, which device-flow libraries
/// send, are accepted and ignored: the approver chooses the token's access.
#[derive(Deserialize, ToSchema, Default)]
pub struct PairRequest {
    /// The name the device suggests for its token (at most 64 characters); the approver may change it.
    pub name: Option<String>,
    pub client_id: Option<String>,
    pub scope: Option<String>,
}

/// RFC 8628 §3.2's answer.
#[derive(Serialize, ToSchema)]
pub struct PairResponse {
    /// The device's secret for polling `POST /api/pair/token/`.
    pub device_code: String,
    /// What the person types at `verification_uri`: `XXXX-XXXX`, in any case, dash optional.
    pub user_code: String,
    pub verification_uri: String,
    /// `verification_uri` with the code filled in, for a QR code or a link.
    pub verification_uri_complete: String,
    /// Seconds until both codes expire.
    pub expires_in: u64,
    /// Seconds to wait between polls.
    pub interval: u64,
}

/// Start pairing a device: it gets a code for its owner to approve at `verification_uri`, and
/// polls `POST /api/pair/token/` for its token. No key needed.
#[utoipa::path(
    tag = "pairing",
    request_body(content((PairRequest = "application/json"), (PairRequest = "application/x-www-form-urlencoded"))),
    responses(
        (status = 200, body = PairResponse),
        (status = 400, description = "invalid_request", body = ErrorResponse),
        (status = 429, description = "slow_down: too many pairings waiting from this address", body = ErrorResponse),
    )
)]
#[post("/api/pair")]
pub async fn start_pairing(
    state: web::Data<AppState>,
    req: HttpRequest,
    address: ClientAddress,
    body: JsonOrForm<PairRequest>,
) -> Result<HttpResponse, ApiError> {
    // RFC 8628 §3.2: errors here are OAuth's too, so a device-flow library can read them.
    let suggested = match body.0.name.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(name) => Some(TokenName::parse(name).map_err(|invalid| ApiError::OAuth {
            code: "invalid_request",
            description: invalid.to_string().into(),
            interval: None,
        })?),
    };
    let Started {
        device_code,
        user_code,
        expires_in,
        interval,
    } = pairing::start(&state.db, &state.pairing, suggested, address.text()).await?;
    let verification_uri = format!("{}/pair", public_root(&state, &req));
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(PairResponse {
            device_code,
            verification_uri_complete: format!("{verification_uri}?code={}", user_code.display()),
            user_code: user_code.display(),
            verification_uri,
            expires_in: expires_in.as_secs(),
            interval: interval.as_secs(),
        }))
}

/// Where people reach this service: `MULTITOKEN_PUBLIC_URL`, else the scheme and host the
/// device addressed (behind a trusted proxy, as it forwarded them).
fn public_root(state: &AppState, req: &HttpRequest) -> String {
    match &state.public_url {
        Some(url) => url.clone(),
        None => {
            let (scheme, host) = site_origin(req);
            format!("{scheme}://{host}")
        }
    }
}

/// A device's poll (RFC 8628 §3.4).
#[derive(Deserialize, ToSchema)]
pub struct PairTokenRequest {
    /// `urn:ietf:params:oauth:grant-type:device_code`, or left out.
    pub grant_type: Option<String>,
    pub device_code: Option<String>,
    pub client_id: Option<String>,
}

/// The device's token, exactly once (RFC 8628 §3.5, RFC 6749 §5.1).
#[derive(Serialize, ToSchema)]
pub struct PairTokenResponse {
    /// The key, shown this once: `Authorization: Bearer …` (or `Token …`).
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    pub token_id: Uuid,
    pub token_name: String,
    pub user: String,
    /// Seconds until the token expires; absent when it does not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<i64>,
}

/// Poll for the device's token: 400 `authorization_pending` until approved, `slow_down` (with
/// the grown `interval`) when polled too often, `access_denied`, `expired_token`; once
/// approved, the token, once; after that `invalid_grant`.
#[utoipa::path(
    tag = "pairing",
    request_body(content((PairTokenRequest = "application/x-www-form-urlencoded"), (PairTokenRequest = "application/json"))),
    responses(
        (status = 200, body = PairTokenResponse),
        (status = 400, description = "authorization_pending, slow_down, access_denied, expired_token, invalid_grant, invalid_request or unsupported_grant_type", body = ErrorResponse),
    )
)]
#[post("/api/pair/token")]
pub async fn collect_token(
    state: web::Data<AppState>,
    body: JsonOrForm<PairTokenRequest>,
) -> Result<HttpResponse, ApiError> {
    let request = body.0;
    if request
        .grant_type
        .as_deref()
        .is_some_and(|grant| grant != DEVICE_CODE_GRANT)
    {
        return Err(ApiError::OAuth {
            code: "unsupported_grant_type",
            description: "only urn:ietf:params:oauth:grant-type:device_code is supported here"
                .into(),
            interval: None,
        });
    }
    let Some(device_code) = request.device_code.filter(|code| !code.is_empty()) else {
        return Err(ApiError::OAuth {
            code: "invalid_request",
            description: "device_code is required".into(),
            interval: None,
        });
    };
    let collected = pairing::poll(&state.db, &state.revocations, &device_code).await?;
    let expires_in = collected
        .token
        .expires_at
        .map(|at| (at - chrono::Utc::now()).num_seconds().max(0));
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(PairTokenResponse {
            access_token: collected.key.reveal().to_owned(),
            token_type: "Bearer",
            token_id: collected.token.id,
            token_name: collected.token.name,
            user: collected.owner.username,
            expires_in,
        }))
}

with_policy_fields! {
    /// An approval from an app the approver is signed in to: the code the device shows, and the
    /// token's name (default: the device's suggestion) and access.
    #[derive(Deserialize, ToSchema)]
    pub struct ApprovePairingRequest {
        pub user_code: String,
        pub name: Option<String>,
        /// Days until the token expires; omit for a token that never expires.
        #[schema(minimum = 1, maximum = 36500)]
        pub expires_in_days: Option<u32>,
    }
}

#[derive(Serialize, ToSchema)]
pub struct ApprovedPairingResponse {
    pub token_id: Uuid,
    pub token_name: String,
}

#[derive(Deserialize, ToSchema)]
pub struct DenyPairingRequest {
    pub user_code: String,
}

#[derive(Serialize, ToSchema)]
pub struct DeniedPairingResponse {
    /// Always `denied`.
    pub state: &'static str,
}

/// Approving hands out a new device token: a read-only or scoped token may not.
fn require_full_access(caller: &ApiUser) -> Result<(), ApiError> {
    let access = &caller.0.access;
    if access.read_only() || !access.scopes().is_empty() {
        return Err(ApiError::Forbidden(
            "pairing a device needs a full-access token (not read-only, no scopes)".into(),
        ));
    }
    Ok(())
}

/// Approve a device's pairing: the caller gets a device token with this name and policy, which
/// the device collects on its next poll. Unknown, expired or used codes answer 404; wrong codes
/// count like failed logins (429 over the limit).
#[utoipa::path(
    tag = "pairing",
    security(("token" = [])),
    request_body(content((ApprovePairingRequest = "application/json"), (ApprovePairingRequest = "application/x-www-form-urlencoded"))),
    responses(
        (status = 201, body = ApprovedPairingResponse),
        (status = 400, body = ErrorResponse),
        (status = 401, body = ErrorResponse),
        (status = 403, description = "not a full-access token, or the token limit reached", body = ErrorResponse),
        (status = 404, body = ErrorResponse),
        (status = 409, description = "name taken", body = ErrorResponse),
        (status = 429, body = ErrorResponse),
    )
)]
#[post("/api/pair/approve")]
pub async fn approve_pairing(
    state: web::Data<AppState>,
    caller: ApiUser,
    body: JsonOrForm<ApprovePairingRequest>,
) -> Result<HttpResponse, ApiError> {
    require_full_access(&caller)?;
    let mut request = body.0;
    let new = device_token(&mut request, state.policy.device_idle_expiry_days)?;
    let token = pairing::approve(
        &state.db,
        &state.revocations,
        &state.policy,
        &state.throttle,
        &caller.actor(),
        &caller.0.user,
        pairing::Approval {
            code: &request.user_code,
            token: new,
        },
    )
    .await?;
    Ok(HttpResponse::Created().json(ApprovedPairingResponse {
        token_id: token.id,
        token_name: token.name,
    }))
}

/// The token an approval asks for; without a name, the pairing names it.
fn device_token(
    request: &mut ApprovePairingRequest,
    idle_by_default: Option<u32>,
) -> Result<NewToken, ApiError> {
    let name = match request.name.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(name) => Some(TokenName::parse(name)?),
    };
    let lifetime = match request.expires_in_days {
        None => Lifetime::Forever,
        Some(days) => Lifetime::in_days(days, "expires_in_days")?,
    };
    let access = request
        .take_policy()
        .validate(idle_by_default)
        .map_err(|problems| ApiError::InvalidFields(problems.into_problems()))?;
    Ok(NewToken {
        name,
        ..NewToken::device_unnamed(lifetime)
    }
    .with_access(access))
}

/// Deny a device's pairing: its next poll answers `access_denied`.
#[utoipa::path(
    tag = "pairing",
    security(("token" = [])),
    request_body(content((DenyPairingRequest = "application/json"), (DenyPairingRequest = "application/x-www-form-urlencoded"))),
    responses(
        (status = 200, body = DeniedPairingResponse),
        (status = 400, body = ErrorResponse),
        (status = 401, body = ErrorResponse),
        (status = 403, body = ErrorResponse),
        (status = 404, body = ErrorResponse),
        (status = 429, body = ErrorResponse),
    )
)]
#[post("/api/pair/deny")]
pub async fn deny_pairing(
    state: web::Data<AppState>,
    caller: ApiUser,
    body: JsonOrForm<DenyPairingRequest>,
) -> Result<HttpResponse, ApiError> {
    require_full_access(&caller)?;
    pairing::deny(
        &state.db,
        &state.throttle,
        &caller.actor(),
        &body.0.user_code,
    )
    .await?;
    Ok(HttpResponse::Ok().json(DeniedPairingResponse { state: "denied" }))
}
