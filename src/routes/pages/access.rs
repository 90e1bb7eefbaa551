//! A token's policy in the web UI: the access fields of the create and edit forms, read into the
//! domain's `PolicyInput` / `PolicyPatch` (which do all the validating), and the policy as people
//! read it — on the token's page and as marks in the lists.

use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;
use serde_json::Value;

use crate::{
    entities::tokens::Model as Token,
    routes::checkbox,
    services::{
        Invalid,
        tokens::policy::{Patch, Policy, PolicyInput, PolicyPatch},
    },
};

/// A token expiring sooner than this is marked in the lists.
const EXPIRES_SOON: TimeDelta = TimeDelta::days(7);

/// The access fields shared by the create and edit forms, as typed. Lists are written one per
/// line or separated by spaces or commas; an empty number field means "none".
#[derive(Debug, Default, Deserialize)]
pub struct AccessForm {
    /// `full` or `read_only`.
    #[serde(default)]
    pub access: String,
    #[serde(default)]
    pub scopes: String,
    #[serde(default)]
    pub allowed_ips: String,
    #[serde(default, deserialize_with = "checkbox::deserialize")]
    pub pin_ip: bool,
    #[serde(default)]
    pub idle_expiry_days: String,
    /// Requests per minute; empty: no limit.
    #[serde(default)]
    pub rate_limit_per_minute: String,
    #[serde(default)]
    pub description: String,
}

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| c.is_whitespace() || c == ',')
        .filter(|word| !word.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A whole number, or `None` for an empty field.
fn number(text: &str, field: &'static str, unit: &str) -> Result<Option<i64>, Invalid> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|_| Invalid::new(field, format!("must be a whole number of {unit}")))
}

impl AccessForm {
    fn read_only(&self) -> Result<bool, Invalid> {
        match self.access.as_str() {
            "" | "full" => Ok(false),
            "read_only" => Ok(true),
            _ => Err(Invalid::new("access", "is not one of the choices")),
        }
    }

    fn idle_expiry(&self) -> Result<Patch<i64>, Invalid> {
        Ok(number(&self.idle_expiry_days, "idle_expiry_days", "days")?
            .map_or(Patch::Clear, Patch::Set))
    }

    fn rate_limit(&self) -> Result<Option<i64>, Invalid> {
        number(
            &self.rate_limit_per_minute,
            "rate_limit_per_minute",
            "requests",
        )
    }

    /// The policy of a new token; `max_uses` is the create form's own field.
    pub fn creation(self, max_uses: &str) -> Result<PolicyInput, Invalid> {
        Ok(PolicyInput {
            read_only: Some(self.read_only()?),
            idle_expiry_days: self.idle_expiry()?,
            max_uses: number(max_uses, "max_uses", "uses")?,
            rate_limit_per_minute: self.rate_limit()?,
            scopes: Some(words(&self.scopes)),
            allowed_ips: Some(words(&self.allowed_ips)),
            pin_ip: Some(self.pin_ip),
            description: Some(self.description),
            metadata: None,
        })
    }

    /// A change to `current`. A pinning token's page shows no networks (its pinned one is not
    /// the owner's to type), so a pin left on with the field empty keeps the pin and its network.
    pub fn change(self, current: &Policy, metadata: &str) -> Result<PolicyPatch, Invalid> {
        let networks = words(&self.allowed_ips);
        let allowed_ips = if self.pin_ip && current.pin_ip() && networks.is_empty() {
            Patch::Keep
        } else {
            Patch::Set(networks)
        };
        let metadata = match metadata.trim() {
            "" => serde_json::Map::new().into(),
            text => serde_json::from_str::<Value>(text)
                .map_err(|_| Invalid::new("metadata", "must be a JSON object"))?,
        };
        Ok(PolicyPatch {
            read_only: Patch::Set(self.read_only()?),
            idle_expiry_days: self.idle_expiry()?,
            rate_limit_per_minute: self.rate_limit()?.map_or(Patch::Clear, Patch::Set),
            scopes: Patch::Set(words(&self.scopes)),
            allowed_ips,
            pin_ip: Patch::Set(self.pin_ip),
            description: Patch::Set(self.description),
            metadata: Patch::Set(metadata),
        })
    }
}

/// A short label in a token list saying how a token is limited, with a longer explanation.
pub struct Mark {
    pub label: String,
    pub title: String,
    /// `mark-warning` for what needs attention soon.
    pub class: &'static str,
}

/// The marks of a token: read-only, bound to networks (or pinned), limited uses, expiring soon.
pub fn marks(token: &Token, access: &Policy, at: DateTime<Utc>) -> Vec<Mark> {
    let mut marks = Vec::new();
    let mut mark = |label: String, title: String, class| {
        marks.push(Mark {
            label,
            title,
            class,
        })
    };
    if access.read_only() {
        mark(
            "read-only".into(),
            "May only read (GET, HEAD, OPTIONS)".into(),
            "",
        );
    }
    if !access.scopes().is_empty() {
        mark(
            "scoped".into(),
            format!("Scopes: {}", access.scopes().join(" ")),
            "",
        );
    }
    if access.awaits_pin() {
        mark(
            "pins on first use".into(),
            "Will work only from the first address that uses it".into(),
            "",
        );
    } else if !access.allowed_ips().is_empty() || access.allowed_ips_unreadable() {
        mark(
            "network-bound".into(),
            format!("Allowed from: {}", networks(access)),
            "",
        );
    }
    if let Some(uses) = access.remaining_uses() {
        let plural = if uses == 1 { "" } else { "s" };
        mark(
            format!("{uses} use{plural} left"),
            "Limited number of uses".into(),
            if uses == 0 { "mark-warning" } else { "" },
        );
    }
    if let Some(limit) = access.rate_limit_per_minute() {
        mark(
            format!("{limit}/min"),
            format!("At most {limit} requests a minute"),
            "",
        );
    }
    if let Some(expires) = token.expires_at
        && expires > at
        && expires - at <= EXPIRES_SOON
    {
        mark(
            "expires soon".into(),
            "Expires within 7 days".into(),
            "mark-warning",
        );
    }
    marks
}

/// The allowed networks as one line of text.
pub fn networks(access: &Policy) -> String {
    let mut listed: Vec<String> = access
        .allowed_ips()
        .iter()
        .map(ToString::to_string)
        .collect();
    if access.allowed_ips_unreadable() {
        listed.push("(unreadable: no address is allowed)".into());
    }
    listed.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(body: &str) -> AccessForm {
        serde_urlencoded::from_str(body).unwrap()
    }

    #[test]
    fn the_create_form_becomes_a_policy_input() {
        let input = form(
            "access=read_only&scopes=orders,+billing&allowed_ips=127.0.0.1%0D%0A10.0.0.0/8\
             &idle_expiry_days=30&description=hi",
        )
        .creation("5")
        .unwrap();
        let policy = input.validate(None).unwrap();
        assert!(policy.read_only());
        assert_eq!(policy.scopes(), ["orders", "billing"]);
        assert_eq!(networks(&policy), "127.0.0.1/32 10.0.0.0/8");
        assert_eq!(policy.idle_expiry_days(), Some(30));
        assert_eq!(policy.remaining_uses(), Some(5));
        assert_eq!(policy.description(), "hi");
    }

    #[test]
    fn empty_fields_mean_none_and_bad_ones_are_named() {
        let policy = form("access=full")
            .creation("")
            .unwrap()
            .validate(Some(90))
            .unwrap();
        assert_eq!(
            policy,
            Policy::default(),
            "an empty idle field is no idle expiry"
        );
        for (body, uses, field) in [
            ("access=admin", "", "access"),
            ("idle_expiry_days=soon", "", "idle_expiry_days"),
            ("", "1.5", "max_uses"),
        ] {
            let error = form(body).creation(uses).expect_err(body);
            assert_eq!(error.field, field, "{body}");
        }
        let error = form("")
            .change(&Policy::default(), "{")
            .expect_err("not JSON");
        assert_eq!(error.field, "metadata");
        let patch = form("").change(&Policy::default(), "[1]").unwrap();
        let refused = Policy::default()
            .apply(patch)
            .expect_err("an array is no object");
        assert_eq!(
            refused.problems()[0].field,
            "metadata",
            "the domain checks the shape"
        );
    }

    #[test]
    fn a_pin_left_on_with_no_networks_keeps_the_pinned_network() {
        let pinning = PolicyInput {
            pin_ip: Some(true),
            ..PolicyInput::default()
        }
        .validate(None)
        .unwrap()
        .pinned_to("192.0.2.7".parse().unwrap())
        .unwrap();
        let kept = pinning
            .apply(form("pin_ip=on").change(&pinning, "{}").unwrap())
            .unwrap();
        assert_eq!(networks(&kept), "192.0.2.7/32");
        let lifted = pinning
            .apply(
                form("allowed_ips=10.0.0.0/8")
                    .change(&pinning, "{}")
                    .unwrap(),
            )
            .unwrap();
        assert!(!lifted.pin_ip());
        assert_eq!(networks(&lifted), "10.0.0.0/8");
    }
}
