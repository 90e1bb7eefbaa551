//! The policy fields that the two requests creating a device token accept (`POST /api/tokens/`
//! and `POST /api/non-expiring-token/`), declared once. Both requests are read from JSON and from
//! forms, so the fields are the request's own (a `#[serde(flatten)]` would read form values as
//! text and lose the field's name from type errors); this macro writes them into each.

/// `with_policy_fields! { /// docs  pub struct Name { own fields } }`: the struct with the policy
/// fields appended, and `Name::take_policy`, which moves them out as a `PolicyInput`.
macro_rules! with_policy_fields {
    (
        $(#[$meta:meta])*
        pub struct $name:ident { $($own:tt)* }
    ) => {
        $(#[$meta])*
        pub struct $name {
            $($own)*
            /// Free text, at most 500 characters.
            pub description: Option<String>,
            /// Only GET, HEAD and OPTIONS on our API (and logging itself out).
            pub read_only: Option<bool>,
            /// Labels for the protected app: up to 32, each 1–64 of `A-Za-z0-9:._-` (JSON only).
            pub scopes: Option<Vec<String>>,
            /// CIDRs (a bare address is one host), up to 32; empty: anywhere (JSON only).
            pub allowed_ips: Option<Vec<String>>,
            /// With no `allowed_ips`: the first address that uses the token becomes its only one.
            pub pin_ip: Option<bool>,
            /// Unused this many days (1–3650) → expired; `null`: never; absent: the deployment's
            /// default for device tokens (`MULTITOKEN_DEVICE_IDLE_EXPIRY`).
            #[serde(default)]
            #[schema(value_type = Option<i64>, minimum = 1, maximum = 3650)]
            pub idle_expiry_days: $crate::services::tokens::policy::Patch<i64>,
            /// The token works this many times, then never again; absent: unlimited.
            #[schema(minimum = 1, maximum = 1000000000)]
            pub max_uses: Option<i64>,
            /// Requests per minute (1–1000000); over it, 429 with `Retry-After`. Absent: no limit.
            #[schema(minimum = 1, maximum = 1000000)]
            pub rate_limit_per_minute: Option<i64>,
            /// A JSON object of at most 4 KiB, shown to the owner, admins and introspection.
            #[schema(value_type = Option<Object>)]
            pub metadata: Option<serde_json::Value>,
        }

        impl $name {
            /// The policy fields, unchecked, leaving the request's own.
            pub fn take_policy(&mut self) -> $crate::services::tokens::policy::PolicyInput {
                $crate::services::tokens::policy::PolicyInput {
                    description: self.description.take(),
                    read_only: self.read_only.take(),
                    scopes: self.scopes.take(),
                    allowed_ips: self.allowed_ips.take(),
                    pin_ip: self.pin_ip.take(),
                    idle_expiry_days: std::mem::take(&mut self.idle_expiry_days),
                    max_uses: self.max_uses.take(),
                    rate_limit_per_minute: self.rate_limit_per_minute.take(),
                    metadata: self.metadata.take(),
                }
            }
        }
    };
}

pub(crate) use with_policy_fields;
