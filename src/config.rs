//! Command line and environment: every setting is a flag with an environment fallback.
//! A bad value stops start-up with one line naming the variable.

use std::{fmt, net::SocketAddr, process::ExitCode, time::Duration};

use crate::{
    auth::random::random_alphanumeric, duration::parse_duration, services::throttle::MAX_LIMIT,
};
use clap::{Args, CommandFactory, Parser, Subcommand, error::ContextKind, error::ErrorKind};
use ipnet::IpNet;

/// The session-cookie key must be at least this long (it is split into signing and encryption keys).
pub const SECRET_KEY_MIN_BYTES: usize = 64;
pub const DEFAULT_DATABASE_URL: &str = "sqlite://multitoken.db?mode=rwc";

#[derive(Parser)]
#[command(name = "multitoken", version, about = "Many named API tokens per user")]
pub struct Cli {
    #[command(flatten)]
    pub settings: Settings,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Apply pending migrations, then serve HTTP.
    Serve,
    /// Apply pending migrations and exit.
    Migrate,
    /// Create a user. Without --password-stdin a random password is generated and printed once.
    CreateUser {
        username: String,
        /// Make the user an administrator.
        #[arg(long)]
        admin: bool,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Create a named device token for a user and print only its key.
    CreateToken {
        username: String,
        token_name: String,
        /// Lifetime such as 30d or 12h; without it the token does not expire.
        #[arg(long, value_parser = parse_duration)]
        expires_in: Option<Duration>,
    },
    /// Delete expired tokens and print how many were deleted.
    Prune,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Settings shared by every subcommand.
#[derive(Args)]
pub struct Settings {
    /// Database URL: sqlite://FILE?mode=rwc, postgres://USER@HOST/DB or mysql://USER@HOST/DB (MariaDB).
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, value_parser = parse_database_url, global = true)]
    pub database_url: String,
    /// Address to listen on.
    #[arg(
        long,
        env = "MULTITOKEN_BIND",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub bind: SocketAddr,
    /// Session-cookie key, at least 64 bytes. Random (sessions end at restart) when unset.
    #[arg(long, env = "MULTITOKEN_SECRET_KEY", hide_env_values = true, value_parser = SecretKey::parse, global = true)]
    pub secret_key: Option<SecretKey>,
    /// Lifetime of session tokens from POST /api/token/ (2s, 15m, 24h, 7d).
    #[arg(long, env = "MULTITOKEN_SESSION_TTL", default_value = "24h", value_parser = parse_duration, global = true)]
    pub session_ttl: Duration,
    /// Device tokens created from now on expire after this long unused (90d), unless their
    /// creator says otherwise; unset: never. Whole days, at least one.
    #[arg(long, env = "MULTITOKEN_DEVICE_IDLE_EXPIRY", value_parser = parse_idle_expiry, global = true)]
    pub device_idle_expiry: Option<Duration>,
    /// Most live tokens one user may hold.
    #[arg(long, env = "MULTITOKEN_MAX_TOKENS_PER_USER", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..=100_000), global = true)]
    pub max_tokens_per_user: u32,
    /// Give every new user a device token named "default", shown once to whoever created the user.
    #[arg(long, env = "MULTITOKEN_TOKEN_ON_SIGNUP", default_value_t = false,
          action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new(), global = true)]
    pub token_on_signup: bool,
    /// Password for the `admin` user created on first start (random and logged once when unset).
    #[arg(long, env = "MULTITOKEN_ADMIN_PASSWORD", hide_env_values = true, value_parser = parse_admin_password, global = true)]
    pub admin_password: Option<String>,
    /// HTTP worker threads (default: one per core).
    #[arg(long, env = "MULTITOKEN_WORKERS", global = true)]
    pub workers: Option<std::num::NonZeroUsize>,
    /// Mark the web UI's session cookie `Secure` (set it when the UI is served over HTTPS).
    #[arg(long, env = "MULTITOKEN_COOKIE_SECURE", default_value_t = false,
          action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new(), global = true)]
    pub cookie_secure: bool,
    /// A web sign-in ends after this long without a request (30m, 2h). Its token ends too.
    #[arg(long, env = "MULTITOKEN_SESSION_IDLE", default_value = "1h", value_parser = parse_duration, global = true)]
    pub session_idle: Duration,
    /// How often the server removes tokens that expired more than a day ago.
    #[arg(long, env = "MULTITOKEN_EXPIRY_SWEEP_INTERVAL", default_value = "10m", value_parser = parse_duration, global = true)]
    pub expiry_sweep_interval: Duration,
    /// Verified tokens kept in memory (about 1 KiB each); 0 or "off" checks every request against the database.
    #[arg(long, env = "MULTITOKEN_VERIFY_CACHE", default_value = "50000", value_parser = parse_cache_size, global = true)]
    pub verify_cache: u64,
    /// Longest a cached verification is trusted before the database is asked again. A safety net
    /// only: revocations reach the cache at once.
    #[arg(long, env = "MULTITOKEN_VERIFY_CACHE_TTL", default_value = "60s", value_parser = parse_duration, global = true)]
    pub verify_cache_ttl: Duration,
    /// How often the last use of tokens is written to the database (one write per used token per interval).
    #[arg(long, env = "MULTITOKEN_LAST_USED_FLUSH", default_value = "5s", value_parser = parse_duration, global = true)]
    pub last_used_flush: Duration,
    /// Failed logins one username may collect within the failure window before logins wait.
    #[arg(long, env = "MULTITOKEN_LOGIN_MAX_FAILURES", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_LIMIT)), global = true)]
    pub login_max_failures: u32,
    /// Failed logins one client address may collect within the failure window, across usernames.
    #[arg(long, env = "MULTITOKEN_LOGIN_MAX_FAILURES_PER_ADDRESS", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_LIMIT)), global = true)]
    pub login_max_failures_per_address: u32,
    /// The sliding window failed logins are counted in; lock-outs double from it up to 16 times it.
    #[arg(long, env = "MULTITOKEN_LOGIN_FAILURE_WINDOW", default_value = "1m", value_parser = parse_duration, global = true)]
    pub login_failure_window: Duration,
    /// Reverse proxies (addresses or CIDR ranges, comma-separated) whose X-Forwarded-For is
    /// believed. Without them the client address is the TCP peer.
    #[arg(long, env = "MULTITOKEN_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_proxy, global = true)]
    pub trusted_proxies: Vec<IpNet>,
    /// Redis for the login-attempt counters and the per-token rate limits, shared by every instance
    /// (redis://HOST:PORT/DB); unset: the database holds the former, each instance the latter.
    #[arg(long, env = "MULTITOKEN_REDIS_URL", hide_env_values = true, value_parser = parse_redis_url, global = true)]
    pub redis_url: Option<String>,
    /// How long a device's pairing codes (POST /api/pair/) wait for approval.
    #[arg(long, env = "MULTITOKEN_PAIRING_TTL", default_value = "10m", value_parser = parse_duration, global = true)]
    pub pairing_ttl: Duration,
    /// How often a pairing device may poll for its token (whole seconds, at least 1); RFC 8628 says 5s.
    #[arg(long, env = "MULTITOKEN_PAIRING_INTERVAL", default_value = "5s", value_parser = parse_pairing_interval, global = true)]
    pub pairing_interval: Duration,
    /// The address people reach this service at (https://tokens.example.com), for the pairing
    /// link shown on devices; unset: taken from each request's Host.
    #[arg(long, env = "MULTITOKEN_PUBLIC_URL", value_parser = parse_public_url, global = true)]
    pub public_url: Option<String>,
    /// How long audit events are kept (365d); older ones are deleted by the periodic sweep.
    #[arg(long, env = "MULTITOKEN_AUDIT_RETENTION", default_value = "365d", value_parser = parse_duration, global = true)]
    pub audit_retention: Duration,
    /// How long each token's hourly usage history is kept (90d).
    #[arg(long, env = "MULTITOKEN_USAGE_RETENTION", default_value = "90d", value_parser = parse_duration, global = true)]
    pub usage_retention: Duration,
    /// Log lines as plain text, or as one JSON object per line (for a log shipper).
    #[arg(long, env = "MULTITOKEN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// Prefix of this service's Redis keys, for several deployments sharing one Redis.
    #[arg(
        long,
        env = "MULTITOKEN_REDIS_PREFIX",
        default_value = "multitoken:",
        global = true
    )]
    pub redis_prefix: String,
}

