//! Request extractors that authenticate: a handler that takes `ApiUser` or `AdminUser` cannot
//! run for a caller without a valid token.

use std::{
    future::{Future, Ready, ready},
    net::{IpAddr, SocketAddr},
    pin::Pin,
};

use futures_util::future::{Either, LocalBoxFuture};

use super::{access_log, middleware::TokenExpiry};

use actix_web::{
    FromRequest, HttpMessage, HttpRequest,
    dev::Payload,
    http::header::{self, HeaderName, HeaderValue},
    web,
};
use ipnet::IpNet;

use crate::{
    auth::key::KeyDigest,
    error::{ApiError, INVALID_TOKEN},
    services::audit::Actor,
    services::tokens::policy,
    state::AppState,
    verify::{Attempt, Authenticated, Use, Verifier},
};

/// A caller authenticated by `Authorization: Token KEY` or `Authorization: Bearer KEY`, and the
/// address it called from.
pub struct ApiUser(pub Authenticated, pub ClientAddress);

/// An `ApiUser` whose user is an admin; anyone else gets 403.
pub struct AdminUser(pub Authenticated, pub ClientAddress);

impl ApiUser {
    /// The caller as the audit log names it.
    pub fn actor(&self) -> Actor {
        Actor::user(&self.0.user, self.1.text())
    }
}

impl AdminUser {
    pub fn actor(&self) -> Actor {
        Actor::user(&self.0.user, self.1.text())
    }
}

/// The client's IP address, for the audit log and login throttling: the TCP peer, or, when the
/// peer is a trusted proxy (`MULTITOKEN_TRUSTED_PROXIES`), the address its `X-Forwarded-For`
/// names. Nobody else's forwarded headers are believed, since any client can send them. Kept as
/// an address and written out only when something records it (most requests never do).
#[derive(Clone, Copy, Debug)]
pub struct ClientAddress(Option<IpAddr>);

impl ClientAddress {
    pub fn of(req: &HttpRequest) -> ClientAddress {
        let trusted = req
            .app_data::<web::Data<AppState>>()
            .map(|state| state.trusted_proxies.as_slice())
            .unwrap_or_default();
        let forwarded = req.headers().get_all(FORWARDED_FOR);
        let address = client_ip(req.peer_addr().map(|peer| peer.ip()), forwarded, trusted);
        ClientAddress(address.map(|ip| ip.to_canonical()))
    }

    /// The address itself, when the request has one.
    pub fn ip(&self) -> Option<IpAddr> {
        self.0
    }

    /// The address as the audit log and the throttle record it.
    pub fn text(&self) -> Option<String> {
        self.0.map(|ip| ip.to_string())
    }

    /// An unauthenticated caller (a login attempt) as the audit log names it.
    pub fn anonymous(&self) -> Actor {
        Actor::anonymous(self.text())
    }
}

impl FromRequest for ClientAddress {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(ClientAddress::of(req)))
    }
}

/// A constant name: looking a header up by a `&str` parses the name on every request.
const FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Walks `X-Forwarded-For` from the right (the hop nearest us) past trusted proxies: the first
/// address not trusted is the client. An entry that is no address ends the walk at the last
/// trusted hop, since whatever wrote it cannot be believed. All trusted: the leftmost.
pub fn client_ip<'a>(
    peer: Option<IpAddr>,
    forwarded_for: impl Iterator<Item = &'a HeaderValue>,
    trusted: &[IpNet],
) -> Option<IpAddr> {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(&ip.to_canonical()));
    let mut client = peer?;
    if !is_trusted(&client) {
        return Some(client);
    }
    // Split as bytes: a client's junk entry (say, a non-ASCII byte) spoils only itself, not
    // the whole line its proxy appended to, so the proxy's own entries are still read.
    let values: Vec<&[u8]> = forwarded_for.map(HeaderValue::as_bytes).collect();
    for entry in values
        .iter()
        .rev()
        .flat_map(|value| value.rsplit(|b| *b == b','))
    {
        let Some(hop) = std::str::from_utf8(entry)
            .ok()
            .and_then(|entry| parse_forwarded_ip(entry.trim()))
        else {
            break;
        };
        client = hop;
        if !is_trusted(&hop) {
            break;
        }
    }
    Some(client)
}

