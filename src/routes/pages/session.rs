//! The web UI's session, kept in an encrypted, signed cookie (actix-session): the key of the
//! browser's own session token, the CSRF token, the time of the last request and flash messages.
//! Nothing here is readable by the browser. (A newly issued key never goes into the cookie: it is
//! shown in the answer to the form that created it.)

use std::future::{Ready, ready};

use actix_session::{Session, SessionExt};
use actix_web::{FromRequest, HttpRequest, dev::Payload};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use subtle::ConstantTimeEq;

use crate::auth::{key::TokenKey, random::random_alphanumeric};

const TOKEN_KEY: &str = "key";
const CSRF: &str = "csrf";
const LAST_SEEN: &str = "seen";
const FLASHES: &str = "flash";
/// Flash messages kept at most: the cookie has about 4 KiB.
const MAX_FLASHES: usize = 5;
/// 43 characters of [A-Za-z0-9]: about 256 bits.
const CSRF_TOKEN_CHARS: usize = 43;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlashLevel {
    Success,
    Error,
}

/// A message for the next page the user sees.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Flash {
    pub level: FlashLevel,
    pub text: String,
}

impl Flash {
    pub fn is_error(&self) -> bool {
        self.level == FlashLevel::Error
    }
}

pub struct WebSession(Session);

impl WebSession {
    fn get<T: DeserializeOwned>(&self, name: &str) -> Option<T> {
        // A value that no longer decodes (written by another version) is as good as absent.
        self.0.get(name).ok().flatten()
    }

    fn put<T: Serialize>(&self, name: &str, value: T) {
        if let Err(e) = self.0.insert(name, value) {
            log::error!("session value {name} not stored: {e}");
        }
    }

    /// The key of this browser's session token, if signed in.
    pub fn token_key(&self) -> Option<String> {
        self.get(TOKEN_KEY)
    }

    /// Unix seconds of the last request made while signed in.
    pub fn last_seen(&self) -> Option<i64> {
        self.get(LAST_SEEN)
    }

    pub fn touch(&self, now: i64) {
        self.put(LAST_SEEN, now);
    }

    /// This session's CSRF token, made on first use.
    pub fn csrf_token(&self) -> String {
        if let Some(token) = self.get::<String>(CSRF) {
            return token;
        }
        let token = random_alphanumeric(CSRF_TOKEN_CHARS);
        self.put(CSRF, &token);
        token
    }

    /// Whether a form's token is this session's. Constant time; a session without one matches nothing.
    pub fn csrf_matches(&self, presented: &str) -> bool {
        match self.get::<String>(CSRF) {
            Some(expected) => bool::from(expected.as_bytes().ct_eq(presented.as_bytes())),
            None => false,
        }
    }

    /// Starts a signed-in session: a new cookie (no fixation), a new CSRF token, the token key.
    pub fn sign_in(&self, key: &TokenKey, now: i64) {
        self.0.clear();
        self.0.renew();
        self.put(TOKEN_KEY, key.reveal());
        self.put(CSRF, random_alphanumeric(CSRF_TOKEN_CHARS));
        self.touch(now);
    }

    /// Forgets everything (sign-in, CSRF token, pending key); a flash added afterwards survives.
    pub fn end(&self) {
        self.0.clear();
        self.0.renew();
    }

    pub fn flash(&self, level: FlashLevel, text: impl Into<String>) {
        let mut flashes: Vec<Flash> = self.get(FLASHES).unwrap_or_default();
        if flashes.len() >= MAX_FLASHES {
            flashes.remove(0);
        }
        flashes.push(Flash {
            level,
            text: text.into(),
        });
        self.put(FLASHES, flashes);
    }

    pub fn take_flashes(&self) -> Vec<Flash> {
        if !self.0.contains_key(FLASHES) {
            return Vec::new();
        }
        let flashes = self.get(FLASHES).unwrap_or_default();
        self.0.remove(FLASHES);
        flashes
    }
}

impl FromRequest for WebSession {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(WebSession(req.get_session())))
    }
}