impl Cli {
    /// Parses the command line; on a bad value prints one line naming the variable and the flag.
    pub fn parse_or_explain() -> Result<Cli, ExitCode> {
        match Cli::try_parse() {
            Ok(cli) => Ok(cli),
            Err(error)
                if matches!(
                    error.kind(),
                    ErrorKind::ValueValidation | ErrorKind::InvalidValue
                ) =>
            {
                eprintln!("error: {}", explain_invalid_value(&error));
                Err(ExitCode::from(2))
            }
            Err(error) => {
                let _ = error.print();
                Err(ExitCode::from(if error.use_stderr() { 2 } else { 0 }))
            }
        }
    }
}

fn explain_invalid_value(error: &clap::Error) -> String {
    let arg = error
        .get(ContextKind::InvalidArg)
        .map(|a| a.to_string())
        .unwrap_or_default();
    let value = error
        .get(ContextKind::InvalidValue)
        .map(|v| v.to_string())
        .unwrap_or_default();
    let long = arg
        .trim_start_matches("--")
        .split([' ', '='])
        .next()
        .unwrap_or("")
        .to_owned();
    let env = Cli::command()
        .get_arguments()
        .find(|a| a.get_long() == Some(long.as_str()))
        .and_then(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()));
    // clap's own text names the flag only; say the variable too, since that is where most values come from.
    let reason = error
        .source()
        .map(|s| s.to_string())
        .unwrap_or_else(|| format!("invalid value '{value}'"));
    match env {
        Some(env) => format!("invalid {env} (--{long}): {reason}"),
        None => format!("invalid {arg}: {reason}"),
    }
}

