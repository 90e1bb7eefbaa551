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

use crate::{
    entities::tokens::{Model as Token, TokenKind},
    services::tokens::policy::Policy,
};

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
    /// The address of the last use (as of the last write-back).
    pub last_used_ip: Option<String>,
    pub last_used_user_agent: Option<String>,
    #[serde(flatten)]
    pub access: AccessFields,
}

/// A token's policy as answers show it.
#[derive(Serialize, ToSchema)]
pub struct AccessFields {
    pub description: String,
    pub read_only: bool,
    pub scopes: Vec<String>,
    /// Normalized CIDRs; empty: anywhere.
    pub allowed_ips: Vec<String>,
    pub pin_ip: bool,
    pub idle_expiry_days: Option<u32>,
    /// `null`: unlimited.
    pub remaining_uses: Option<i64>,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

impl From<&Policy> for AccessFields {
    fn from(access: &Policy) -> AccessFields {
        AccessFields {
            description: access.description().to_owned(),
            read_only: access.read_only(),
            scopes: access.scopes().to_vec(),
            allowed_ips: access
                .allowed_ips()
                .iter()
                .map(ToString::to_string)
                .collect(),
            pin_ip: access.pin_ip(),
            idle_expiry_days: access.idle_expiry_days(),
            remaining_uses: access.remaining_uses(),
            metadata: access.metadata().clone(),
        }
    }
}

impl From<Token> for TokenResponse {
    fn from(token: Token) -> TokenResponse {
        let access = AccessFields::from(&Policy::of(&token));
        TokenResponse {
            access,
            last_used_ip: token.last_used_ip,
            last_used_user_agent: token.last_used_user_agent,
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
