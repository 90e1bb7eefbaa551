//! The one middleware every request passes: paths normalized, and the headers every answer
//! carries. Hand-written rather than three stock middlewares (`NormalizePath`, `DefaultHeaders`,
//! `from_fn`): those ran a regex, boxed a future and rebuilt the URI on every request, which
//! cost `/api/me/` more than verifying its key (see BENCHMARKS.md, "The hot path").

use std::{
    future::{Future, Ready, ready},
    pin::Pin,
    rc::Rc,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use actix_web::{
    Error, HttpMessage,
    dev::{Service, ServiceRequest, ServiceResponse, Transform, Url, forward_ready},
    http::{
        ConnectionType, Uri,
        header::{self, HeaderMap, HeaderName, HeaderValue},
        uri::PathAndQuery,
    },
};
use chrono::{DateTime, Utc};

use super::{
    api::timestamp,
    in_flight::{self, InFlight},
};
use crate::metrics::Metrics;

/// Paths are matched without a trailing slash and with single slashes (`/api/me/` and
/// `//api//me` are `/api/me`); every answer gets `nosniff` and, unless its handler chose one,
/// `Cache-Control: no-store` (answers carry keys and account data); HTML answers get the page
/// headers; with secure cookies, HSTS. Requests in flight are counted for a graceful stop, and
/// while it drains every answer closes its connection.
#[derive(Clone)]
pub struct Essentials {
    /// The site is HTTPS-only (secure cookies): browsers are told to stay on it.
    pub https_only: bool,
    /// Every answered request is counted here (by route pattern, method and status) for
    /// `/metrics`.
    pub metrics: Arc<Metrics>,
    pub in_flight: InFlight,
}

impl<S, B> Transform<S, ServiceRequest> for Essentials
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Transform = EssentialsMiddleware<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(EssentialsMiddleware {
            service,
            worker: Rc::new(WorkerEssentials {
                https_only: self.https_only,
                metrics: self.metrics.clone(),
                requests: self.in_flight.worker(),
            }),
        }))
    }
}

pub struct EssentialsMiddleware<S> {
    service: S,
    /// Cloned per request as an `Rc`, which no other worker touches: an `Arc`'s shared count
    /// would be written by every worker on every request.
    worker: Rc<WorkerEssentials>,
}

/// What one worker's middleware holds.
struct WorkerEssentials {
    https_only: bool,
    metrics: Arc<Metrics>,
    requests: in_flight::Worker,
}

/// A request counted in flight until it is answered or abandoned (its future dropped).
struct Counted(Rc<WorkerEssentials>);

impl Counted {
    fn new(worker: &Rc<WorkerEssentials>) -> Counted {
        worker.requests.begin();
        Counted(worker.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.requests.end();
    }
}

impl<S, B> Service<ServiceRequest> for EssentialsMiddleware<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Future = WithHeaders<S::Future>;

    forward_ready!(service);

    fn call(&self, mut req: ServiceRequest) -> Self::Future {
        normalize(&mut req);
        WithHeaders {
            started: Instant::now(),
            request: Counted::new(&self.worker),
            inner: self.service.call(req),
        }
    }
}

pin_project_lite::pin_project! {
    /// The inner service's answer, with the headers added once it is ready.
    pub struct WithHeaders<F> {
        #[pin]
        inner: F,
        started: Instant,
        request: Counted,
    }
}

impl<F, B> Future for WithHeaders<F>
where
    F: Future<Output = Result<ServiceResponse<B>, Error>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = std::task::ready!(this.inner.poll(cx))?;
        let worker = &this.request.0;
        let expiry = response
            .request()
            .extensions()
            .get::<TokenExpiry>()
            .copied();
        if let Some(expiry) = expiry
            && let Ok(value) = HeaderValue::from_str(&timestamp::rfc3339(expiry.at))
        {
            response.headers_mut().insert(TOKEN_EXPIRES_AT, value);
            if expiry.rotated {
                response
                    .headers_mut()
                    .insert(TOKEN_ROTATED, HeaderValue::from_static("true"));
            }
        }
        add_headers(response.headers_mut(), worker.https_only);
        if worker.requests.draining() {
            response
                .response_mut()
                .head_mut()
                .set_connection_type(ConnectionType::Close);
        }
        let request = response.request();
        let route = request.match_pattern();
        worker.metrics.requests.record(
            route.as_deref().unwrap_or("(unmatched)"),
            request.method().as_str(),
            response.status().as_u16(),
            this.started.elapsed(),
        );
        Poll::Ready(Ok(response))
    }
}

/// Noted on a request authenticated with a token that expires (by `routes::extract`): its answer
/// then says when, so a client can renew in time. `rotated`: the key presented was replaced by a
/// rotation and works only until `at`, the end of its grace.
#[derive(Clone, Copy)]
pub struct TokenExpiry {
    pub at: DateTime<Utc>,
    pub rotated: bool,
}

const TOKEN_EXPIRES_AT: HeaderName = HeaderName::from_static("x-token-expires-at");
const TOKEN_ROTATED: HeaderName = HeaderName::from_static("x-token-rotated");

