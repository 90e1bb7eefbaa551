//! A token's policy: what it may do (read-only, scopes), from where (allowed networks, pinning to
//! its first address), how long unused and how many times, and its owner's notes. The rules, the
//! checks verification runs on a cached policy, and the text form of its columns; no HTTP, no
//! database.

use std::net::IpAddr;

use chrono::{DateTime, TimeDelta, Utc};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::{entities::tokens, services::Invalid};

pub const DESCRIPTION_MAX_CHARS: usize = 500;
pub const MAX_SCOPES: usize = 32;
pub const SCOPE_MAX_CHARS: usize = 64;
pub const MAX_ALLOWED_IPS: usize = 32;
pub const IDLE_EXPIRY_MAX_DAYS: u32 = 3650;
pub const MAX_USES: i64 = 1_000_000_000;
pub const RATE_LIMIT_MAX_PER_MINUTE: u32 = 1_000_000;
/// Measured on the compact JSON text, which is also what is stored.
pub const METADATA_MAX_BYTES: usize = 4096;

/// An IPv6 client is pinned by its /64: one host's privacy addresses rotate inside it.
const PIN_PREFIX_V6: u8 = 64;

/// Written in place of the allowed networks of a policy whose stored ones could not be read. It
/// is itself no network, so such a row keeps decoding as "allows no address" however often it is
/// re-saved (a PATCH that leaves `allowed_ips` alone must not turn it into "anywhere").
const UNREADABLE_MARKER: &str = "!unreadable";

/// A token's policy. `Default` is what every token had before policies: full access, no scopes,
/// from anywhere, never idle-expiring, unlimited, no notes. Built only by validation
/// (`PolicyInput::validate`, `Policy::apply`) or from a row (`Policy::decode`), so its lists are
/// always normalized and within bounds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policy {
    description: String,
    read_only: bool,
    scopes: Vec<String>,
    /// Empty means anywhere. With `pin_ip`, empty until the first use, then that one network.
    allowed_ips: Vec<IpNet>,
    /// The stored networks could not be read; `allows` refuses every address (see `decode`).
    allowed_ips_unreadable: bool,
    pin_ip: bool,
    idle_expiry_days: Option<u32>,
    remaining_uses: Option<i64>,
    /// Requests per minute; `None`: no limit.
    rate_limit_per_minute: Option<u32>,
    metadata: Map<String, Value>,
}

/// One field of a partial update: absent keeps the current value, JSON `null` clears it, a value
/// replaces it. Deserializes from `Option<T>` (so `null` is `Clear`); a struct field of this type
/// needs `#[serde(default)]` so that an absent field is `Keep`. Only `idle_expiry_days` can be
/// cleared; `Clear` on any other field is refused as "must not be null".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Patch<T> {
    #[default]
    Keep,
    Clear,
    Set(T),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Patch<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Patch<T>, D::Error> {
        Ok(Option::<T>::deserialize(deserializer)?.map_or(Patch::Clear, Patch::Set))
    }
}

/// A policy as asked for at creation, unchecked. Absent fields (and `null`, except for
/// `idle_expiry_days`) take the defaults. Numbers are `i64` so that `-1` earns a range message
/// rather than a type error.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PolicyInput {
    pub description: Option<String>,
    pub read_only: Option<bool>,
    pub scopes: Option<Vec<String>>,
    pub allowed_ips: Option<Vec<String>>,
    pub pin_ip: Option<bool>,
    /// Absent: the default for this kind of token (`validate`'s argument); `null`: none.
    pub idle_expiry_days: Patch<i64>,
    pub max_uses: Option<i64>,
    pub rate_limit_per_minute: Option<i64>,
    /// Must be a JSON object; anything else is refused rather than wrapped.
    pub metadata: Option<Value>,
}

/// A change to a token's policy, unchecked; see `Patch`. `remaining_uses` is not here: it is set
/// once, from `max_uses` at creation, and after that only the conditional decrement of each use
/// writes it (a PATCH writing it too would race with uses in flight). Fields it does not know
/// (`name`, `max_uses`) are ignored, so a request type can `#[serde(flatten)]` it beside its own.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PolicyPatch {
    pub description: Patch<String>,
    pub read_only: Patch<bool>,
    pub scopes: Patch<Vec<String>>,
    pub allowed_ips: Patch<Vec<String>>,
    pub pin_ip: Patch<bool>,
    pub idle_expiry_days: Patch<i64>,
    /// `null` removes the limit.
    pub rate_limit_per_minute: Patch<i64>,
    pub metadata: Patch<Value>,
}

/// Every rule a policy input broke, in field order (the first broken rule of each field, plus a
/// `pin_ip` conflict), so that the caller can show them all at once. Never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", join(.problems))]
pub struct PolicyError {
    problems: Vec<Invalid>,
}

impl PolicyError {
    pub fn problems(&self) -> &[Invalid] {
        &self.problems
    }

    pub fn into_problems(self) -> Vec<Invalid> {
        self.problems
    }
}

