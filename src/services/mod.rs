//! The domain: rules, owner scoping and transactions. Knows nothing of HTTP.
pub mod audit;
pub mod throttle;
pub mod tokens;
pub mod users;

use std::time::Duration;

/// The rules that shape issuance, from configuration.
#[derive(Clone, Debug)]
pub struct Policy {
    pub session_ttl: Duration,
    pub max_tokens_per_user: u32,
    pub token_on_signup: bool,
}

/// A field that failed validation, with a message fit to show the person who typed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    pub field: &'static str,
    pub message: String,
}

impl Invalid {
    pub fn new(field: &'static str, message: impl Into<String>) -> Invalid {
        Invalid {
            field,
            message: message.into(),
        }
    }
}

/// Text that cannot be stored faithfully or shown safely: NUL and other control characters
/// (PostgreSQL refuses NUL in text; the rest only ever arrives by accident or malice).
fn has_control_characters(text: &str) -> bool {
    text.chars().any(char::is_control)
}

/// Invisible formatting characters that can make text look like other text: bidirectional
/// overrides and isolates, zero-width spaces, the byte-order mark. (Zero-width joiners stay:
/// emoji sequences need them.)
fn is_deceptive_format(c: char) -> bool {
    matches!(
        c,
        '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'
            | '\u{200E}'
            | '\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
    )
}

/// A unique index refused the row: a domain conflict (409), never a server error.
fn is_unique_violation(error: &sea_orm::DbErr) -> bool {
    matches!(
        error.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}

pub(crate) fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}
