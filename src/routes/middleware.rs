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
    Error, HttpMessage, HttpResponse, ResponseError,
    dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready},
    http::{
        ConnectionType, StatusCode,
        header::{self, HeaderMap, HeaderName, HeaderValue},
    },
};
use chrono::{DateTime, Utc};
use futures_util::future::Either;

use super::{
    api::timestamp,
    in_flight::{self, InFlight},
    paths::normalize,
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
    /// The request, counted, and whether it may be served (not once a stop has closed).
    fn new(worker: &Rc<WorkerEssentials>) -> (Counted, bool) {
        let admitted = worker.requests.begin();
        (Counted(worker.clone()), admitted)
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
    type Future = Either<WithHeaders<S::Future>, Ready<Result<Self::Response, Error>>>;

    forward_ready!(service);

    fn call(&self, mut req: ServiceRequest) -> Self::Future {
        let started = Instant::now();
        let (request, admitted) = Counted::new(&self.worker);
        if !admitted {
            // An error rather than an answer of its own, so that the answer's body type stays
            // the handlers' (a second body type costs every request).
            let https_only = self.worker.https_only;
            return Either::Right(ready(Err(Stopping { https_only }.into())));
        }
        normalize(&mut req);
        Either::Left(WithHeaders {
            started,
            request,
            inner: self.service.call(req),
        })
    }
}

/// A request that arrives on an open connection after a stop has closed the server: not served
/// (its worker may be about to stop), and its connection closed.
#[derive(Debug, thiserror::Error)]
#[error("The server is stopping")]
struct Stopping {
    /// Answered with the headers every answer has, HSTS included.
    https_only: bool,
}

impl ResponseError for Stopping {
    fn status_code(&self) -> StatusCode {
        StatusCode::SERVICE_UNAVAILABLE
    }

    fn error_response(&self) -> HttpResponse {
        let mut answer = HttpResponse::ServiceUnavailable();
        answer.force_close();
        answer.insert_header((header::RETRY_AFTER, HeaderValue::from_static("1")));
        let mut answer = answer.json(serde_json::json!({"error": self.to_string()}));
        add_headers(answer.headers_mut(), self.https_only);
        answer
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

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use actix_web::{App, http::StatusCode, test, web};
    use tokio::sync::Notify;

    use super::*;

    fn essentials(https_only: bool, in_flight: &InFlight) -> Essentials {
        Essentials {
            https_only,
            metrics: Arc::new(Metrics::default()),
            in_flight: in_flight.clone(),
        }
    }

    /// The answer the server gives for a request refused as an error (`error_response`).
    async fn refusal<S, R, B>(app: &S, request: R) -> HttpResponse
    where
        S: Service<R, Response = ServiceResponse<B>, Error = Error>,
    {
        test::try_call_service(app, request)
            .await
            .err()
            .expect("closed: refused")
            .error_response()
    }

    #[actix_web::test]
    async fn requests_are_counted_until_answered_or_dropped_and_a_stop_closes_then_refuses() {
        let in_flight = InFlight::default();
        let release = Arc::new(Notify::new());
        let served = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        // `/wait` answers once `release` is notified, `/now` at once; `served` counts `/now`.
        let app = test::init_service(
            App::new()
                .wrap(essentials(false, &in_flight))
                .route(
                    "/wait",
                    web::get().to({
                        let release = release.clone();
                        move || {
                            let release = release.clone();
                            async move {
                                release.notified().await;
                                HttpResponse::Ok().finish()
                            }
                        }
                    }),
                )
                .route(
                    "/now",
                    web::get().to({
                        let served = served.clone();
                        move || {
                            served.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            async { HttpResponse::Ok().finish() }
                        }
                    }),
                ),
        )
        .await;

        let waiting = app.call(test::TestRequest::get().uri("/wait").to_request());
        let mut waiting = Box::pin(waiting);
        assert!(
            futures_util::poll!(waiting.as_mut()).is_pending(),
            "the handler waits"
        );
        assert_eq!(in_flight.count(), 1, "a request being served is in flight");
        release.notify_one();
        let answered = waiting.await.unwrap();
        assert_eq!(answered.status(), StatusCode::OK);
        assert_eq!(in_flight.count(), 0, "answered: no longer in flight");
        assert!(
            answered.response().head().connection_type() != ConnectionType::Close,
            "keep-alive while serving"
        );

        let mut abandoned = Box::pin(app.call(test::TestRequest::get().uri("/wait").to_request()));
        assert!(futures_util::poll!(abandoned.as_mut()).is_pending());
        assert_eq!(in_flight.count(), 1);
        drop(abandoned);
        assert_eq!(
            in_flight.count(),
            0,
            "a dropped request is not left counted"
        );

        in_flight.start_draining();
        let draining =
            test::call_service(&app, test::TestRequest::get().uri("/now").to_request()).await;
        assert_eq!(
            draining.status(),
            StatusCode::OK,
            "still served while draining"
        );
        assert_eq!(
            draining.response().head().connection_type(),
            ConnectionType::Close,
            "but its connection closes"
        );
        assert!(
            in_flight.drain(Duration::from_secs(1)).await,
            "nothing in flight"
        );
        // Refused as an error, which the server turns into this answer (`error_response`).
        let refused = refusal(&app, test::TestRequest::get().uri("/now").to_request()).await;
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.head().connection_type(), ConnectionType::Close);
        assert_eq!(refused.headers().get(header::RETRY_AFTER).unwrap(), "1");
        assert_eq!(
            refused.headers().get(header::CACHE_CONTROL).unwrap(),
            "no-store"
        );
        assert_eq!(
            served.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "the refused request never reached its handler"
        );
        let body = actix_web::body::to_bytes(refused.into_body())
            .await
            .unwrap();
        assert_eq!(body, r#"{"error":"The server is stopping"}"#);
        assert_eq!(in_flight.count(), 0);
    }

    #[actix_web::test]
    async fn the_refusal_of_a_closed_server_keeps_hsts_when_only_https_is_served() {
        let in_flight = InFlight::default();
        let app = test::init_service(
            App::new()
                .wrap(essentials(true, &in_flight))
                .route("/now", web::get().to(HttpResponse::Ok)),
        )
        .await;
        let served =
            test::call_service(&app, test::TestRequest::get().uri("/now").to_request()).await;
        assert_eq!(
            served
                .headers()
                .get(header::STRICT_TRANSPORT_SECURITY)
                .unwrap(),
            "max-age=31536000"
        );
        in_flight.start_draining();
        assert!(in_flight.drain(Duration::from_secs(1)).await);
        let refused = refusal(&app, test::TestRequest::get().uri("/now").to_request()).await;
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            refused
                .headers()
                .get(header::STRICT_TRANSPORT_SECURITY)
                .map(|v| v.as_bytes()),
            Some(&b"max-age=31536000"[..]),
            "the stop's 503 carries HSTS like every other answer"
        );
    }
}