/// `203.0.113.7`, `2001:db8::1`, and the forms with a port: `203.0.113.7:5000`, `[2001:db8::1]:5000`.
fn parse_forwarded_ip(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

/// The key from an `Authorization` header value, for the schemes `Token` and `Bearer` (any case).
pub fn key_from_authorization(value: &str) -> Option<&str> {
    let (scheme, key) = value.trim().split_once(' ')?;
    let key = key.trim();
    let known = scheme.eq_ignore_ascii_case("token") || scheme.eq_ignore_ascii_case("bearer");
    (known && !key.is_empty()).then_some(key)
}

/// The digest of the key in the request's `Authorization` header, and the state whose verifier
/// checks it. A missing, malformed or mistyped key is refused here, before any lookup.
fn presented(req: &HttpRequest) -> Result<(&web::Data<AppState>, KeyDigest), ApiError> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::internal("AppState missing from the app"))?;
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(key_from_authorization)
        .ok_or(ApiError::Unauthorized(INVALID_TOKEN))?;
    Ok((state, Verifier::digest_of(presented)?))
}

/// The writes a read-only token may make: logging itself out (not everywhere), rotating itself,
/// and an admin's introspection (a POST that only reads).
const READ_ONLY_MAY_POST: &[&str] = &["/api/logout", "/api/tokens/self/rotate", "/api/introspect"];

/// Whether a request to our API changes something, as a read-only token sees it.
fn writes(req: &HttpRequest) -> bool {
    !policy::read_only_allows(req.method().as_str())
        && !req
            .match_pattern()
            .is_some_and(|pattern| READ_ONLY_MAY_POST.contains(&pattern.as_str()))
}

/// The caller behind the request's `Authorization` header, through the verifier, for a use by
/// `address` that `writes` (or not) and requires `scopes`. The one way the API (extractors and
/// forward-auth alike) checks a presented key: parsed once, and a malformed or mistyped key is
/// refused before any lookup.
pub(crate) async fn authenticate(
    req: &HttpRequest,
    address: ClientAddress,
    writes: bool,
    scopes: &[&str],
) -> Result<Authenticated, ApiError> {
    let (state, digest) = presented(req)?;
    let attempt = Attempt::Use(Use {
        address: address.0,
        writes,
        scopes,
        agent: user_agent(req),
    });
    let caller = state.verifier.verify_digest(&digest, &attempt).await?;
    note_expiry(req, &caller);
    Ok(caller)
}

/// The request's `User-Agent`, when it is text.
pub fn user_agent(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(header::USER_AGENT)
        .and_then(|value| value.to_str().ok())
}

/// An expiring token's answers say when it expires (`X-Token-Expires-At`, added by the
/// middleware), and answers to a rotated token's previous key say so too (`X-Token-Rotated`, its
/// expiry being the grace's end); a token that never expires costs nothing here.
fn note_expiry(req: &HttpRequest, caller: &Authenticated) {
    // The access log, when on, names the token (never its key).
    access_log::note_token(req, caller.token.id);
    if let Some(at) = caller.token.expires_at {
        req.extensions_mut().insert(TokenExpiry {
            at,
            rotated: caller.previous_key,
        });
    }
}

impl FromRequest for ApiUser {
    type Error = ApiError;
    /// Ready at once when the worker's near cache answers (most requests: no future boxed).
    type Future =
        Either<Ready<Result<Self, ApiError>>, LocalBoxFuture<'static, Result<Self, ApiError>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let (state, digest) = match presented(req) {
            Ok(presented) => presented,
            Err(refused) => return Either::Left(ready(Err(refused))),
        };
        let address = ClientAddress::of(req);
        let writes = writes(req);
        let attempt = Attempt::Use(Use {
            address: address.0,
            writes,
            scopes: &[],
            agent: user_agent(req),
        });
        if let Some(answer) = state.verifier.answer_now(&digest, &attempt) {
            return Either::Left(ready(
                answer
                    .map(|caller| {
                        note_expiry(req, &caller);
                        ApiUser(caller, address)
                    })
                    .map_err(ApiError::from),
            ));
        }
        let (state, req) = (state.clone(), req.clone());
        Either::Right(Box::pin(async move {
            let attempt = Attempt::Use(Use {
                address: address.0,
                writes,
                scopes: &[],
                agent: user_agent(&req),
            });
            let caller = state.verifier.verify_digest(&digest, &attempt).await?;
            note_expiry(&req, &caller);
            Ok(ApiUser(caller, address))
        }))
    }
}

