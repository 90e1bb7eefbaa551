//! The access log: one line per request at info level on target `ACCESS_LOG`, with the method,
//! the path (never the query, which could hold a secret someone put there; a key pasted into the
//! path is cut out), the status, the time taken, a request id (also answered as `X-Request-Id`),
//! the client address and the id of the token that authenticated it (noted by
//! `routes::extract`). Fields are the `log` crate's key-values, so `MULTITOKEN_LOG_FORMAT=json`
//! writes each as its own JSON field. Left out of the stack when its level is off.

use std::{
    cell::Cell,
    future::{Future, Ready, ready},
    pin::Pin,
    rc::Rc,
    sync::atomic::{AtomicBool, Ordering::Relaxed},
    task::{Context, Poll},
    time::Instant,
};

use actix_web::{
    Error, HttpMessage,
    dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready},
    http::header::{HeaderName, HeaderValue},
};
use uuid::Uuid;

use crate::auth::redact::redact_keys;

/// Where the access log writes (`RUST_LOG=actix_web::middleware::logger=info` and wider; the
/// name actix-web's own logger used, so existing filters keep working).
pub const ACCESS_LOG: &str = "actix_web::middleware::logger";

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Whether the access log is in the stack, so that extractors skip looking for `LoggedToken`
/// when it is not (the look costs every authenticated request a map lookup).
static ON: AtomicBool = AtomicBool::new(false);

/// Whether the access log's level is on, noted for `note_token`. Asked once, at start-up: the
/// log is then in the stack (`AccessLog`) or not at all.
pub fn turned_on() -> bool {
    let on = log::log_enabled!(target: ACCESS_LOG, log::Level::Info);
    if on {
        ON.store(true, Relaxed);
    }
    on
}

/// The token a logged request authenticated with, noted for its line.
pub fn note_token(req: &actix_web::HttpRequest, token: Uuid) {
    if ON.load(Relaxed)
        && let Some(logged) = req.extensions().get::<LoggedToken>()
    {
        logged.0.set(Some(token));
    }
}

/// Put in a logged request's extensions: `note_token` writes the token's id.
#[derive(Clone, Default)]
struct LoggedToken(Rc<Cell<Option<Uuid>>>);

pub struct AccessLog;

impl<S, B> Transform<S, ServiceRequest> for AccessLog
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Transform = AccessLogMiddleware<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(AccessLogMiddleware { service }))
    }
}

pub struct AccessLogMiddleware<S> {
    service: S,
}

/// What the line needs from the request, taken before the request is handed on.
struct Started {
    at: Instant,
    id: Uuid,
    method: String,
    path: String,
    address: String,
    token: LoggedToken,
}

impl<S, B> Service<ServiceRequest> for AccessLogMiddleware<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Future = Logged<S::Future>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let token = LoggedToken::default();
        req.extensions_mut().insert(token.clone());
        let started = Started {
            at: Instant::now(),
            id: Uuid::now_v7(),
            method: req.method().to_string(),
            path: redact_keys(req.path()).into_owned(),
            address: req
                .peer_addr()
                .map(|peer| peer.ip().to_string())
                .unwrap_or_default(),
            token,
        };
        Logged {
            inner: self.service.call(req),
            started: Some(started),
        }
    }
}

pin_project_lite::pin_project! {
    pub struct Logged<F> {
        #[pin]
        inner: F,
        started: Option<Started>,
    }
}

impl<F, B> Future for Logged<F>
where
    F: Future<Output = Result<ServiceResponse<B>, Error>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        let Some(started) = this.started.take() else {
            return Poll::Ready(result);
        };
        let status = match &result {
            Ok(response) => {
                // As actix-web's logger did: which error made the answer, by name (the error
                // types' `Debug` names the variant only, never what the client sent).
                if let Some(error) = response.response().error() {
                    log::debug!(target: ACCESS_LOG, "Error in response: {error:?}");
                }
                response.status().as_u16()
            }
            Err(error) => error.as_response_error().status_code().as_u16(),
        };
        let micros = u64::try_from(started.at.elapsed().as_micros()).unwrap_or(u64::MAX);
        let token_id = started
            .token
            .0
            .get()
            .map(|id| id.to_string())
            .unwrap_or_default();
        let request_id = started.id.to_string();
        log::info!(
            target: ACCESS_LOG,
            method = started.method.as_str(),
            path = started.path.as_str(),
            status = status,
            duration_ms = micros as f64 / 1000.0,
            request_id = request_id.as_str(),
            token_id = token_id.as_str(),
            address = started.address.as_str();
            "{} \"{} {}\" {status} {:.3}ms",
            started.address,
            started.method,
            started.path,
            micros as f64 / 1000.0
        );
        let result = result.map(|mut response| {
            if let Ok(value) = HeaderValue::from_str(&request_id) {
                response.headers_mut().insert(REQUEST_ID, value);
            }
            response
        });
        Poll::Ready(result)
    }
}