fn join(problems: &[Invalid]) -> String {
    problems
        .iter()
        .map(Invalid::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Collects the first broken rule of each field.
#[derive(Default)]
struct Problems(Vec<Invalid>);

impl Problems {
    fn check<T>(&mut self, result: Result<T, Invalid>) -> Option<T> {
        result.map_err(|invalid| self.0.push(invalid)).ok()
    }

    fn finish(self, policy: Policy) -> Result<Policy, PolicyError> {
        if self.0.is_empty() {
            Ok(policy)
        } else {
            Err(PolicyError { problems: self.0 })
        }
    }
}

impl PolicyInput {
    /// The policy for a new token. `default_idle_expiry_days` applies when the input does not
    /// mention `idle_expiry_days` (a setting for new device tokens); an explicit `null` opts out.
    pub fn validate(self, default_idle_expiry_days: Option<u32>) -> Result<Policy, PolicyError> {
        let mut problems = Problems::default();
        let mut policy = Policy::default();
        if let Some(text) = self
            .description
            .and_then(|text| problems.check(description(text)))
        {
            policy.description = text;
        }
        policy.read_only = self.read_only.unwrap_or(false);
        if let Some(list) = self.scopes.and_then(|list| problems.check(scopes(list))) {
            policy.scopes = list;
        }
        let asked_for_networks = self
            .allowed_ips
            .as_ref()
            .is_some_and(|list| !list.is_empty());
        if let Some(list) = self
            .allowed_ips
            .and_then(|list| problems.check(allowed_ips(list)))
        {
            policy.allowed_ips = list;
        }
        policy.pin_ip = self.pin_ip.unwrap_or(false);
        if policy.pin_ip && asked_for_networks {
            problems.check::<()>(Err(pin_conflict()));
        }
        policy.idle_expiry_days = match self.idle_expiry_days {
            Patch::Keep => default_idle_expiry_days,
            Patch::Clear => None,
            Patch::Set(days) => problems.check(idle_expiry_days(days)),
        };
        if let Some(uses) = self.max_uses {
            policy.remaining_uses = problems.check(max_uses(uses));
        }
        if let Some(limit) = self.rate_limit_per_minute {
            policy.rate_limit_per_minute = problems.check(rate_limit(limit));
        }
        if let Some(map) = self
            .metadata
            .and_then(|value| problems.check(metadata(value)))
        {
            policy.metadata = map;
        }
        problems.finish(policy)
    }
}

impl Policy {
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Our API: only `read_only_allows` methods; the proxy is told (and checks the forwarded one).
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }

    /// Normalized networks; empty means anywhere (unless `allowed_ips_unreadable`).
    pub fn allowed_ips(&self) -> &[IpNet] {
        &self.allowed_ips
    }

    /// The stored networks were corrupt: the token is refused everywhere until its owner sets
    /// `allowed_ips` again. Worth showing, since `allowed_ips` alone then reads as "anywhere".
    pub fn allowed_ips_unreadable(&self) -> bool {
        self.allowed_ips_unreadable
    }

    pub fn pin_ip(&self) -> bool {
        self.pin_ip
    }

    pub fn idle_expiry_days(&self) -> Option<u32> {
        self.idle_expiry_days
    }

    /// `None` for unlimited.
    pub fn remaining_uses(&self) -> Option<i64> {
        self.remaining_uses
    }

    /// Requests per minute; `None`: no limit.
    pub fn rate_limit_per_minute(&self) -> Option<u32> {
        self.rate_limit_per_minute
    }

    pub fn metadata(&self) -> &Map<String, Value> {
        &self.metadata
    }

    /// Whether a request from `address` may use the token. No list: anywhere, including a token
    /// that waits for its pin (the caller pins it on this first use, see `pinned_to`). A list
    /// and no known address: no. IPv4-mapped IPv6 clients (`::ffff:10.1.2.3`, from dual-stack
    /// sockets) are compared as the IPv4 address they are, which is how lists are stored.
    pub fn allows(&self, address: Option<IpAddr>) -> bool {
        if self.allowed_ips_unreadable {
            return false;
        }
        if self.allowed_ips.is_empty() {
            return true;
        }
        let Some(address) = address else {
            return false;
        };
        let address = address.to_canonical();
        self.allowed_ips.iter().any(|net| net.contains(&address))
    }

    /// A `pin_ip` token not yet used from anywhere: its first address becomes its only one.
    pub fn awaits_pin(&self) -> bool {
        self.pin_ip && self.allowed_ips.is_empty() && !self.allowed_ips_unreadable
    }

    /// The same policy with `left` uses remaining (after a use was taken in the database).
    pub fn with_remaining_uses(&self, left: i64) -> Policy {
        Policy {
            remaining_uses: Some(left),
            ..self.clone()
        }
    }

    /// The policy once pinned to `address`'s network (`pin_network`), if it awaits its pin.
    /// Storing it must be conditional on the row still awaiting one, so that two first uses
    /// racing on two instances pin one address, not the last.
    pub fn pinned_to(&self, address: IpAddr) -> Option<Policy> {
        self.awaits_pin().then(|| Policy {
            allowed_ips: vec![pin_network(address)],
            ..self.clone()
        })
    }

    /// Whether the token carries every scope in `required` (case-sensitive; none required: yes).
    pub fn has_scopes(&self, required: &[&str]) -> bool {
        required
            .iter()
            .all(|scope| self.scopes.iter().any(|held| held == scope))
    }

    /// Unused for `idle_expiry_days` whole days or more since `last_used_or_created`. A clock
    /// that went backwards (`now` earlier) never expires a token.
    pub fn is_idle_expired(&self, last_used_or_created: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        self.idle_expiry_days
            .is_some_and(|days| now - last_used_or_created >= TimeDelta::days(i64::from(days)))
    }

    /// This policy with `patch` applied, or every field the patch gets wrong.
    ///
    /// `pin_ip` and `allowed_ips` interact: a pinned token holds its pinned network in
    /// `allowed_ips`, so a patch that leaves both alone (or re-sends `pin_ip: true`) keeps the
    /// pin; `pin_ip: false` without `allowed_ips` lifts the pin and its network with it (the
    /// owner never typed that network); `pin_ip: true` with `allowed_ips: []` re-arms the pin for
    /// the next first use. A patch that would leave `pin_ip` on beside networks the owner chose is
    /// refused, as at creation.
    pub fn apply(&self, patch: PolicyPatch) -> Result<Policy, PolicyError> {
        let mut problems = Problems::default();
        let mut policy = self.clone();
        if let Some(text) = given(&mut problems, patch.description, "description", description) {
            policy.description = text;
        }
        if let Some(read_only) = given(&mut problems, patch.read_only, "read_only", Ok) {
            policy.read_only = read_only;
        }
        if let Some(list) = given(&mut problems, patch.scopes, "scopes", scopes) {
            policy.scopes = list;
        }
        // Read before `allowed_ips`, whose rules depend on it; its own complaint is filed after.
        let pin = required(patch.pin_ip, "pin_ip");
        if let Ok(Some(pin)) = pin {
            policy.pin_ip = pin;
        }
        match patch.allowed_ips {
            Patch::Set(list) => {
                let chosen = !list.is_empty();
                if let Some(list) = problems.check(allowed_ips(list)) {
                    policy.allowed_ips = list;
                    policy.allowed_ips_unreadable = false;
                }
                if policy.pin_ip && chosen {
                    problems.check::<()>(Err(pin_conflict()));
                }
            }
            Patch::Keep if self.pin_ip && !policy.pin_ip => {
                policy.allowed_ips = Vec::new();
                policy.allowed_ips_unreadable = false;
            }
            Patch::Keep => {
                // Only the networks of a token that was not pinning can clash with a new pin.
                let had_networks = !self.allowed_ips.is_empty() || self.allowed_ips_unreadable;
                if policy.pin_ip && !self.pin_ip && had_networks {
                    problems.check::<()>(Err(pin_conflict()));
                }
            }
            Patch::Clear => {
                problems.check::<()>(Err(not_null("allowed_ips")));
            }
        }
        problems.check(pin);
        match patch.idle_expiry_days {
            Patch::Keep => {}
            Patch::Clear => policy.idle_expiry_days = None,
            Patch::Set(days) => {
                if let Some(days) = problems.check(idle_expiry_days(days)) {
                    policy.idle_expiry_days = Some(days);
                }
            }
        }
        match patch.rate_limit_per_minute {
            Patch::Keep => {}
            Patch::Clear => policy.rate_limit_per_minute = None,
            Patch::Set(limit) => {
                if let Some(limit) = problems.check(rate_limit(limit)) {
                    policy.rate_limit_per_minute = Some(limit);
                }
            }
        }
        if let Some(map) = given(&mut problems, patch.metadata, "metadata", metadata) {
            policy.metadata = map;
        }
        problems.finish(policy)
    }

    /// The policy as its columns hold it.
    pub fn encode(&self) -> StoredPolicy {
        let mut allowed_ips = join_words(self.allowed_ips.iter());
        if self.allowed_ips_unreadable {
            if !allowed_ips.is_empty() {
                allowed_ips.push(' ');
            }
            allowed_ips.push_str(UNREADABLE_MARKER);
        }
        StoredPolicy {
            description: self.description.clone(),
            read_only: self.read_only,
            scopes: join_words(self.scopes.iter()),
            allowed_ips,
            pin_ip: self.pin_ip,
            idle_expiry_days: self
                .idle_expiry_days
                .map(|days| i32::try_from(days).unwrap_or(i32::MAX)),
            remaining_uses: self.remaining_uses,
            rate_limit_per_minute: self
                .rate_limit_per_minute
                .map(|limit| i32::try_from(limit).unwrap_or(i32::MAX)),
            metadata: compact(&self.metadata),
        }
    }

    /// The policy of the row of token `token` (named in warnings). Never fails: whatever `encode`
    /// wrote reads back as it was. A value it could not have written (a hand edit, a bad
    /// migration, another program) is read as the most restrictive thing it could have meant and
    /// logged, because refusing to decode would lock the owner out of their token page, and
    /// guessing generously would widen a key's reach behind its owner's back.
    pub fn decode(stored: StoredPolicy, token: Uuid) -> Policy {
        let mut policy = Policy {
            description: stored.description,
            read_only: stored.read_only,
            pin_ip: stored.pin_ip,
            ..Policy::default()
        };

        // A scope lost only takes reach away (the proxy asks for scopes, it never forbids by one).
        for scope in stored.scopes.split_ascii_whitespace() {
            if !is_scope(scope) {
                log::warn!("token {token}: ignoring an unreadable stored scope");
            } else if !policy.scopes.iter().any(|held| held == scope) {
                policy.scopes.push(scope.to_owned());
            }
        }

        // Dropping an unreadable network could leave an empty list, which means anywhere; so one
        // unreadable entry makes the token refuse every address until its owner sets them again.
        for entry in stored.allowed_ips.split_ascii_whitespace() {
            match parse_network(entry) {
                Ok(net) if !policy.allowed_ips.contains(&net) => policy.allowed_ips.push(net),
                Ok(_) => {}
                Err(_) => policy.allowed_ips_unreadable = true,
            }
        }
        if policy.allowed_ips_unreadable {
            log::warn!("token {token}: stored allowed_ips unreadable; refusing every address");
        }

        // Shorter is stricter; zero or less cannot be honoured as written, a day is the least.
        policy.idle_expiry_days = stored.idle_expiry_days.map(|days| {
            u32::try_from(days)
                .ok()
                .filter(|&days| days > 0)
                .unwrap_or_else(|| {
                    log::warn!("token {token}: stored idle_expiry_days {days} read as 1");
                    1
                })
        });

        // The conditional decrement never goes below zero; anything below is spent.
        policy.remaining_uses = stored.remaining_uses.map(|uses| {
            if uses < 0 {
                log::warn!("token {token}: stored remaining_uses {uses} read as 0");
            }
            uses.max(0)
        });

        // A limit out of range is read as the strictest one it could have meant.
        policy.rate_limit_per_minute = stored.rate_limit_per_minute.map(|limit| {
            u32::try_from(limit)
                .ok()
                .filter(|limit| (1..=RATE_LIMIT_MAX_PER_MINUTE).contains(limit))
                .unwrap_or_else(|| {
                    log::warn!("token {token}: stored rate_limit_per_minute {limit} read as 1");
                    1
                })
        });

        // Metadata grants nothing, so there is nothing stricter to fall back to than none. An
        // empty text is a column written without our default, not damage.
        if !stored.metadata.is_empty() {
            match serde_json::from_str::<Map<String, Value>>(&stored.metadata) {
                Ok(map) => policy.metadata = map,
                Err(_) => log::warn!("token {token}: stored metadata unreadable; read as {{}}"),
            }
        }
        policy
    }
}

/// The policy columns of a `tokens` row, as plain portable types: `scopes` and `allowed_ips` are
/// space-separated words (scopes and normalized networks contain no blanks), `metadata` compact
/// JSON text. The column defaults ('' , '' and '{}', false, NULL) are `Policy::default()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPolicy {
    pub description: String,
    pub read_only: bool,
    pub scopes: String,
    pub allowed_ips: String,
    pub pin_ip: bool,
    pub idle_expiry_days: Option<i32>,
    pub remaining_uses: Option<i64>,
    pub rate_limit_per_minute: Option<i32>,
    pub metadata: String,
}