impl FromRequest for AdminUser {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    /// An `ApiUser`, then the admin check.
    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let caller = ApiUser::from_request(req, payload);
        Box::pin(async move {
            let ApiUser(caller, address) = caller.await?;
            if !caller.user.is_admin {
                log::debug!("admin route refused to user {}", caller.user.id);
                return Err(ApiError::Forbidden("admin rights required".into()));
            }
            Ok(AdminUser(caller, address))
        })
    }
}

/// The scheme and host the client addressed: the request's own (`Host`, and whether this
/// server speaks TLS), unless the TCP peer is a trusted proxy (`MULTITOKEN_TRUSTED_PROXIES`):
/// only then do its `Forwarded` / `X-Forwarded-Host` / `X-Forwarded-Proto` say what the client
/// used, since anyone else can send them.
pub fn site_origin(req: &HttpRequest) -> (String, String) {
    if peer_is_trusted_proxy(req) {
        let info = req.connection_info();
        return (info.scheme().to_owned(), info.host().to_owned());
    }
    let scheme = if req.app_config().secure() {
        "https"
    } else {
        "http"
    };
    let host = req
        .headers()
        .get(actix_web::http::header::HOST)
        .and_then(|host| host.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_else(|| req.app_config().host().to_owned());
    (scheme.to_owned(), host)
}

fn peer_is_trusted_proxy(req: &HttpRequest) -> bool {
    let Some(peer) = req.peer_addr() else {
        return false;
    };
    let peer = peer.ip().to_canonical();
    req.app_data::<web::Data<AppState>>()
        .is_some_and(|state| state.trusted_proxies.iter().any(|net| net.contains(&peer)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(peer: &str, headers: &[&str], trusted: &[&str]) -> String {
        let values: Vec<HeaderValue> = headers
            .iter()
            .map(|h| HeaderValue::from_str(h).unwrap())
            .collect();
        let trusted: Vec<IpNet> = trusted.iter().map(|t| t.parse().unwrap()).collect();
        client_ip(Some(peer.parse().unwrap()), values.iter(), &trusted)
            .unwrap()
            .to_string()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        assert_eq!(
            walk("198.51.100.1", &["203.0.113.7"], &[]),
            "198.51.100.1",
            "no trusted proxies: the peer, whatever the header says"
        );
        assert_eq!(
            walk("198.51.100.1", &["203.0.113.7"], &["10.0.0.0/8"]),
            "198.51.100.1",
            "a peer outside the trusted ranges is the client"
        );
        assert_eq!(
            walk("10.0.0.2", &["203.0.113.7"], &["10.0.0.0/8"]),
            "203.0.113.7"
        );
    }

    #[test]
    fn the_walk_stops_at_the_first_untrusted_hop_from_the_right() {
        let trusted = ["10.0.0.0/8"];
        assert_eq!(
            walk("10.0.0.2", &["1.1.1.1, 203.0.113.7, 10.0.0.9"], &trusted),
            "203.0.113.7",
            "a client-supplied leftmost entry is ignored"
        );
        assert_eq!(
            walk("10.0.0.2", &["1.1.1.1", "203.0.113.7:4000"], &trusted),
            "203.0.113.7",
            "several headers are one list; ports are dropped"
        );
        assert_eq!(
            walk("10.0.0.2", &["1.1.1.1, garbage, 10.0.0.5"], &trusted),
            "10.0.0.5",
            "an entry that is no address ends the walk at the last trusted hop"
        );
        assert_eq!(walk("10.0.0.2", &["10.0.0.3"], &trusted), "10.0.0.3");
        let junk = HeaderValue::from_bytes(b"1.1.1.1\xff, 203.0.113.7").unwrap();
        let trusted_nets: Vec<IpNet> = trusted.iter().map(|t| t.parse().unwrap()).collect();
        assert_eq!(
            client_ip(
                Some("10.0.0.2".parse().unwrap()),
                [junk].iter(),
                &trusted_nets
            ),
            Some("203.0.113.7".parse().unwrap()),
            "a non-ASCII byte from the client spoils only its own entry"
        );
        assert_eq!(
            walk("::ffff:10.0.0.2", &["[2001:db8::1]:80"], &trusted),
            "2001:db8::1",
            "IPv4-mapped peers match IPv4 ranges"
        );
    }

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