use std::error::Error as _;

/// Only the scheme is checked and no message repeats the URL: it may carry a password.
fn parse_database_url(url: &str) -> Result<String, String> {
    let supported = ["sqlite:", "postgres://", "postgresql://", "mysql://"];
    if supported.iter().any(|scheme| url.starts_with(scheme)) {
        Ok(url.to_owned())
    } else {
        Err("must start with sqlite:, postgres:// or mysql://".to_owned())
    }
}

/// Only the scheme is checked and no message repeats the URL: it may carry a password.
fn parse_redis_url(url: &str) -> Result<String, String> {
    if url.starts_with("redis://") || url.starts_with("rediss://") || url.starts_with("unix://") {
        Ok(url.to_owned())
    } else {
        Err("must start with redis://, rediss:// or unix://".to_owned())
    }
}

/// `10.0.0.1`, `10.0.0.0/8` or `::1`: a single address is a range of one.
fn parse_proxy(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("'{text}' is neither an IP address nor a CIDR range"))
}

/// A number of entries, or `off` (the same as 0).
fn parse_cache_size(text: &str) -> Result<u64, String> {
    match text.trim() {
        "off" => Ok(0),
        number => number
            .parse()
            .map_err(|_| format!("'{number}' is neither a number of entries nor off")),
    }
}

fn parse_admin_password(password: &str) -> Result<String, String> {
    crate::services::users::validate_password(password)
        .map(|()| password.to_owned())
        .map_err(|invalid| invalid.message)
}

impl Settings {
    pub fn secret_key_or_random(&self) -> SecretKey {
        self.secret_key.clone().unwrap_or_else(|| {
            log::warn!(
                "MULTITOKEN_SECRET_KEY is not set: using a random key, so browser sessions end at every restart"
            );
            SecretKey::random()
        })
    }
}

/// Key material for signed and encrypted cookies. Debug never prints it.
#[derive(Clone)]
pub struct SecretKey(Vec<u8>);

impl SecretKey {
    pub fn parse(text: &str) -> Result<SecretKey, String> {
        if text.len() < SECRET_KEY_MIN_BYTES {
            return Err(format!(
                "must be at least {SECRET_KEY_MIN_BYTES} bytes long, got {}",
                text.len()
            ));
        }
        Ok(SecretKey(text.as_bytes().to_vec()))
    }

    pub fn random() -> SecretKey {
        SecretKey(random_alphanumeric(86).into_bytes())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(***)")
    }
}

/// A duration of whole days between one and `policy::IDLE_EXPIRY_MAX_DAYS`.
fn parse_pairing_interval(text: &str) -> Result<Duration, String> {
    let duration = parse_duration(text)?;
    if duration.subsec_nanos() != 0 || !(1..=3600).contains(&duration.as_secs()) {
        return Err("must be whole seconds, 1s to 1h".into());
    }
    Ok(duration)
}

/// An http(s) URL without a query; a trailing slash is dropped.
fn parse_public_url(text: &str) -> Result<String, String> {
    let url = text.trim().trim_end_matches('/');
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or("must start with http:// or https://")?;
    if rest.is_empty() || rest.contains(['?', '#', ' ']) {
        return Err("must be a URL such as https://tokens.example.com".into());
    }
    Ok(url.to_owned())
}

fn parse_idle_expiry(text: &str) -> Result<Duration, String> {
    let duration = parse_duration(text)?;
    let days = duration.as_secs() / 86_400;
    let max = u64::from(crate::services::tokens::policy::IDLE_EXPIRY_MAX_DAYS);
    if duration.as_secs() % 86_400 != 0 || !(1..=max).contains(&days) {
        return Err(format!("must be whole days, 1d to {max}d"));
    }
    Ok(duration)
}