impl StoredPolicy {
    /// The policy columns of a row.
    pub fn of(token: &tokens::Model) -> StoredPolicy {
        StoredPolicy {
            description: token.description.clone(),
            read_only: token.read_only,
            scopes: token.scopes.clone(),
            allowed_ips: token.allowed_ips.clone(),
            pin_ip: token.pin_ip,
            idle_expiry_days: token.idle_expiry_days,
            remaining_uses: token.remaining_uses,
            rate_limit_per_minute: token.rate_limit_per_minute,
            metadata: token.metadata.clone(),
        }
    }
}

impl Policy {
    /// Today's behaviour, with the deployment's idle expiry for new device tokens (already
    /// checked when the setting was read).
    pub fn idle_by_default(days: Option<u32>) -> Policy {
        Policy {
            idle_expiry_days: days.map(|days| days.clamp(1, IDLE_EXPIRY_MAX_DAYS)),
            ..Policy::default()
        }
    }

    /// The policy of a row.
    pub fn of(token: &tokens::Model) -> Policy {
        Policy::decode(StoredPolicy::of(token), token.id)
    }
}

/// The one network a pinned token allows: the address itself for IPv4, its /64 for IPv6. An
/// IPv4-mapped address pins its IPv4 form, as `allows` compares it.
pub fn pin_network(address: IpAddr) -> IpNet {
    match address.to_canonical() {
        IpAddr::V4(v4) => IpNet::V4(Ipv4Net::from(v4)),
        IpAddr::V6(v6) => IpNet::V6(Ipv6Net::new_assert(v6, PIN_PREFIX_V6).trunc()),
    }
}

/// The methods a read-only token may use: those that only read (`GET`, `HEAD`, `OPTIONS`, in any
/// case, as forwarded headers are not always upper-case).
pub fn read_only_allows(method: &str) -> bool {
    ["GET", "HEAD", "OPTIONS"]
        .iter()
        .any(|allowed| method.eq_ignore_ascii_case(allowed))
}

fn required<T>(patch: Patch<T>, field: &'static str) -> Result<Option<T>, Invalid> {
    match patch {
        Patch::Keep => Ok(None),
        Patch::Clear => Err(not_null(field)),
        Patch::Set(value) => Ok(Some(value)),
    }
}

/// The checked new value of a field that cannot be cleared, if the patch sets one.
fn given<T, U>(
    problems: &mut Problems,
    patch: Patch<T>,
    field: &'static str,
    check: impl FnOnce(T) -> Result<U, Invalid>,
) -> Option<U> {
    let value = problems.check(required(patch, field)).flatten()?;
    problems.check(check(value))
}

fn not_null(field: &'static str) -> Invalid {
    Invalid::new(field, "must not be null")
}

fn pin_conflict() -> Invalid {
    Invalid::new(
        "pin_ip",
        "cannot be combined with allowed_ips: a pinned token allows only its first address",
    )
}

fn description(text: String) -> Result<String, Invalid> {
    if text.chars().count() > DESCRIPTION_MAX_CHARS {
        return Err(Invalid::new(
            "description",
            format!("at most {DESCRIPTION_MAX_CHARS} characters"),
        ));
    }
    // Line breaks and tabs belong in free text; NUL cannot be stored in PostgreSQL text, and the
    // other controls only arrive by accident or malice.
    if text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(Invalid::new(
            "description",
            "must not contain control characters other than line breaks and tabs",
        ));
    }
    Ok(text)
}

