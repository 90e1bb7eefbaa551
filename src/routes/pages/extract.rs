//! Extractors of the web UI: who is signed in (from the session cookie), and forms whose CSRF
//! token has been checked. A handler that takes them cannot run otherwise.

use std::{future::Future, pin::Pin};

use actix_web::{FromRequest, HttpRequest, dev::Payload, http::Method, http::header, web};
use serde::{Deserialize, de::DeserializeOwned};

use super::session::{FlashLevel, WebSession};
use crate::{
    error::ApiError,
    routes::pages::error::WebError,
    routes::{
        access_log,
        body::read_bounded,
        extract::{ClientAddress, site_origin, user_agent},
    },
    services::{
        audit::Actor,
        now,
        tokens::{self, Removal},
    },
    state::AppState,
    verify::{Attempt, AuthError, Authenticated, Use},
};

/// A browser signed in through `/login`: its session token passed every check just now.
pub struct SignedIn {
    pub auth: Authenticated,
    pub session: WebSession,
    pub address: ClientAddress,
}

impl SignedIn {
    pub fn actor(&self) -> Actor {
        Actor::user(&self.auth.user, self.address.text())
    }
}

/// A `SignedIn` admin; anyone else gets a 403 page.
pub struct SignedInAdmin(pub SignedIn);

fn state(req: &HttpRequest) -> Result<web::Data<AppState>, WebError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| WebError::internal("AppState missing from the app"))
}

/// Where to come back to after signing in: the page asked for, when it was a plain GET.
fn return_path(req: &HttpRequest) -> Option<String> {
    (req.method() == Method::GET).then(|| match req.query_string() {
        "" => req.path().to_owned(),
        query => format!("{}?{query}", req.path()),
    })
}

async fn signed_in(req: HttpRequest) -> Result<SignedIn, WebError> {
    let state = state(&req)?;
    let session = WebSession::extract(&req)
        .await
        .map_err(|e| WebError::internal(e.to_string()))?;
    let address = ClientAddress::of(&req);
    let sign_in_again = WebError::SignInRequired {
        next: return_path(&req),
    };
    let Some(key) = session.token_key() else {
        return Err(sign_in_again);
    };
    let browsing = Attempt::Use(Use {
        address: address.ip(),
        writes: false,
        scopes: &[],
        agent: user_agent(&req),
    });
    let auth = match state.verifier.verify_text(&key, &browsing).await {
        Ok(auth) => auth,
        Err(AuthError::Db(e)) => return Err(WebError::internal(e)),
        // Revoked, expired, or the user was deactivated: this browser is signed out.
        Err(refusal) => {
            log::debug!("web session ended: {refusal}");
            session.end();
            session.flash(
                FlashLevel::Error,
                "Your session has ended. Please sign in again.",
            );
            return Err(sign_in_again);
        }
    };
    let at = now().timestamp();
    let idle = i64::try_from(state.session_idle.as_secs()).unwrap_or(i64::MAX);
    if session
        .last_seen()
        .is_none_or(|seen| at.saturating_sub(seen) > idle)
    {
        // Idle too long: end the session token too, so a copied cookie is worthless.
        let actor = Actor::user(&auth.user, address.text());
        let why = Removal::IdleTimeout;
        tokens::end_session(
            &state.db,
            &state.revocations,
            &actor,
            &auth.user,
            auth.token.id,
            why,
        )
        .await?;
        session.end();
        session.flash(
            FlashLevel::Error,
            "You were signed out after a period of inactivity.",
        );
        return Err(sign_in_again);
    }
    session.touch(at);
    access_log::note_token(&req, auth.token.id);
    Ok(SignedIn {
        auth,
        session,
        address,
    })
}

impl FromRequest for SignedIn {
    type Error = WebError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        Box::pin(signed_in(req.clone()))
    }
}

