//! The JSON API under `/api`.
pub mod admin;
pub mod introspect;
pub mod session;
pub mod timestamp;
pub mod tokens;

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::entities::tokens::{Model as Token, TokenKind};

/// A token as listed: never its key or digest.
#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    pub id: Uuid,
    pub name: String,
    pub kind: TokenKind,
    /// The key's first characters, to tell tokens apart.
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    /// `null`: never expires.
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

impl From<Token> for TokenResponse {
    fn from(token: Token) -> TokenResponse {
        TokenResponse {
            id: token.id,
            name: token.name,
            kind: token.kind,
            prefix: token.key_prefix,
            created_at: token.created_at,
            expires_at: token.expires_at,
            last_used_at: token.last_used_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct DetailResponse {
    pub detail: String,
}

/// Every error: `{"error": …}`; 401s and failed logins add `is_authenticated: false`;
/// validation errors add `fields`.
#[derive(Serialize, ToSchema)]
pub struct ErrorResponse {
    pub error: String,
    #[schema(nullable = false)]
    pub is_authenticated: Option<bool>,
    #[schema(value_type = Option<Object>, nullable = false)]
    pub fields: Option<serde_json::Value>,
    /// With 429: seconds to wait, as in `Retry-After`.
    #[schema(nullable = false)]
    pub retry_after: Option<u64>,
}
