//! Routing: every handler is registered here, and the OpenAPI document is collected from them.

pub mod access_log;
pub mod api;
pub mod body;
pub mod checkbox;
pub mod extract;
pub mod forward_auth;
pub mod health;
pub mod in_flight;
pub mod metrics;
pub mod middleware;
pub mod pages;
pub mod paths;

use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use utoipa::{
    Modify, OpenApi,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};
use utoipa_actix_web::service_config::ServiceConfig;

use crate::{error::ApiError, routes::pages::error::WebError};

#[derive(OpenApi)]
#[openapi(
    info(title = "multitoken", description = "Many named API tokens per user."),
    modifiers(&TokenSecurity)
)]
pub struct ApiDoc;

/// `Authorization: Token KEY` is accepted too; OpenAPI can describe only the Bearer form.
struct TokenSecurity;

impl Modify for TokenSecurity {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("mt_…")
                    .build(),
            ),
        );
    }
}

/// Paths are registered without a trailing slash; `middleware::Essentials` makes `/api/me/` and
/// `/api/me` the same route.
pub fn configure(cfg: &mut ServiceConfig) {
    // The paths called on every request of every device come first: actix-web tries routes in
    // order (and again for `/metrics`' route label), and each pattern with a `{param}` tried
    // before the match is a regex run; behind it, `/auth/verify` spent a tenth of its time there.
    cfg.service(forward_auth::verify_token)
        .service(api::session::me)
        .service(api::introspect::introspect_token)
        .service(health::healthz)
        .service(health::readyz)
        .service(api::session::create_session_token)
        .service(api::session::create_non_expiring_token)
        .service(api::session::logout)
        .service(api::session::logout_by_get)
        .service(api::session::logout_all)
        .service(api::tokens::list_tokens)
        .service(api::tokens::create_token)
        .service(api::tokens::delete_token)
        .service(api::tokens::change_token)
        // Before `{id}/rotate`, whose `{id}` would refuse `self` as no UUID.
        .service(api::tokens::rotate_self)
        .service(api::tokens::rotate_token)
        .service(api::usage::token_usage)
        .service(api::usage::all_usage)
        .service(api::admin::list_all_tokens)
        .service(api::admin::revoke_token)
        .service(api::admin::rotate_token)
        .service(api::admin::revoke_all_user_tokens)
        .service(api::admin::deactivate_user)
        .service(api::admin::activate_user)
        .service(api::admin::list_users)
        .service(api::admin::create_user)
        .service(api::admin::delete_user)
        .service(api::admin::export_audit_events)
        .service(api::admin::list_audit_events)
        .service(api::pairing::start_pairing)
        .service(api::pairing::collect_token)
        .service(api::pairing::approve_pairing)
        .service(api::pairing::deny_pairing)
        .service(metrics::metrics);
}

/// Serves the OpenAPI document collected from the handlers, serialized once per worker (and
/// shared, not copied, by each answer).
pub fn openapi_document(mut api: utoipa::openapi::OpenApi) -> actix_web::Resource {
    mark_optional_bodies(&mut api);
    let body = web::Bytes::from(api.to_json().unwrap_or_else(|e| {
        log::error!("OpenAPI document did not serialize: {e}");
        "{}".to_owned()
    }));
    web::resource("/api/openapi.json").route(web::get().to(move || {
        let body = body.clone();
        async move {
            HttpResponse::Ok()
                .content_type("application/json")
                .body(body)
        }
    }))
}

/// POSTs whose body fields all have defaults: an empty body is accepted (see `body::decode`),
/// which utoipa's `request_body` cannot express.
const OPTIONAL_BODIES: [&str; 4] = [
    "/api/logout-all",
    "/api/tokens/self/rotate",
    "/api/tokens/{id}/rotate",
    "/api/admin/tokens/{id}/rotate",
];

fn mark_optional_bodies(api: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{RefOr, Required};
    for path in OPTIONAL_BODIES {
        let operation = api
            .paths
            .paths
            .get_mut(path)
            .and_then(|item| item.post.as_mut());
        if let Some(RefOr::T(body)) = operation.and_then(|op| op.request_body.as_mut()) {
            body.required = Some(Required::False);
        }
    }
}

/// Machine paths answer JSON; everything else is a page for people and answers HTML.
pub fn is_api_path(path: &str) -> bool {
    let under = |prefix: &str| {
        path.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    under("/api") || under("/auth") || path == "/healthz" || path == "/readyz"
}

/// Anything unrouted: 405 with `Allow` when the path exists under other methods, else 404 (an
/// HTML page outside the API).
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    log::debug!("no route for {} {}", req.method(), req.path());
    if !is_api_path(req.path()) {
        return WebError::NotFound.error_response();
    }
    let allowed = req
        .app_data::<web::Data<KnownRoutes>>()
        .map(|known| known.methods_for(req.path()))
        .unwrap_or_default();
    if allowed.is_empty() {
        ApiError::NotFound("not found".into()).error_response()
    } else {
        ApiError::MethodNotAllowed(allowed).error_response()
    }
}

/// The documented paths and their methods, so that a wrong method on a real path is told apart
/// from a path that does not exist. Built from the OpenAPI document: one list of routes, not two.
pub struct KnownRoutes(Vec<(Vec<String>, Vec<&'static str>)>);

impl KnownRoutes {
    pub fn from_openapi(api: &utoipa::openapi::OpenApi) -> KnownRoutes {
        let routes = api
            .paths
            .paths
            .iter()
            .map(|(path, item)| {
                let operations = [
                    ("GET", &item.get),
                    ("POST", &item.post),
                    ("PUT", &item.put),
                    ("PATCH", &item.patch),
                    ("DELETE", &item.delete),
                ];
                let methods = operations
                    .into_iter()
                    .filter_map(|(method, operation)| operation.as_ref().map(|_| method))
                    .collect();
                (segments(path).map(str::to_owned).collect(), methods)
            })
            .collect();
        KnownRoutes(routes)
    }

    /// Methods served at `path` (empty when no documented path matches it).
    pub fn methods_for(&self, path: &str) -> Vec<&'static str> {
        let wanted: Vec<&str> = segments(path).collect();
        let mut methods: Vec<&'static str> = self
            .0
            .iter()
            .filter(|(template, _)| {
                template.len() == wanted.len()
                    && template
                        .iter()
                        .zip(&wanted)
                        .all(|(t, w)| t.starts_with('{') || t == w)
            })
            .flat_map(|(_, methods)| methods.iter().copied())
            .collect();
        methods.sort_unstable();
        methods.dedup();
        methods
    }
}

fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|segment| !segment.is_empty())
}

/// Path parameters that do not parse (a malformed token id) name nothing that exists: 404.
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|_, req| {
        if is_api_path(req.path()) {
            ApiError::NotFound("not found".into()).into()
        } else {
            WebError::NotFound.into()
        }
    })
}

pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|e, req| {
        if is_api_path(req.path()) {
            ApiError::BadRequest(format!("invalid query string: {e}")).into()
        } else {
            WebError::BadRequest("The address has an invalid query string.".into()).into()
        }
    })
}
