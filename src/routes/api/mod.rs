//! The JSON API under `/api`.
pub mod admin;
pub mod introspect;
pub mod pairing;
mod policy_request;
pub mod session;
pub mod timestamp;
pub mod tokens;
pub mod usage;

use chrono::{DateTime, Utc};
use ipnet::IpNet;
use serde::{Serialize, Serializer, ser::SerializeStruct};
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
    /// Requests per minute; `null`: no limit.
    pub rate_limit_per_minute: Option<u32>,
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
            rate_limit_per_minute: access.rate_limit_per_minute(),
            metadata: access.metadata().clone(),
        }
    }
}

/// `AccessFields` borrowed from a policy, for the answer every device polls (`/api/me/`): the
/// same JSON, with nothing copied or formatted into strings first.
pub struct AccessView<'a>(pub &'a Policy);

impl Serialize for AccessView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let access = self.0;
        let mut fields = serializer.serialize_struct("AccessFields", 9)?;
        fields.serialize_field("description", access.description())?;
        fields.serialize_field("read_only", &access.read_only())?;
        fields.serialize_field("scopes", access.scopes())?;
        fields.serialize_field("allowed_ips", &Networks(access.allowed_ips()))?;
        fields.serialize_field("pin_ip", &access.pin_ip())?;
        fields.serialize_field("idle_expiry_days", &access.idle_expiry_days())?;
        fields.serialize_field("remaining_uses", &access.remaining_uses())?;
        fields.serialize_field("rate_limit_per_minute", &access.rate_limit_per_minute())?;
        fields.serialize_field("metadata", access.metadata())?;
        fields.end()
    }
}

/// Networks as a JSON array of CIDR strings, each written straight into the output.
struct Networks<'a>(&'a [IpNet]);

impl Serialize for Networks<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(Network))
    }
}

struct Network<'a>(&'a IpNet);

impl Serialize for Network<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self.0)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::tokens::policy::PolicyInput;

    #[test]
    fn the_borrowed_view_writes_the_same_json_as_the_fields() {
        let policies = [
            Policy::default(),
            PolicyInput {
                description: Some("roof \"sensor\"".into()),
                read_only: Some(true),
                scopes: Some(vec!["a".into(), "b:c".into()]),
                allowed_ips: Some(vec!["127.0.0.1".into(), "2001:db8::/32".into()]),
                max_uses: Some(3),
                metadata: Some(serde_json::json!({"room": "kitchen", "n": [1, 2]})),
                ..PolicyInput::default()
            }
            .validate(Some(30))
            .unwrap(),
        ];
        for policy in policies {
            assert_eq!(
                serde_json::to_value(AccessView(&policy)).unwrap(),
                serde_json::to_value(AccessFields::from(&policy)).unwrap(),
                "{policy:?}"
            );
        }
    }
}
