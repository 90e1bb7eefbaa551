//! Errors of the web UI and how they look: an HTML page, or a redirect to the sign-in page.

use actix_web::{HttpResponse, ResponseError, http::StatusCode};

use crate::{
    auth::redact::redact_keys,
    error::API_BODY_LIMIT,
    services::{
        Invalid, pairing::PairingError, throttle::ThrottleError, tokens::TokenError,
        users::UserError,
    },
};

/// Errors of the web UI: an HTML page (or a redirect to the sign-in page), never JSON, never
/// internals. Domain refusals (`Refused`) are normally turned into a flash message by the handler.
/// `Debug` is written by hand, as for `ApiError`: `SignInRequired`'s `next` is a URL a key may
/// have been pasted into.
#[derive(thiserror::Error)]
pub enum WebError {
    #[error("sign in first")]
    SignInRequired { next: Option<String> },
    #[error("{0}")]
    Forbidden(String),
    #[error(
        "This form has expired or did not come from this site. Go back, reload the page and try again."
    )]
    CsrfRejected,
    #[error("There is nothing at this address.")]
    NotFound,
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Refused(String),
    #[error("The form sent was larger than {} KiB.", API_BODY_LIMIT / 1024)]
    PayloadTooLarge,
    #[error("{0} Try again in a moment.")]
    Unavailable(&'static str),
    #[error("Something went wrong on our side. It has been logged; try again later.")]
    Internal(String),
}

impl WebError {
    pub fn internal(cause: impl std::fmt::Debug) -> WebError {
        WebError::Internal(format!("{cause:?}"))
    }

    fn title(&self) -> &'static str {
        match self.status_code() {
            StatusCode::FORBIDDEN => "Not allowed",
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::PAYLOAD_TOO_LARGE => "Too large",
            StatusCode::BAD_REQUEST => "Bad request",
            StatusCode::SERVICE_UNAVAILABLE => "Unavailable",
            _ => "Error",
        }
    }
}

impl std::fmt::Debug for WebError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WebError::SignInRequired { .. } => "SignInRequired",
            WebError::Forbidden(_) => "Forbidden",
            WebError::CsrfRejected => "CsrfRejected",
            WebError::NotFound => "NotFound",
            WebError::BadRequest(_) => "BadRequest",
            WebError::Refused(_) => "Refused",
            WebError::PayloadTooLarge => "PayloadTooLarge",
            WebError::Unavailable(_) => "Unavailable",
            // The cause is logged once, redacted, by `error_response`.
            WebError::Internal(_) => "Internal",
        })
    }
}

impl ResponseError for WebError {
    fn status_code(&self) -> StatusCode {
        match self {
            WebError::SignInRequired { .. } => StatusCode::SEE_OTHER,
            WebError::Forbidden(_) | WebError::CsrfRejected => StatusCode::FORBIDDEN,
            WebError::NotFound => StatusCode::NOT_FOUND,
            WebError::BadRequest(_) | WebError::Refused(_) => StatusCode::BAD_REQUEST,
            WebError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            WebError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            WebError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let WebError::Internal(cause) = self {
            log::error!("internal error: {}", redact_keys(cause));
        }
        if let WebError::SignInRequired { next } = self {
            return super::see_other(&super::sign_in_url(next.as_deref()));
        }
        super::error_page(self.status_code(), self.title(), &self.to_string())
    }
}

impl From<TokenError> for WebError {
    fn from(error: TokenError) -> WebError {
        match error {
            TokenError::NotFound => WebError::Refused("That token no longer exists.".into()),
            TokenError::NameTaken => {
                WebError::Refused("You already have a token with this name.".into())
            }
            TokenError::LimitReached { .. } => WebError::Refused(capitalized(&error.to_string())),
            TokenError::Invalid(invalid) => WebError::Refused(invalid_message(&invalid)),
            TokenError::Policy(problems) => WebError::Refused(
                problems
                    .problems()
                    .iter()
                    .map(invalid_message)
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            TokenError::Db(e) => WebError::internal(e),
        }
    }
}

impl From<UserError> for WebError {
    fn from(error: UserError) -> WebError {
        match error {
            UserError::BadCredentials
            | UserError::NotFound
            | UserError::UsernameTaken
            | UserError::OwnAccount
            | UserError::WrongCurrentPassword => WebError::Refused(capitalized(&error.to_string())),
            UserError::TooManyAttempts { retry_after } => WebError::Refused(format!(
                "Too many failed sign-in attempts. Try again in {} seconds.",
                retry_after.as_secs()
            )),
            UserError::ThrottleUnavailable(e) => {
                log::error!("sign-in refused: {e}");
                WebError::Unavailable("Signing in is unavailable.")
            }
            UserError::Invalid(invalid) => WebError::Refused(invalid_message(&invalid)),
            UserError::Token(e) => e.into(),
            UserError::Password(e) => WebError::internal(e),
            UserError::Db(e) => WebError::internal(e),
        }
    }
}

impl From<PairingError> for WebError {
    fn from(error: PairingError) -> WebError {
        match error {
            PairingError::UnknownCode => WebError::Refused(
                "That code is unknown, has expired or was already used. Check the code on the device, or start pairing again there.".into(),
            ),
            // Only starting a pairing (the API) meets this.
            PairingError::TooManyPending { .. } => WebError::Refused(capitalized(&error.to_string())),
            PairingError::Throttle(ThrottleError::Throttled { retry_after }) => {
                WebError::Refused(format!(
                    "Too many wrong codes. Try again in {} seconds.",
                    retry_after.as_secs()
                ))
            }
            PairingError::Throttle(ThrottleError::Redis(e)) => {
                log::error!("pairing refused: {e}");
                WebError::Unavailable("Pairing is unavailable.")
            }
            PairingError::Throttle(ThrottleError::Db(e)) | PairingError::Db(e) => {
                WebError::internal(e)
            }
            PairingError::Token(e) => e.into(),
        }
    }
}

impl From<sea_orm::DbErr> for WebError {
    fn from(error: sea_orm::DbErr) -> WebError {
        WebError::internal(error)
    }
}

fn invalid_message(invalid: &Invalid) -> String {
    capitalized(&format!(
        "{} {}.",
        invalid.field.replace('_', " "),
        invalid.message
    ))
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