/// The words the storage form relies on: no blanks, so a space can separate them.
pub fn is_scope(scope: &str) -> bool {
    (1..=SCOPE_MAX_CHARS).contains(&scope.len())
        && scope
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'.' | b'_' | b'-'))
}

/// Distinct scopes in first-seen order; the count is of distinct ones.
fn scopes(list: Vec<String>) -> Result<Vec<String>, Invalid> {
    let mut kept: Vec<String> = Vec::new();
    for scope in list {
        if !is_scope(&scope) {
            return Err(Invalid::new(
                "scopes",
                format!(
                    "{} is not 1 to {SCOPE_MAX_CHARS} of A-Z a-z 0-9 : . _ -",
                    quote(&scope)
                ),
            ));
        }
        if !kept.contains(&scope) {
            kept.push(scope);
        }
    }
    if kept.len() > MAX_SCOPES {
        return Err(Invalid::new("scopes", format!("at most {MAX_SCOPES}")));
    }
    Ok(kept)
}

/// Distinct normalized networks in first-seen order; the count is of distinct ones.
fn allowed_ips(list: Vec<String>) -> Result<Vec<IpNet>, Invalid> {
    let mut kept: Vec<IpNet> = Vec::new();
    for entry in list {
        let net = parse_network(entry.trim()).map_err(|message| {
            Invalid::new("allowed_ips", format!("{} {message}", quote(entry.trim())))
        })?;
        if !kept.contains(&net) {
            kept.push(net);
        }
    }
    if kept.len() > MAX_ALLOWED_IPS {
        return Err(Invalid::new(
            "allowed_ips",
            format!("at most {MAX_ALLOWED_IPS}"),
        ));
    }
    Ok(kept)
}

/// A CIDR or a bare address (one host), normalized: host bits must be clear (`10.0.0.1/8` is a
/// typo for something, and guessing which widens or narrows the list silently), and an
/// IPv4-mapped IPv6 network at /96 or longer is written as the IPv4 network it is, as `allows`
/// compares clients. Errors are the end of a sentence that starts with the entry.
fn parse_network(text: &str) -> Result<IpNet, String> {
    let net = match text.parse::<IpNet>() {
        Ok(net) => net,
        Err(_) => text
            .parse::<IpAddr>()
            .map(IpNet::from)
            .map_err(|_| "is neither an IP address nor a CIDR range".to_owned())?,
    };
    if net.trunc() != net {
        return Err(format!(
            "has host bits set (the network is {})",
            net.trunc()
        ));
    }
    if let IpNet::V6(v6) = net
        && let Some(v4) = v6.addr().to_ipv4_mapped()
        && v6.prefix_len() >= 96
    {
        return Ok(IpNet::V4(Ipv4Net::new_assert(v4, v6.prefix_len() - 96)));
    }
    Ok(net)
}

/// A client's own text, quoted for a message, cut short if long.
fn quote(text: &str) -> String {
    const SHOWN: usize = 64;
    if text.chars().count() <= SHOWN {
        format!("{text:?}")
    } else {
        let start: String = text.chars().take(SHOWN).collect();
        format!("{start:?}…")
    }
}

fn idle_expiry_days(days: i64) -> Result<u32, Invalid> {
    u32::try_from(days)
        .ok()
        .filter(|days| (1..=IDLE_EXPIRY_MAX_DAYS).contains(days))
        .ok_or_else(|| {
            Invalid::new(
                "idle_expiry_days",
                format!("must be 1 to {IDLE_EXPIRY_MAX_DAYS}, or null"),
            )
        })
}

fn max_uses(uses: i64) -> Result<i64, Invalid> {
    if (1..=MAX_USES).contains(&uses) {
        Ok(uses)
    } else {
        Err(Invalid::new("max_uses", format!("must be 1 to {MAX_USES}")))
    }
}

fn rate_limit(limit: i64) -> Result<u32, Invalid> {
    u32::try_from(limit)
        .ok()
        .filter(|limit| (1..=RATE_LIMIT_MAX_PER_MINUTE).contains(limit))
        .ok_or_else(|| {
            Invalid::new(
                "rate_limit_per_minute",
                format!("must be 1 to {RATE_LIMIT_MAX_PER_MINUTE}, or null"),
            )
        })
}

fn metadata(value: Value) -> Result<Map<String, Value>, Invalid> {
    let Value::Object(map) = value else {
        return Err(Invalid::new("metadata", "must be a JSON object"));
    };
    if compact(&map).len() > METADATA_MAX_BYTES {
        return Err(Invalid::new(
            "metadata",
            format!("at most {METADATA_MAX_BYTES} bytes as compact JSON"),
        ));
    }
    Ok(map)
}

/// The metadata's stored and measured form.
fn compact(map: &Map<String, Value>) -> String {
    // Serializing JSON values to a string cannot fail (string keys, no I/O).
    serde_json::to_string(map).unwrap_or_else(|_| "{}".to_owned())
}

