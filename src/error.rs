//! The API's one place where domain outcomes become JSON answers. Clients see `Display`; 5xx
//! causes are logged here, once, with keys redacted. (The web UI's errors: `routes::pages::error`.)

use actix_web::{HttpResponse, ResponseError, http::StatusCode, http::header};
use serde_json::json;

use crate::{
    auth::redact::redact_keys,
    services::{
        Invalid,
        pairing::{NotYet, PairingError, PollError},
        throttle::ThrottleError,
        tokens::TokenError,
        users::UserError,
    },
    verify::AuthError,
};

pub const API_BODY_LIMIT: usize = 64 * 1024;

/// `Debug` is written by hand and names the variant only: actix logs `Error in response: {:?}`
/// at debug level, and the texts carried here can quote what a client sent (a key, a password).
#[derive(thiserror::Error)]
pub enum ApiError {
    /// 401 with one of the contract's fixed messages.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// 400 for username + password logins, whatever went wrong.
    #[error("Unable to log in with provided credentials.")]
    BadCredentials,
    #[error("{0}")]
    Forbidden(String),
    /// 403: the token lacks a scope the request requires (forward-auth adds which, in
    /// `WWW-Authenticate`).
    #[error("Insufficient scope")]
    InsufficientScope,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Validation(Invalid),
    /// 400 naming every field that was wrong.
    #[error("invalid fields")]
    InvalidFields(Vec<Invalid>),
    /// 400: a body field whose value had the wrong JSON type (`"maybe"` for a bool), named as
    /// the body named it.
    #[error("invalid {field}")]
    WrongType { field: String, message: String },
    #[error("{0}")]
    BadRequest(String),
    #[error("method not allowed")]
    MethodNotAllowed(Vec<&'static str>),
    #[error("request body is larger than {} KiB", API_BODY_LIMIT / 1024)]
    PayloadTooLarge,
    /// 429 with `Retry-After`: too many failed logins for the username or from the address.
    #[error("Too many failed login attempts. Try again in {retry_after} seconds.")]
    TooManyAttempts { retry_after: u64 },
    #[error("send the body as application/json or application/x-www-form-urlencoded")]
    UnsupportedMediaType,
    /// 400 in the shape of OAuth (RFC 6749 §5.2, RFC 8628 §3.5): `error` is the code a device
    /// flow client acts on; `interval` only with `slow_down`.
    #[error("{code}")]
    OAuth {
        code: &'static str,
        description: std::borrow::Cow<'static, str>,
        interval: Option<i32>,
    },
    /// 429 with `Retry-After` and the RateLimit fields: over the token's own limit per minute.
    #[error("Rate limit exceeded")]
    RateLimited { limit: u32, retry_after: u64 },
    /// 429 with `Retry-After`, OAuth-shaped (`slow_down`): too many pairings wait from one address.
    #[error("slow_down")]
    TooManyPairings { retry_after: u64 },
    /// 503: a store the answer depends on does not answer; says which.
    #[error("{0} unavailable")]
    Unavailable(&'static str),
    #[error("internal server error")]
    Internal(String),
}

pub const INVALID_TOKEN: &str = "Invalid or Inactive Token";

impl ApiError {
    pub fn internal(cause: impl std::fmt::Debug) -> ApiError {
        ApiError::Internal(format!("{cause:?}"))
    }
}

impl std::fmt::Debug for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // Fixed texts and numbers only.
            ApiError::Unauthorized(message) => {
                f.debug_tuple("Unauthorized").field(message).finish()
            }
            ApiError::BadCredentials => f.write_str("BadCredentials"),
            ApiError::Forbidden(_) => f.write_str("Forbidden"),
            ApiError::InsufficientScope => f.write_str("InsufficientScope"),
            ApiError::NotFound(_) => f.write_str("NotFound"),
            ApiError::Conflict(_) => f.write_str("Conflict"),
            ApiError::Validation(invalid) => {
                f.debug_tuple("Validation").field(&invalid.field).finish()
            }
            ApiError::BadRequest(_) => f.write_str("BadRequest"),
            ApiError::WrongType { field, .. } => f.debug_tuple("WrongType").field(field).finish(),
            ApiError::InvalidFields(problems) => f
                .debug_tuple("InvalidFields")
                .field(&problems.iter().map(|p| p.field).collect::<Vec<_>>())
                .finish(),
            ApiError::MethodNotAllowed(allowed) => {
                f.debug_tuple("MethodNotAllowed").field(allowed).finish()
            }
            ApiError::PayloadTooLarge => f.write_str("PayloadTooLarge"),
            ApiError::TooManyAttempts { retry_after } => f
                .debug_struct("TooManyAttempts")
                .field("retry_after", retry_after)
                .finish(),
            ApiError::UnsupportedMediaType => f.write_str("UnsupportedMediaType"),
            ApiError::OAuth { code, .. } => f.debug_tuple("OAuth").field(code).finish(),
            ApiError::RateLimited { limit, retry_after } => f
                .debug_struct("RateLimited")
                .field("limit", limit)
                .field("retry_after", retry_after)
                .finish(),
            ApiError::TooManyPairings { retry_after } => f
                .debug_struct("TooManyPairings")
                .field("retry_after", retry_after)
                .finish(),
            ApiError::Unavailable(store) => f.debug_tuple("Unavailable").field(store).finish(),
            // The cause is logged once, redacted, by `error_response`.
            ApiError::Internal(_) => f.write_str("Internal"),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::BadCredentials
            | ApiError::Validation(_)
            | ApiError::InvalidFields(_)
            | ApiError::WrongType { .. }
            | ApiError::OAuth { .. }
            | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Forbidden(_) | ApiError::InsufficientScope => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::TooManyAttempts { .. }
            | ApiError::TooManyPairings { .. }
            | ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(cause) = self {
            log::error!("internal error: {}", redact_keys(cause));
        }
        let mut body = json!({ "error": self.to_string() });
        match self {
            ApiError::Unauthorized(_) | ApiError::BadCredentials => {
                body["is_authenticated"] = json!(false);
            }
            ApiError::TooManyAttempts { retry_after } => {
                body["is_authenticated"] = json!(false);
                body["retry_after"] = json!(retry_after);
            }
            ApiError::Validation(invalid) => {
                body["error"] = json!(format!("invalid {}", invalid.field));
                body["fields"] = json!({ invalid.field: [invalid.message] });
            }
            ApiError::WrongType { field, message } => {
                body["fields"] = json!({ field.as_str(): [message] });
            }
            ApiError::OAuth {
                description,
                interval,
                ..
            } => {
                body["error_description"] = json!(description);
                if let Some(interval) = interval {
                    body["interval"] = json!(interval);
                }
            }
            ApiError::RateLimited { retry_after, .. } => {
                body["retry_after"] = json!(retry_after);
            }
            ApiError::TooManyPairings { retry_after } => {
                body["error_description"] = json!(format!(
                    "too many pairings are waiting for approval from this address; try again in {retry_after} seconds"
                ));
            }
            ApiError::InvalidFields(problems) => {
                let names: Vec<&str> = problems.iter().map(|p| p.field).collect();
                body["error"] = json!(format!("invalid {}", names.join(", ")));
                let mut fields = serde_json::Map::new();
                for problem in problems {
                    let messages = fields.entry(problem.field).or_insert_with(|| json!([]));
                    if let Some(list) = messages.as_array_mut() {
                        list.push(json!(problem.message));
                    }
                }
                body["fields"] = serde_json::Value::Object(fields);
            }
            _ => {}
        }
        let mut response = HttpResponse::build(self.status_code());
        match self {
            ApiError::Unauthorized(_) => {
                response.insert_header((header::WWW_AUTHENTICATE, r#"Token realm="multitoken""#));
            }
            ApiError::MethodNotAllowed(methods) => {
                response.insert_header((header::ALLOW, methods.join(", ")));
            }
            ApiError::TooManyAttempts { retry_after }
            | ApiError::TooManyPairings { retry_after } => {
                response.insert_header((header::RETRY_AFTER, retry_after.to_string()));
            }
            // draft-ietf-httpapi-ratelimit-headers: the policy (a quota per 60-second window) and
            // where the client stands in it.
            ApiError::RateLimited { limit, retry_after } => {
                response.insert_header((header::RETRY_AFTER, retry_after.to_string()));
                response.insert_header(("RateLimit-Limit", limit.to_string()));
                response.insert_header(("RateLimit-Remaining", "0"));
                response.insert_header(("RateLimit-Reset", retry_after.to_string()));
                response.insert_header(("RateLimit-Policy", format!("{limit};w=60")));
            }
            // RFC 6749 §5.2: token endpoint answers are never cached.
            ApiError::OAuth { .. } => {
                response.insert_header((header::CACHE_CONTROL, "no-store"));
            }
            _ => {}
        }
        response.json(body)
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> ApiError {
        match error {
            AuthError::Invalid => ApiError::Unauthorized(INVALID_TOKEN),
            AuthError::Expired => ApiError::Unauthorized("Token has expired"),
            AuthError::InactiveUser => ApiError::Unauthorized("Invalid user"),
            AuthError::ReadOnly => ApiError::Forbidden(error.to_string()),
            AuthError::InsufficientScope => ApiError::InsufficientScope,
            AuthError::RateLimited(exceeded) => ApiError::RateLimited {
                limit: exceeded.limit,
                // Whole seconds, rounded up: a client that waits this long gets through.
                retry_after: exceeded.retry_after.as_secs()
                    + u64::from(exceeded.retry_after.subsec_nanos() > 0),
            },
            AuthError::Db(e) => ApiError::internal(e),
        }
    }
}

impl From<TokenError> for ApiError {
    fn from(error: TokenError) -> ApiError {
        match error {
            TokenError::NotFound => ApiError::NotFound(error.to_string()),
            TokenError::NameTaken => ApiError::Conflict(error.to_string()),
            TokenError::LimitReached { .. } => ApiError::Forbidden(error.to_string()),
            TokenError::Invalid(invalid) => ApiError::Validation(invalid),
            TokenError::Policy(problems) => ApiError::InvalidFields(problems.into_problems()),
            TokenError::Db(e) => ApiError::internal(e),
        }
    }
}

impl From<UserError> for ApiError {
    fn from(error: UserError) -> ApiError {
        match error {
            UserError::BadCredentials => ApiError::BadCredentials,
            UserError::NotFound => ApiError::NotFound(error.to_string()),
            UserError::UsernameTaken => ApiError::Conflict(error.to_string()),
            UserError::Invalid(invalid) => ApiError::Validation(invalid),
            UserError::OwnAccount => ApiError::Conflict(error.to_string()),
            UserError::WrongCurrentPassword => ApiError::BadRequest(error.to_string()),
            UserError::TooManyAttempts { retry_after } => ApiError::TooManyAttempts {
                retry_after: retry_after.as_secs(),
            },
            UserError::ThrottleUnavailable(e) => {
                log::error!("login refused: {e}");
                ApiError::Unavailable("login throttle (Redis)")
            }
            UserError::Token(e) => e.into(),
            UserError::Password(e) => ApiError::internal(e),
            UserError::Db(e) => ApiError::internal(e),
        }
    }
}

impl From<Invalid> for ApiError {
    fn from(invalid: Invalid) -> ApiError {
        ApiError::Validation(invalid)
    }
}

impl From<PairingError> for ApiError {
    fn from(error: PairingError) -> ApiError {
        match error {
            PairingError::UnknownCode => ApiError::NotFound(error.to_string()),
            PairingError::TooManyPending { retry_after } => ApiError::TooManyPairings {
                retry_after: retry_after.as_secs().max(1),
            },
            PairingError::Throttle(ThrottleError::Throttled { retry_after }) => {
                ApiError::TooManyAttempts {
                    retry_after: retry_after.as_secs(),
                }
            }
            PairingError::Throttle(ThrottleError::Redis(e)) => {
                log::error!("pairing refused: {e}");
                ApiError::Unavailable("login throttle (Redis)")
            }
            PairingError::Throttle(ThrottleError::Db(e)) | PairingError::Db(e) => {
                ApiError::internal(e)
            }
            PairingError::Token(e) => e.into(),
        }
    }
}

impl From<PollError> for ApiError {
    fn from(error: PollError) -> ApiError {
        let reason = match error {
            PollError::NotYet(reason) => reason,
            PollError::Db(e) => return ApiError::internal(e),
        };
        let (description, interval) = match reason {
            NotYet::Pending => (
                "the pairing is not approved yet; poll again after the interval",
                None,
            ),
            NotYet::SlowDown { interval } => (
                "polled too soon; wait the new interval between polls",
                Some(interval),
            ),
            NotYet::Denied => ("the pairing was denied", None),
            NotYet::Expired => ("the pairing codes expired; start again", None),
            NotYet::InvalidGrant => (
                "unknown device_code, or its token was already collected",
                None,
            ),
        };
        ApiError::OAuth {
            code: reason.code(),
            description: description.into(),
            interval,
        }
    }
}
