//! The web UI: server-rendered pages for people, behind a session cookie. Every state change is
//! a POST form with a CSRF token, answered by a 303 redirect and a flash message.

pub mod access;
pub mod account;
pub mod admin;
pub mod assets;
pub mod chart;
pub mod error;
pub mod extract;
pub mod format;
pub mod pair;
pub mod session;
pub mod sign_in;
pub mod token;
pub mod tokens;

use actix_session::{
    SessionMiddleware,
    config::{CookieContentSecurity, PersistentSession, TtlExtensionPolicy},
    storage::CookieSessionStore,
};
use actix_web::{
    HttpResponse,
    cookie::{Key, SameSite},
    http::{StatusCode, header},
    web,
};
use askama::Template;

use crate::{
    routes::pages::error::WebError,
    routes::pages::session::{Flash, FlashLevel, WebSession},
    state::AppState,
};
use extract::SignedIn;

pub const SESSION_COOKIE: &str = "multitoken_session";
/// With `Secure`, the `__Host-` prefix also binds the cookie to this host: a sibling subdomain
/// cannot plant a session of its own.
pub const SECURE_SESSION_COOKIE: &str = "__Host-multitoken_session";

/// A key issued a moment ago, shown in the answer to the form that created it and nowhere else.
pub struct RevealedKey {
    pub token_name: String,
    /// Whose key it is, when an admin created it for someone else.
    pub owner: Option<String>,
    pub key: String,
}

/// What every page's frame shows: who is signed in, the CSRF token for its forms, and messages.
pub struct Layout {
    pub user: Option<NavUser>,
    pub csrf: String,
    pub flashes: Vec<Flash>,
    /// The navigation entry to mark as current.
    pub section: &'static str,
}

pub struct NavUser {
    pub name: String,
    pub is_admin: bool,
}

impl Layout {
    pub fn signed_in(user: &SignedIn, section: &'static str) -> Layout {
        Layout {
            user: Some(NavUser {
                name: user.auth.user.username.clone(),
                is_admin: user.auth.user.is_admin,
            }),
            csrf: user.session.csrf_token(),
            flashes: user.session.take_flashes(),
            section,
        }
    }

    pub fn anonymous(session: &WebSession) -> Layout {
        Layout {
            user: None,
            csrf: session.csrf_token(),
            flashes: session.take_flashes(),
            section: "",
        }
    }

    /// For error pages, which are drawn without access to the session.
    fn bare() -> Layout {
        Layout {
            user: None,
            csrf: String::new(),
            flashes: Vec::new(),
            section: "",
        }
    }
}

/// A page as a 200 HTML response.
pub fn render(page: &impl Template) -> Result<HttpResponse, WebError> {
    let html = page.render().map_err(WebError::internal)?;
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(html))
}

/// The sign-in page, coming back to `next` afterwards.
pub fn sign_in_url(next: Option<&str>) -> String {
    match next {
        Some(next) => format!(
            "/login?{}",
            serde_urlencoded::to_string([("next", next)]).unwrap_or_default()
        ),
        None => "/login".to_owned(),
    }
}

/// After a POST: go to `to` with a GET.
pub fn see_other(to: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, to.to_owned()))
        .finish()
}

/// A form the domain refused goes back where it came from, with the reason as a flash message;
/// anything else (a database failure) is an error page.
pub fn back_with(
    session: &WebSession,
    to: &str,
    error: impl Into<WebError>,
) -> Result<HttpResponse, WebError> {
    match error.into() {
        WebError::Refused(message) => {
            session.flash(FlashLevel::Error, message);
            Ok(see_other(to))
        }
        other => Err(other),
    }
}

pub fn done(session: &WebSession, to: &str, message: impl Into<String>) -> HttpResponse {
    session.flash(FlashLevel::Success, message);
    see_other(to)
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    layout: Layout,
    status: u16,
    title: &'a str,
    message: &'a str,
}

/// The HTML error page for browser routes.
pub fn error_page(status: StatusCode, title: &str, message: &str) -> HttpResponse {
    let page = ErrorPage {
        layout: Layout::bare(),
        status: status.as_u16(),
        title,
        message,
    };
    let body = page.render().unwrap_or_else(|e| {
        log::error!("error page did not render: {e}");
        format!("{} {title}", status.as_u16())
    });
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(body)
}

/// The session cookie: encrypted and signed with `MULTITOKEN_SECRET_KEY`, `HttpOnly`,
/// `SameSite=Lax`, `Secure` when configured, and dropped by the browser after the idle time
/// (which the server enforces on its own as well; see `extract::SignedIn`).
pub fn session_middleware(state: &AppState) -> SessionMiddleware<CookieSessionStore> {
    let idle = i64::try_from(state.session_idle.as_secs()).unwrap_or(i64::MAX);
    SessionMiddleware::builder(
        CookieSessionStore::default(),
        Key::from(state.secret_key.as_bytes()),
    )
    .cookie_name(if state.cookie_secure {
        SECURE_SESSION_COOKIE.to_owned()
    } else {
        SESSION_COOKIE.to_owned()
    })
    .cookie_http_only(true)
    .cookie_same_site(SameSite::Lax)
    .cookie_secure(state.cookie_secure)
    .cookie_content_security(CookieContentSecurity::Private)
    .session_lifecycle(
        PersistentSession::default()
            .session_ttl(actix_web::cookie::time::Duration::seconds(idle))
            .session_ttl_extension_policy(TtlExtensionPolicy::OnEveryRequest),
    )
    .build()
}

/// The pages, inside one scope that carries the session middleware (the JSON API never sees a cookie).
pub fn configure(cfg: &mut web::ServiceConfig, state: &AppState) {
    cfg.service(assets::stylesheet)
        .service(assets::script)
        .service(
            web::scope("")
                .wrap(session_middleware(state))
                .service(sign_in::home)
                .service(sign_in::login_page)
                .service(sign_in::login)
                .service(sign_in::logout)
                .service(tokens::tokens_page)
                .service(tokens::create_token)
                .service(tokens::delete_token_page)
                .service(token::token_page)
                .service(token::change_token)
                .service(token::rotate_key)
                .service(tokens::delete_token)
                .service(pair::pair_page)
                .service(pair::look_up_code)
                .service(pair::decide)
                .service(account::password_page)
                .service(account::change_password)
                .service(admin::overview_page)
                .service(admin::users_page)
                .service(admin::create_user)
                .service(admin::deactivate_user)
                .service(admin::activate_user)
                .service(admin::revoke_all_page)
                .service(admin::revoke_all)
                .service(admin::tokens_page)
                .service(admin::revoke_token_page)
                .service(admin::revoke_token)
                .service(admin::audit_page),
        );
}