fn join_words<T: std::fmt::Display>(words: impl Iterator<Item = T>) -> String {
    words
        .map(|word| word.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn input(value: Value) -> PolicyInput {
        serde_json::from_value(value).expect("a well-typed input")
    }

    fn create(value: Value) -> Result<Policy, PolicyError> {
        input(value).validate(None)
    }

    fn patch(value: Value) -> PolicyPatch {
        serde_json::from_value(value).expect("a well-typed patch")
    }

    fn refused(value: Value) -> String {
        create(value).expect_err("must be refused").to_string()
    }

    fn nets(texts: &[&str]) -> Vec<IpNet> {
        texts.iter().map(|text| text.parse().unwrap()).collect()
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn token() -> Uuid {
        Uuid::nil()
    }

    fn stored() -> StoredPolicy {
        Policy::default().encode()
    }

    #[test]
    fn the_default_policy_is_what_every_token_had_before() {
        let policy = Policy::default();
        assert_eq!(create(json!({})).unwrap(), policy);
        assert!(policy.allows(None) && policy.allows(ip("203.0.113.9")));
        assert!(policy.has_scopes(&[]) && !policy.has_scopes(&["orders"]));
        assert!(!policy.read_only() && !policy.pin_ip() && !policy.awaits_pin());
        assert!(!policy.is_idle_expired(at("2000-01-01T00:00:00Z"), at("2099-01-01T00:00:00Z")));
        assert_eq!(policy.remaining_uses(), None);
        assert!(policy.metadata().is_empty());
    }

    #[test]
    fn nulls_at_creation_mean_the_defaults() {
        let policy = create(json!({
            "description": null, "read_only": null, "scopes": null, "allowed_ips": null,
            "pin_ip": null, "idle_expiry_days": null, "max_uses": null, "metadata": null,
        }));
        assert_eq!(policy.unwrap(), Policy::default());
    }

    #[test]
    fn every_field_is_taken_as_given_when_valid() {
        let policy = create(json!({
            "description": "Thermostat in the hall\nsecond floor",
            "read_only": true,
            "scopes": ["orders:read", "v1.billing_x-y"],
            "allowed_ips": ["10.0.0.0/8", "2001:db8::/32"],
            "idle_expiry_days": 90,
            "max_uses": 3,
            "metadata": {"room": "hall", "floor": 2},
        }))
        .unwrap();
        assert_eq!(policy.description(), "Thermostat in the hall\nsecond floor");
        assert!(policy.read_only());
        assert_eq!(policy.scopes(), ["orders:read", "v1.billing_x-y"]);
        assert_eq!(policy.allowed_ips(), nets(&["10.0.0.0/8", "2001:db8::/32"]));
        assert_eq!(policy.idle_expiry_days(), Some(90));
        assert_eq!(policy.remaining_uses(), Some(3));
        assert_eq!(policy.metadata()["floor"], json!(2));
    }

    #[test]
    fn descriptions_hold_at_most_500_characters_not_bytes() {
        let longest = "é".repeat(DESCRIPTION_MAX_CHARS);
        assert_eq!(
            create(json!({ "description": longest }))
                .unwrap()
                .description(),
            longest
        );
        assert_eq!(
            refused(json!({ "description": "x".repeat(DESCRIPTION_MAX_CHARS + 1) })),
            "description: at most 500 characters"
        );
    }

    #[test]
    fn descriptions_keep_line_breaks_and_tabs_but_refuse_other_controls() {
        assert!(create(json!({ "description": "a\r\nb\tc" })).is_ok());
        for text in ["nul\0", "bell\u{7}", "esc\u{1b}[31m", "c1\u{85}"] {
            assert_eq!(
                refused(json!({ "description": text })),
                "description: must not contain control characters other than line breaks and tabs",
                "{text:?}"
            );
        }
    }

    #[test]
    fn scopes_are_1_to_64_of_letters_digits_and_colon_dot_underscore_dash() {
        let longest = "a".repeat(SCOPE_MAX_CHARS);
        assert!(create(json!({ "scopes": ["A-Za-z0-9:._", longest] })).is_ok());
        for bad in [
            "",
            "read write",
            "tab\t",
            "é",
            "a/b",
            "a,b",
            &"a".repeat(65),
        ] {
            let message = refused(json!({ "scopes": [bad] }));
            assert!(message.starts_with("scopes: "), "{bad:?}: {message}");
            assert!(
                message.ends_with("is not 1 to 64 of A-Z a-z 0-9 : . _ -"),
                "{message}"
            );
        }
    }

    #[test]
    fn long_bad_entries_are_quoted_cut_short() {
        let message = refused(json!({ "scopes": ["!".repeat(1000)] }));
        assert!(message.len() < 200, "{message}");
        assert!(message.contains('…'));
    }

    #[test]
    fn duplicate_scopes_are_dropped_keeping_the_first_order() {
        let policy = create(json!({ "scopes": ["b", "a", "b", "c", "a"] })).unwrap();
        assert_eq!(policy.scopes(), ["b", "a", "c"]);
    }

    #[test]
    fn a_policy_holds_at_most_32_distinct_scopes() {
        let distinct: Vec<String> = (0..MAX_SCOPES).map(|n| format!("s{n}")).collect();
        let mut repeated = distinct.clone();
        repeated.extend(distinct.iter().take(10).cloned());
        assert_eq!(
            create(json!({ "scopes": repeated })).unwrap().scopes(),
            distinct
        );
        let mut too_many = distinct;
        too_many.push("one-more".to_owned());
        assert_eq!(refused(json!({ "scopes": too_many })), "scopes: at most 32");
    }

    #[test]
    fn allowed_ips_are_stored_normalized() {
        let cases = [
            ("127.0.0.1", "127.0.0.1/32"),
            ("2001:db8::1", "2001:db8::1/128"),
            ("10.0.0.0/8", "10.0.0.0/8"),
            ("2001:DB8:0:0::/32", "2001:db8::/32"),
            (" 192.168.1.0/24 ", "192.168.1.0/24"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            ("::/0", "::/0"),
            // IPv4-mapped networks are the IPv4 networks they contain, as clients are compared.
            ("::ffff:10.1.2.3", "10.1.2.3/32"),
            ("::ffff:10.0.0.0/104", "10.0.0.0/8"),
        ];
        for (given, normalized) in cases {
            let policy = create(json!({ "allowed_ips": [given] })).unwrap();
            assert_eq!(policy.allowed_ips(), nets(&[normalized]), "{given:?}");
            assert_eq!(policy.encode().allowed_ips, normalized);
        }
    }

    #[test]
    fn a_network_with_host_bits_set_is_refused_with_the_network_it_names() {
        assert_eq!(
            refused(json!({ "allowed_ips": ["10.0.0.1/8"] })),
            r#"allowed_ips: "10.0.0.1/8" has host bits set (the network is 10.0.0.0/8)"#
        );
        assert!(refused(json!({ "allowed_ips": ["2001:db8::1/64"] })).contains("2001:db8::/64"));
    }

    #[test]
    fn entries_that_are_no_address_or_range_are_refused() {
        for bad in [
            "",
            "localhost",
            "10.0.0.0/33",
            "10.0.0",
            "010.0.0.1",
            "fe80::1%eth0",
            "10.0.0.0/8 10.1.0.0/16",
        ] {
            let message = refused(json!({ "allowed_ips": [bad] }));
            assert!(
                message.starts_with("allowed_ips: ")
                    && message.ends_with("is neither an IP address nor a CIDR range"),
                "{bad:?}: {message}"
            );
        }
    }

    #[test]
    fn duplicate_networks_are_dropped_after_normalizing() {
        let policy = create(json!({
            "allowed_ips": ["127.0.0.1", "10.0.0.0/8", "127.0.0.1/32", "::ffff:127.0.0.1"]
        }))
        .unwrap();
        assert_eq!(policy.allowed_ips(), nets(&["127.0.0.1/32", "10.0.0.0/8"]));
    }

    #[test]
    fn a_policy_holds_at_most_32_distinct_networks() {
        let distinct: Vec<String> = (0..MAX_ALLOWED_IPS)
            .map(|n| format!("10.0.{n}.0/24"))
            .collect();
        let mut repeated = distinct.clone();
        repeated.push(distinct[0].clone());
        assert_eq!(
            create(json!({ "allowed_ips": repeated }))
                .unwrap()
                .allowed_ips()
                .len(),
            32
        );
        let mut too_many = distinct;
        too_many.push("192.0.2.1".to_owned());
        assert_eq!(
            refused(json!({ "allowed_ips": too_many })),
            "allowed_ips: at most 32"
        );
    }

    #[test]
    fn pinning_cannot_be_combined_with_chosen_networks() {
        let message = refused(json!({ "pin_ip": true, "allowed_ips": ["10.0.0.0/8"] }));
        assert!(
            message.starts_with("pin_ip: cannot be combined with allowed_ips"),
            "{message}"
        );
        let policy = create(json!({ "pin_ip": true, "allowed_ips": [] })).unwrap();
        assert!(policy.pin_ip() && policy.awaits_pin());
    }

    #[test]
    fn idle_expiry_is_1_to_3650_days_or_null() {
        for days in [1, 3650] {
            let policy = create(json!({ "idle_expiry_days": days })).unwrap();
            assert_eq!(policy.idle_expiry_days(), Some(days));
        }
        for days in [0, -1, 3651, i64::MAX] {
            assert_eq!(
                refused(json!({ "idle_expiry_days": days })),
                "idle_expiry_days: must be 1 to 3650, or null"
            );
        }
    }

    #[test]
    fn the_idle_expiry_default_applies_only_when_the_field_is_absent() {
        let default = Some(90);
        assert_eq!(
            input(json!({}))
                .validate(default)
                .unwrap()
                .idle_expiry_days(),
            default
        );
        let opted_out = input(json!({ "idle_expiry_days": null })).validate(default);
        assert_eq!(opted_out.unwrap().idle_expiry_days(), None);
        let chosen = input(json!({ "idle_expiry_days": 7 })).validate(default);
        assert_eq!(chosen.unwrap().idle_expiry_days(), Some(7));
    }

    #[test]
    fn max_uses_is_1_to_a_billion_and_becomes_the_remaining_uses() {
        for uses in [1, MAX_USES] {
            assert_eq!(
                create(json!({ "max_uses": uses }))
                    .unwrap()
                    .remaining_uses(),
                Some(uses)
            );
        }
        for uses in [0, -1, MAX_USES + 1] {
            assert_eq!(
                refused(json!({ "max_uses": uses })),
                "max_uses: must be 1 to 1000000000"
            );
        }
    }

    #[test]
    fn metadata_must_be_an_object() {
        for value in [json!([1]), json!("text"), json!(1), json!(true)] {
            assert_eq!(
                refused(json!({ "metadata": value })),
                "metadata: must be a JSON object"
            );
        }
    }

    #[test]
    fn metadata_holds_at_most_4096_bytes_of_compact_json() {
        // {"k":"…"} is 8 bytes around the value.
        let fits = json!({ "k": "x".repeat(METADATA_MAX_BYTES - 8) });
        assert_eq!(fits.to_string().len(), METADATA_MAX_BYTES);
        assert!(create(json!({ "metadata": fits })).is_ok());
        let over = json!({ "k": "x".repeat(METADATA_MAX_BYTES - 7) });
        assert_eq!(
            refused(json!({ "metadata": over })),
            "metadata: at most 4096 bytes as compact JSON"
        );
    }

    #[test]
    fn every_bad_field_is_reported_in_field_order() {
        let error = create(json!({
            "metadata": [],
            "description": "x".repeat(501),
            "allowed_ips": ["nowhere"],
            "max_uses": 0,
        }))
        .unwrap_err();
        let fields: Vec<_> = error
            .problems()
            .iter()
            .map(|problem| problem.field)
            .collect();
        assert_eq!(
            fields,
            ["description", "allowed_ips", "max_uses", "metadata"]
        );
        assert!(
            error
                .to_string()
                .starts_with("description: at most 500 characters; allowed_ips: ")
        );
    }

    #[test]
    fn values_of_the_wrong_json_type_fail_to_deserialize() {
        for body in [
            json!({ "read_only": "maybe" }),
            json!({ "max_uses": 2.5 }),
            json!({ "scopes": { "a": 1 } }),
            json!({ "allowed_ips": "10.0.0.0/8" }),
            json!({ "idle_expiry_days": "90" }),
        ] {
            assert!(
                serde_json::from_value::<PolicyInput>(body.clone()).is_err(),
                "{body}"
            );
        }
        assert!(serde_json::from_value::<PolicyPatch>(json!({ "pin_ip": "yes" })).is_err());
    }

    #[test]
    fn inputs_and_patches_flatten_beside_a_request_s_own_fields() {
        #[derive(Deserialize)]
        struct Request {
            name: Option<String>,
            #[serde(flatten)]
            policy: PolicyPatch,
        }
        let request: Request = serde_json::from_value(json!({
            "name": "hall", "idle_expiry_days": null, "scopes": ["a"], "max_uses": 3
        }))
        .unwrap();
        assert_eq!(request.name.as_deref(), Some("hall"));
        assert_eq!(request.policy.idle_expiry_days, Patch::Clear);
        assert_eq!(request.policy.scopes, Patch::Set(vec!["a".to_owned()]));
        assert_eq!(request.policy.read_only, Patch::Keep);

        #[derive(Deserialize)]
        struct Create {
            #[serde(flatten)]
            policy: PolicyInput,
        }
        let create: Create =
            serde_json::from_value(json!({ "max_uses": 3, "read_only": true })).unwrap();
        let policy = create.policy.validate(None).unwrap();
        assert_eq!(
            (policy.remaining_uses(), policy.read_only()),
            (Some(3), true)
        );
        let wrong = serde_json::from_value::<Create>(json!({ "max_uses": 2.5 }));
        assert!(
            wrong.is_err(),
            "a wrong type is still refused when flattened"
        );
    }

    #[test]
    fn a_patch_field_absent_is_keep_null_is_clear_and_a_value_is_set() {
        let patch = patch(json!({ "idle_expiry_days": null, "read_only": true }));
        assert_eq!(patch.idle_expiry_days, Patch::Clear);
        assert_eq!(patch.read_only, Patch::Set(true));
        assert_eq!(patch.description, Patch::Keep);
        assert_eq!(patch.metadata, Patch::Keep);
    }

    fn full() -> Policy {
        create(json!({
            "description": "kitchen",
            "read_only": true,
            "scopes": ["a", "b"],
            "allowed_ips": ["10.0.0.0/8"],
            "idle_expiry_days": 30,
            "max_uses": 5,
            "metadata": {"k": "v"},
        }))
        .unwrap()
    }

    #[test]
    fn an_empty_patch_changes_nothing() {
        assert_eq!(full().apply(patch(json!({}))).unwrap(), full());
    }

    #[test]
    fn a_patch_replaces_the_fields_it_names_and_keeps_the_others() {
        let patched = full()
            .apply(patch(json!({
                "description": "",
                "scopes": ["c"],
                "allowed_ips": [],
                "idle_expiry_days": 7,
                "metadata": {},
            })))
            .unwrap();
        assert_eq!(patched.description(), "");
        assert_eq!(patched.scopes(), ["c"]);
        assert!(patched.allowed_ips().is_empty() && patched.allows(None));
        assert_eq!(patched.idle_expiry_days(), Some(7));
        assert!(patched.metadata().is_empty());
        assert!(patched.read_only(), "read_only was not in the patch");
        assert_eq!(patched.remaining_uses(), Some(5), "uses are not patchable");
    }

    #[test]
    fn null_clears_idle_expiry_and_is_refused_elsewhere() {
        let cleared = full()
            .apply(patch(json!({ "idle_expiry_days": null })))
            .unwrap();
        assert_eq!(cleared.idle_expiry_days(), None);
        for field in [
            "description",
            "read_only",
            "scopes",
            "allowed_ips",
            "pin_ip",
            "metadata",
        ] {
            let error = full().apply(patch(json!({ field: null }))).unwrap_err();
            assert_eq!(error.to_string(), format!("{field}: must not be null"));
        }
    }

    #[test]
    fn a_patch_is_checked_by_the_creation_rules() {
        let error = full()
            .apply(patch(json!({
                "description": "x".repeat(501),
                "scopes": ["a b"],
                "allowed_ips": ["10.0.0.1/8"],
                "idle_expiry_days": 0,
                "metadata": 1,
            })))
            .unwrap_err();
        let fields: Vec<_> = error
            .problems()
            .iter()
            .map(|problem| problem.field)
            .collect();
        assert_eq!(
            fields,
            [
                "description",
                "scopes",
                "allowed_ips",
                "idle_expiry_days",
                "metadata"
            ]
        );
    }

    #[test]
    fn a_patch_cannot_turn_on_pinning_beside_chosen_networks() {
        let bound = create(json!({ "allowed_ips": ["10.0.0.0/8"] })).unwrap();
        let error = bound.apply(patch(json!({ "pin_ip": true }))).unwrap_err();
        assert!(error.to_string().starts_with("pin_ip: cannot be combined"));
        let rearmed = bound
            .apply(patch(json!({ "pin_ip": true, "allowed_ips": [] })))
            .unwrap();
        assert!(rearmed.awaits_pin());

        let pinning = create(json!({ "pin_ip": true })).unwrap();
        let error = pinning
            .apply(patch(json!({ "allowed_ips": ["10.0.0.0/8"] })))
            .unwrap_err();
        assert!(error.to_string().starts_with("pin_ip: cannot be combined"));
        let bound = pinning
            .apply(patch(
                json!({ "pin_ip": false, "allowed_ips": ["10.0.0.0/8"] }),
            ))
            .unwrap();
        assert_eq!(bound.allowed_ips(), nets(&["10.0.0.0/8"]));
    }

    #[test]
    fn a_pinned_token_keeps_its_pin_through_unrelated_patches_and_loses_it_when_unpinned() {
        let pinned = create(json!({ "pin_ip": true }))
            .unwrap()
            .pinned_to("192.0.2.7".parse().unwrap())
            .unwrap();
        let renamed = pinned.apply(patch(json!({ "description": "moved", "pin_ip": true })));
        assert_eq!(renamed.unwrap().allowed_ips(), nets(&["192.0.2.7/32"]));

        let unpinned = pinned.apply(patch(json!({ "pin_ip": false }))).unwrap();
        assert!(!unpinned.pin_ip() && unpinned.allowed_ips().is_empty());
        assert!(
            unpinned.allows(ip("198.51.100.1")),
            "the pin goes with the pinning"
        );

        let rearmed = pinned.apply(patch(json!({ "allowed_ips": [] }))).unwrap();
        assert!(
            rearmed.awaits_pin(),
            "an emptied list waits for the next first address"
        );
    }

    #[test]
    fn an_empty_list_allows_anywhere_and_a_list_only_its_networks() {
        let policy = create(json!({ "allowed_ips": ["10.0.0.0/8", "2001:db8::/32"] })).unwrap();
        assert!(policy.allows(ip("10.200.0.1")));
        assert!(policy.allows(ip("2001:db8:ffff::1")));
        assert!(!policy.allows(ip("11.0.0.1")));
        assert!(!policy.allows(ip("2001:db9::1")));
        assert!(
            !policy.allows(None),
            "an unknown address is not inside any list"
        );
    }

    #[test]
    fn ipv4_mapped_clients_are_compared_as_ipv4() {
        let policy = create(json!({ "allowed_ips": ["10.0.0.0/8"] })).unwrap();
        assert!(policy.allows(ip("::ffff:10.1.2.3")));
        assert!(!policy.allows(ip("::ffff:11.1.2.3")));
    }

    #[test]
    fn pins_are_the_address_for_ipv4_and_its_64_for_ipv6() {
        assert_eq!(
            pin_network("192.0.2.7".parse().unwrap()).to_string(),
            "192.0.2.7/32"
        );
        assert_eq!(
            pin_network("2001:db8:1:2:3:4:5:6".parse().unwrap()).to_string(),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            pin_network("::ffff:192.0.2.7".parse().unwrap()).to_string(),
            "192.0.2.7/32"
        );
    }

    #[test]
    fn a_pinning_token_allows_anywhere_until_pinned_then_only_there() {
        let pinning = create(json!({ "pin_ip": true })).unwrap();
        assert!(pinning.allows(ip("198.51.100.1")) && pinning.allows(None));
        let pinned = pinning
            .pinned_to("2001:db8:1:2:3:4:5:6".parse().unwrap())
            .unwrap();
        assert!(!pinned.awaits_pin() && pinned.pin_ip());
        assert!(pinned.allows(ip("2001:db8:1:2:ffff::1")), "same /64");
        assert!(!pinned.allows(ip("2001:db8:1:3::1")));
        assert_eq!(
            pinned.pinned_to("2001:db8:1:3::1".parse().unwrap()),
            None,
            "pinned once"
        );
        assert_eq!(
            Policy::default().pinned_to("192.0.2.7".parse().unwrap()),
            None
        );
    }

    #[test]
    fn has_scopes_needs_every_one_required_exactly() {
        let policy = create(json!({ "scopes": ["orders", "billing:read"] })).unwrap();
        assert!(policy.has_scopes(&[]));
        assert!(policy.has_scopes(&["billing:read", "orders"]));
        assert!(!policy.has_scopes(&["orders", "billing"]));
        assert!(!policy.has_scopes(&["Orders"]));
    }

    #[test]
    fn idle_expiry_counts_whole_days_since_the_last_use() {
        let policy = create(json!({ "idle_expiry_days": 2 })).unwrap();
        let last = at("2026-12-01T12:00:00Z");
        assert!(!policy.is_idle_expired(last, at("2026-12-03T11:59:59Z")));
        assert!(policy.is_idle_expired(last, at("2026-12-03T12:00:00Z")));
        assert!(
            !policy.is_idle_expired(last, at("2026-11-01T00:00:00Z")),
            "clock went back"
        );
    }

    #[test]
    fn read_only_tokens_may_only_read() {
        for method in ["GET", "get", "Head", "OPTIONS"] {
            assert!(read_only_allows(method), "{method}");
        }
        for method in [
            "POST", "PUT", "PATCH", "DELETE", "CONNECT", "TRACE", "", "GETS",
        ] {
            assert!(!read_only_allows(method), "{method}");
        }
    }

    #[test]
    fn the_default_policy_is_the_column_defaults() {
        let stored = stored();
        assert_eq!(
            stored,
            StoredPolicy {
                description: String::new(),
                read_only: false,
                scopes: String::new(),
                allowed_ips: String::new(),
                pin_ip: false,
                idle_expiry_days: None,
                remaining_uses: None,
                rate_limit_per_minute: None,
                metadata: "{}".to_owned(),
            }
        );
        assert_eq!(Policy::decode(stored, token()), Policy::default());
    }

    #[test]
    fn lists_are_stored_as_words_and_metadata_as_compact_json() {
        let stored = full().encode();
        assert_eq!(stored.scopes, "a b");
        assert_eq!(stored.allowed_ips, "10.0.0.0/8");
        assert_eq!(stored.metadata, r#"{"k":"v"}"#);
        assert_eq!(stored.idle_expiry_days, Some(30));
        assert_eq!(stored.remaining_uses, Some(5));
        assert_eq!(Policy::decode(stored, token()), full());
    }

    #[test]
    fn an_unreadable_network_makes_the_token_allow_no_address_even_after_saving_again() {
        let corrupt = StoredPolicy {
            allowed_ips: "10.0.0.0/8 10.0.0.300".to_owned(),
            ..stored()
        };
        let policy = Policy::decode(corrupt, token());
        assert!(policy.allowed_ips_unreadable());
        assert!(!policy.allows(ip("10.0.0.1")) && !policy.allows(None));
        assert!(!policy.awaits_pin());

        let saved = policy
            .apply(patch(json!({ "description": "x" })))
            .unwrap()
            .encode();
        let reread = Policy::decode(saved, token());
        assert!(
            !reread.allows(ip("10.0.0.1")),
            "re-saving must not widen it"
        );

        let fixed = reread.apply(patch(json!({ "allowed_ips": [] }))).unwrap();
        assert!(fixed.allows(ip("10.0.0.1")) && !fixed.allowed_ips_unreadable());
    }

    #[test]
    fn networks_written_by_hand_are_read_if_they_could_have_been_written_by_us() {
        let stored = StoredPolicy {
            allowed_ips: "  10.0.0.0/8\n127.0.0.1  10.0.0.0/8".to_owned(),
            ..stored()
        };
        let policy = Policy::decode(stored, token());
        assert_eq!(policy.allowed_ips(), nets(&["10.0.0.0/8", "127.0.0.1/32"]));
        let with_host_bits = StoredPolicy {
            allowed_ips: "10.0.0.1/8".to_owned(),
            ..self::stored()
        };
        assert!(!Policy::decode(with_host_bits, token()).allows(ip("10.0.0.1")));
    }

    #[test]
    fn unreadable_scopes_are_dropped_which_only_takes_reach_away() {
        let stored = StoredPolicy {
            scopes: "orders bad/scope orders billing".to_owned(),
            ..stored()
        };
        assert_eq!(
            Policy::decode(stored, token()).scopes(),
            ["orders", "billing"]
        );
    }

    #[test]
    fn impossible_numbers_are_read_as_the_strictest_possible_ones() {
        let stored = StoredPolicy {
            idle_expiry_days: Some(0),
            remaining_uses: Some(-3),
            ..stored()
        };
        let policy = Policy::decode(stored, token());
        assert_eq!(policy.idle_expiry_days(), Some(1));
        assert_eq!(policy.remaining_uses(), Some(0));
        let negative = StoredPolicy {
            idle_expiry_days: Some(-5),
            ..self::stored()
        };
        assert_eq!(
            Policy::decode(negative, token()).idle_expiry_days(),
            Some(1)
        );
        let spent = StoredPolicy {
            remaining_uses: Some(0),
            ..self::stored()
        };
        let policy = Policy::decode(spent.clone(), token());
        assert_eq!(policy.remaining_uses(), Some(0));
        assert_eq!(policy.encode(), spent);
    }

    #[test]
    fn unreadable_metadata_is_read_as_none() {
        for text in ["", "not json", "[1,2]", "\"text\"", "{\"k\":"] {
            let stored = StoredPolicy {
                metadata: text.to_owned(),
                ..stored()
            };
            assert!(
                Policy::decode(stored, token()).metadata().is_empty(),
                "{text:?}"
            );
        }
    }

    mod properties {
        use proptest::{collection, option, prelude::*, string::string_regex};

        use super::*;

        fn network() -> impl Strategy<Value = String> {
            prop_oneof![
                (any::<std::net::Ipv4Addr>(), 0..=32u8)
                    .prop_map(|(addr, len)| Ipv4Net::new_assert(addr, len).trunc().to_string()),
                (any::<std::net::Ipv6Addr>(), 0..=128u8)
                    .prop_map(|(addr, len)| Ipv6Net::new_assert(addr, len).trunc().to_string()),
                any::<IpAddr>().prop_map(|addr| addr.to_string()),
            ]
        }

        fn metadata_value() -> impl Strategy<Value = Value> {
            // Integers, not floats: serde_json's default float parsing may differ in the last
            // digit on the way back, which is no loss for notes but would fail equality here.
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                string_regex("\\PC{0,12}").unwrap().prop_map(Value::from),
            ];
            leaf.prop_recursive(2, 16, 4, |inner| {
                prop_oneof![
                    collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                    collection::btree_map(string_regex("\\PC{0,6}").unwrap(), inner, 0..4)
                        .prop_map(|map| Value::Object(map.into_iter().collect())),
                ]
            })
        }

        /// Any policy validation accepts, pinned to some address or not.
        fn policy() -> impl Strategy<Value = Policy> {
            (
                (
                    string_regex("\\PC{0,60}").unwrap(),
                    any::<bool>(),
                    collection::vec(string_regex("[A-Za-z0-9:._-]{1,64}").unwrap(), 0..=32),
                    collection::vec(network(), 0..=32),
                ),
                (
                    option::of(any::<IpAddr>()),
                    option::of(1..=i64::from(IDLE_EXPIRY_MAX_DAYS)),
                    option::of(1..=MAX_USES),
                    option::of(1..=i64::from(RATE_LIMIT_MAX_PER_MINUTE)),
                    collection::btree_map(
                        string_regex("\\PC{0,8}").unwrap(),
                        metadata_value(),
                        0..6,
                    ),
                ),
            )
                .prop_map(
                    |(
                        (description, read_only, scopes, networks),
                        (pin, idle, uses, rate, metadata),
                    )| {
                        let input = PolicyInput {
                            description: Some(description),
                            read_only: Some(read_only),
                            scopes: Some(scopes),
                            allowed_ips: Some(if pin.is_some() { Vec::new() } else { networks }),
                            pin_ip: Some(pin.is_some()),
                            idle_expiry_days: idle.map_or(Patch::Clear, Patch::Set),
                            max_uses: uses,
                            rate_limit_per_minute: rate,
                            metadata: Some(Value::Object(metadata.into_iter().collect())),
                        };
                        let policy = input.validate(None).expect("generated within every rule");
                        match pin {
                            // Half of the pinning ones have been used already.
                            Some(address) if read_only => policy.pinned_to(address).unwrap(),
                            _ => policy,
                        }
                    },
                )
        }

        proptest! {
            #[test]
            fn every_policy_reads_back_as_it_was_written(policy in policy()) {
                let decoded = Policy::decode(policy.encode(), token());
                prop_assert_eq!(decoded, policy);
            }

            /// Whatever a column holds, decoding neither panics nor changes its mind when the
            /// result is saved and read again.
            #[test]
            fn any_stored_text_decodes_and_stays_put(
                scopes in "\\PC{0,80}",
                allowed_ips in prop_oneof!["\\PC{0,80}", collection::vec(network(), 0..4).prop_map(|n| n.join(" "))],
                metadata in "\\PC{0,40}",
                idle in option::of(any::<i32>()),
                uses in option::of(any::<i64>()),
                rate in option::of(any::<i32>()),
            ) {
                let stored = StoredPolicy {
                    description: String::new(),
                    read_only: false,
                    scopes,
                    allowed_ips,
                    pin_ip: false,
                    idle_expiry_days: idle,
                    remaining_uses: uses,
                    rate_limit_per_minute: rate,
                    metadata,
                };
                let once = Policy::decode(stored, token());
                let twice = Policy::decode(once.encode(), token());
                prop_assert_eq!(twice, once);
            }
        }
    }
}