fn add_headers(headers: &mut HeaderMap, https_only: bool) {
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    let is_html = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"text/html"));
    if is_html {
        // Never framed (clickjacking), no inline script, forms sent only here.
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
                 form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
            ),
        );
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        );
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if https_only {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
}

/// Routes `req` by its normalized path (see [`normalized`]). Paths without a query are
/// remembered per worker: a device polling `/api/me/` would otherwise pay for a new URI, its
/// routing copy and their parsing on every request.
fn normalize(req: &mut ServiceRequest) {
    let uri = req.uri();
    if uri.query().is_some() {
        if let Some(uri) = normalized(uri) {
            req.match_info_mut().get_mut().update(&uri);
            req.head_mut().uri = uri;
        }
        return;
    }
    let url = RECENT_PATHS.with_borrow_mut(|recent| recent.normalized(uri));
    if let Some(url) = url {
        req.head_mut().uri = url.uri().clone();
        *req.match_info_mut().get_mut() = url;
    }
}

/// How many normalized paths each worker remembers: a few hot ones are polled by every device,
/// the rest (paths with ids) come and go.
const RECENT_PATH_SLOTS: usize = 8;

thread_local! {
    static RECENT_PATHS: std::cell::RefCell<RecentPaths> = const {
        std::cell::RefCell::new(RecentPaths {
            slots: [const { None }; RECENT_PATH_SLOTS],
            next: 0,
        })
    };
}

/// Raw paths (no query) that needed normalizing, each with its routing form, replaced in turn.
struct RecentPaths {
    slots: [Option<(Box<str>, Url)>; RECENT_PATH_SLOTS],
    next: usize,
}

impl RecentPaths {
    /// The routing form of `uri` (which has no query), or `None` when it is already normal.
    fn normalized(&mut self, uri: &Uri) -> Option<Url> {
        let path = uri.path();
        let known = self.slots.iter().flatten().find(|(raw, _)| **raw == *path);
        if let Some((_, url)) = known {
            return Some(url.clone());
        }
        let url = Url::new(normalized(uri)?);
        self.slots[self.next] = Some((path.into(), url.clone()));
        self.next = (self.next + 1) % RECENT_PATH_SLOTS;
        Some(url)
    }
}

/// The URI with repeated slashes merged and trailing ones trimmed (the root stays `/`), or
/// `None` when it is already so, which is decided without allocating.
fn normalized(uri: &Uri) -> Option<Uri> {
    let path = uri.path();
    let trailing = path.len() > 1 && path.ends_with('/');
    if path.is_empty() || (!trailing && !path.contains("//")) {
        return None;
    }
    let mut clean = String::with_capacity(path.len() + uri.query().map_or(0, |q| q.len() + 1));
    for segment in path.split('/').filter(|segment| !segment.is_empty()) {
        clean.push('/');
        clean.push_str(segment);
    }
    if clean.is_empty() {
        clean.push('/');
    }
    if let Some(query) = uri.query() {
        clean.push('?');
        clean.push_str(query);
    }
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(PathAndQuery::from_maybe_shared(clean).ok()?);
    Uri::from_parts(parts).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normal(uri: &str) -> String {
        let uri: Uri = uri.parse().unwrap();
        normalized(&uri).map_or_else(|| format!("unchanged {uri}"), |uri| uri.to_string())
    }

    #[test]
    fn paths_lose_trailing_and_repeated_slashes_and_keep_their_query() {
        assert_eq!(normal("/api/me/"), "/api/me");
        assert_eq!(normal("/api//me///"), "/api/me");
        assert_eq!(normal("//"), "/");
        assert_eq!(
            normal("/api/tokens/?page=2&x=//"),
            "/api/tokens?page=2&x=//"
        );
        assert_eq!(normal("/api/me"), "unchanged /api/me");
        assert_eq!(normal("/"), "unchanged /");
        assert_eq!(normal("/a?b=/"), "unchanged /a?b=/");
    }

    #[test]
    fn remembered_paths_route_as_when_first_normalized_and_others_still_normalize() {
        let mut recent = RecentPaths {
            slots: [const { None }; RECENT_PATH_SLOTS],
            next: 0,
        };
        let mut route = |raw: &str| {
            let uri: Uri = raw.parse().unwrap();
            recent
                .normalized(&uri)
                .map(|url| (url.uri().to_string(), url.path().to_owned()))
        };
        let me = Some(("/api/me".to_owned(), "/api/me".to_owned()));
        assert_eq!(route("/api/me/"), me);
        assert_eq!(route("/api/me/"), me, "remembered: the same routing form");
        assert_eq!(route("/api/me"), None, "a normal path is left alone");
        // More distinct paths than slots: each is still normalized, the oldest forgotten.
        for n in 0..RECENT_PATH_SLOTS * 2 {
            let expected = format!("/api/tokens/{n}");
            assert_eq!(
                route(&format!("/api//tokens/{n}/")),
                Some((expected.clone(), expected))
            );
        }
        assert_eq!(route("/api/me/"), me, "normalized again once forgotten");
        assert_eq!(
            route("/a%2Fb/"),
            Some(("/a%2Fb".to_owned(), "/a%2Fb".to_owned())),
            "escapes are kept as the router expects them"
        );
    }
}