impl FromRequest for SignedInAdmin {
    type Error = WebError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let user = signed_in(req).await?;
            if !user.auth.user.is_admin {
                log::debug!("admin page refused to user {}", user.auth.user.id);
                return Err(WebError::Forbidden(
                    "This page is for administrators only.".into(),
                ));
            }
            Ok(SignedInAdmin(user))
        })
    }
}

#[derive(Deserialize)]
struct CsrfField {
    #[serde(default)]
    csrf: String,
}

/// A URL-encoded form whose `csrf` field matches the session's token and whose `Origin`, when the
/// browser sends one, is this site. Anything else is a 403 page and changes nothing.
pub struct CsrfForm<T>(pub T);

/// `Origin` must name the scheme and host the request was sent to. Browsers send it on every
/// form POST; a request without one (an old browser, a script) still needs the token.
///
/// The host and scheme are the request's own (`Host`, and whether this server speaks TLS),
/// unless the TCP peer is a trusted proxy (`MULTITOKEN_TRUSTED_PROXIES`): only then do its
/// `Forwarded` / `X-Forwarded-Host` / `X-Forwarded-Proto` say what the browser used, since
/// anyone else can send them.
fn origin_is_ours(req: &HttpRequest) -> bool {
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let (scheme, host) = site_origin(req);
    same_origin(origin, &scheme, &host)
}

/// `origin` (`scheme://host[:port]`) names `scheme` and `host`; ASCII case and a default port
/// written out do not matter.
fn same_origin(origin: &str, scheme: &str, host: &str) -> bool {
    let without_default_port = |host: &str, scheme: &str| {
        let default = if scheme.eq_ignore_ascii_case("https") {
            ":443"
        } else {
            ":80"
        };
        host.strip_suffix(default)
            .unwrap_or(host)
            .to_ascii_lowercase()
    };
    let Some((origin_scheme, origin_host)) = origin.split_once("://") else {
        return false;
    };
    origin_scheme.eq_ignore_ascii_case(scheme)
        && without_default_port(origin_host, scheme) == without_default_port(host, scheme)
}

impl<T: DeserializeOwned + 'static> FromRequest for CsrfForm<T> {
    type Error = WebError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let payload = payload.take();
        Box::pin(async move {
            let body = read_bounded(&req, payload).await.map_err(|e| match e {
                ApiError::PayloadTooLarge => WebError::PayloadTooLarge,
                other => WebError::BadRequest(other.to_string()),
            })?;
            let session = WebSession::extract(&req)
                .await
                .map_err(|e| WebError::internal(e.to_string()))?;
            let presented: CsrfField = serde_urlencoded::from_bytes(&body)
                .map_err(|_| WebError::BadRequest("The form could not be read.".into()))?;
            if !origin_is_ours(&req) || !session.csrf_matches(&presented.csrf) {
                log::debug!(
                    "form refused: CSRF token or origin mismatch on {}",
                    req.path()
                );
                return Err(WebError::CsrfRejected);
            }
            let form = serde_urlencoded::from_bytes(&body)
                .map_err(|e| WebError::BadRequest(format!("The form could not be read: {e}")))?;
            Ok(CsrfForm(form))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::same_origin;

    #[test]
    fn an_origin_matches_only_with_its_scheme_and_host() {
        assert!(same_origin("http://example.com", "http", "example.com"));
        assert!(same_origin(
            "HTTPS://Example.com",
            "https",
            "example.com:443"
        ));
        assert!(same_origin(
            "http://127.0.0.1:8080",
            "http",
            "127.0.0.1:8080"
        ));
        assert!(!same_origin("https://example.com", "http", "example.com"));
        assert!(!same_origin("http://example.com", "https", "example.com"));
        assert!(!same_origin("http://evil.example", "http", "example.com"));
        assert!(!same_origin(
            "http://example.com:8080",
            "http",
            "example.com"
        ));
        assert!(!same_origin("null", "http", "example.com"));
    }
}
