//! What every handler shares, built once by `startup` and handed to every worker.

use std::{sync::Arc, time::Duration};

use ipnet::IpNet;
use sea_orm::DatabaseConnection;

use crate::{
    config::{SecretKey, Settings},
    metrics::Metrics,
    services::{
        Policy,
        pairing::PairingConfig,
        throttle::{LoginThrottle, ThrottleConfig},
    },
    verify::{Revocations, Verifier},
};

/// Shared by every worker.
pub struct AppState {
    pub db: DatabaseConnection,
    pub policy: Policy,
    /// For signed session cookies (the web UI).
    pub secret_key: SecretKey,
    /// The web UI's cookie is `Secure`.
    pub cookie_secure: bool,
    /// A web sign-in ends after this long without a request.
    pub session_idle: Duration,
    /// Token verification through the cache; notes uses for `last_used_at`.
    pub verifier: Arc<Verifier>,
    /// Begins and finishes every transaction that revokes tokens, announcing what it revoked.
    pub revocations: Revocations,
    /// Counts failed logins per username and per address, shared by every instance.
    pub throttle: Arc<LoginThrottle>,
    /// Proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<IpNet>,
    /// How long pairing codes live and how often devices may poll.
    pub pairing: PairingConfig,
    /// Where people reach the service, for pairing links; `None`: from the request's Host.
    pub public_url: Option<String>,
    /// This instance's counts, for `/metrics` (the verifier counts into the same).
    pub metrics: Arc<Metrics>,
}

pub fn policy_from(settings: &Settings) -> Policy {
    Policy {
        session_ttl: settings.session_ttl,
        max_tokens_per_user: settings.max_tokens_per_user,
        token_on_signup: settings.token_on_signup,
        device_idle_expiry_days: settings
            .device_idle_expiry
            .and_then(|idle| u32::try_from(idle.as_secs() / 86_400).ok()),
    }
}

pub fn throttle_config(settings: &Settings) -> ThrottleConfig {
    ThrottleConfig {
        per_username: settings.login_max_failures,
        per_address: settings.login_max_failures_per_address,
        window: settings.login_failure_window,
    }
}

pub fn pairing_config(settings: &Settings) -> PairingConfig {
    PairingConfig {
        ttl: settings.pairing_ttl,
        interval: settings.pairing_interval,
    }
}
