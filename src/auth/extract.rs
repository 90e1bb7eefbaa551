//! Request extractors that authenticate: a handler that takes `ApiUser` or `AdminUser` cannot
//! run for a caller without a valid token.

use std::{
    future::{Future, Ready, ready},
    pin::Pin,
};

use actix_web::{FromRequest, HttpRequest, dev::Payload, http::header, web};

use crate::{
    error::{ApiError, INVALID_TOKEN},
    services::{audit::Actor, tokens::Authenticated},
    startup::AppState,
};

/// A caller authenticated by `Authorization: Token KEY` or `Authorization: Bearer KEY`, and the
/// address it called from.
pub struct ApiUser(pub Authenticated, pub ClientAddress);

/// An `ApiUser` whose user is an admin; anyone else gets 403.
pub struct AdminUser(pub Authenticated, pub ClientAddress);

impl ApiUser {
    /// The caller as the audit log names it.
    pub fn actor(&self) -> Actor {
        Actor::user(&self.0.user, self.1.0.clone())
    }
}

impl AdminUser {
    pub fn actor(&self) -> Actor {
        Actor::user(&self.0.user, self.1.0.clone())
    }
}

/// The client's IP address as the TCP peer gives it, for the audit log. Behind a reverse proxy
/// this is the proxy: forwarded headers are not trusted, since any client can send them.
#[derive(Clone, Debug)]
pub struct ClientAddress(pub Option<String>);

impl ClientAddress {
    pub fn of(req: &HttpRequest) -> ClientAddress {
        ClientAddress(req.peer_addr().map(|peer| peer.ip().to_string()))
    }

    /// An unauthenticated caller (a login attempt) as the audit log names it.
    pub fn anonymous(&self) -> Actor {
        Actor::anonymous(self.0.clone())
    }
}

impl FromRequest for ClientAddress {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(ClientAddress::of(req)))
    }
}

/// The key from an `Authorization` header value, for the schemes `Token` and `Bearer` (any case).
pub fn key_from_authorization(value: &str) -> Option<&str> {
    let (scheme, key) = value.trim().split_once(' ')?;
    let key = key.trim();
    let known = scheme.eq_ignore_ascii_case("token") || scheme.eq_ignore_ascii_case("bearer");
    (known && !key.is_empty()).then_some(key)
}

/// The caller behind the request's `Authorization` header, through the verification cache. The
/// one way the API (extractors and forward-auth alike) checks a presented key.
pub(crate) async fn authenticate(req: &HttpRequest) -> Result<Authenticated, ApiError> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::internal("AppState missing from the app"))?;
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(key_from_authorization)
        .ok_or(ApiError::Unauthorized(INVALID_TOKEN))?;
    Ok(state.verifier.verify(&state.db, presented).await?)
}

impl FromRequest for ApiUser {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let caller = authenticate(&req).await?;
            Ok(ApiUser(caller, ClientAddress::of(&req)))
        })
    }
}

impl FromRequest for AdminUser {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let caller = authenticate(&req).await?;
            if !caller.user.is_admin {
                log::debug!("admin route refused to user {}", caller.user.id);
                return Err(ApiError::Forbidden("admin rights required".into()));
            }
            Ok(AdminUser(caller, ClientAddress::of(&req)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_and_bearer_schemes_are_accepted_in_any_case() {
        assert_eq!(key_from_authorization("Token mt_abc"), Some("mt_abc"));
        assert_eq!(key_from_authorization("bearer  mt_abc "), Some("mt_abc"));
        assert_eq!(key_from_authorization("BEARER mt_abc"), Some("mt_abc"));
    }

    #[test]
    fn other_schemes_and_empty_keys_are_refused() {
        for bad in [
            "",
            "Token",
            "Token ",
            "Basic dXNlcjpwYXNz",
            "mt_abc",
            "Tokenmt_abc",
        ] {
            assert_eq!(key_from_authorization(bad), None, "{bad:?} must be refused");
        }
    }
}
