//! Signing in and out of the web UI. A web sign-in is a session token like a phone's, named
//! "browser …": it shows in the token list, can be revoked like any other, and ends with logout.

use actix_web::{HttpResponse, get, post, web};
use askama::Template;
use serde::Deserialize;

use super::session::{FlashLevel, WebSession};
use super::{
    Layout, back_with, done,
    extract::{CsrfForm, SignedIn},
    render, see_other, sign_in_url,
};
use crate::{
    routes::extract::ClientAddress,
    routes::pages::error::WebError,
    services::{
        audit::Actor,
        login::{Credentials, LoggedIn, log_in},
        now,
        tokens::{self, NewToken, Removal},
    },
    state::AppState,
    verify::Attempt,
};

/// `/`: the token list for a signed-in user, the sign-in page for anyone else.
#[get("/")]
pub async fn home(session: WebSession) -> HttpResponse {
    if session.token_key().is_some() {
        see_other(DEFAULT_NEXT)
    } else {
        see_other("/login")
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    layout: Layout,
    next: String,
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// Where a sign-in leads when nothing else was asked for.
const DEFAULT_NEXT: &str = "/tokens";

/// Only a path on this site: `/tokens?x=1`, never `//evil.example` or `https://…`.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.contains('\\')
                && !path.chars().any(char::is_control) =>
        {
            path
        }
        _ => DEFAULT_NEXT,
    }
}

#[get("/login")]
pub async fn login_page(
    session: WebSession,
    query: web::Query<NextQuery>,
) -> Result<HttpResponse, WebError> {
    let next = safe_next(query.next.as_deref()).to_owned();
    if session.token_key().is_some() {
        return Ok(see_other(&next));
    }
    render(&LoginPage {
        layout: Layout::anonymous(&session),
        next,
    })
}

#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    next: Option<String>,
}

#[post("/login")]
pub async fn login(
    state: web::Data<AppState>,
    session: WebSession,
    client: ClientAddress,
    form: CsrfForm<LoginForm>,
) -> Result<HttpResponse, WebError> {
    let form = form.0;
    let next = safe_next(form.next.as_deref()).to_owned();
    // Back to the form, keeping where to go afterwards unless that is the default.
    let retry = sign_in_url(Some(next.as_str()).filter(|next| *next != DEFAULT_NEXT));
    let new = NewToken::browser_session(&state.policy);
    let credentials = Credentials {
        username: &form.username,
        password: form.password,
        address: client.text(),
    };
    let logged_in = log_in(
        &state.db,
        &state.revocations,
        &state.policy,
        &state.throttle,
        credentials,
        new,
    )
    .await;
    let LoggedIn { user, issued } = match logged_in {
        Ok(logged_in) => logged_in,
        Err(refusal) => return back_with(&session, &retry, refusal),
    };
    end_previous_sign_in(&state, &session, &client).await?;
    session.sign_in(&issued.key, now().timestamp());
    Ok(done(
        &session,
        &next,
        format!("Signed in as {}.", user.username),
    ))
}

/// Signing in over an existing sign-in replaces it: the old session token goes, rather than
/// linger unreachable until it expires.
async fn end_previous_sign_in(
    state: &AppState,
    session: &WebSession,
    client: &ClientAddress,
) -> Result<(), WebError> {
    let Some(previous) = session.token_key() else {
        return Ok(());
    };
    let Ok(previous) = state
        .verifier
        .verify_text(&previous, &Attempt::Inspect)
        .await
    else {
        return Ok(()); // Already revoked or expired.
    };
    let actor = Actor::user(&previous.user, client.text());
    let why = Removal::LoggedOut;
    tokens::end_session(
        &state.db,
        &state.revocations,
        &actor,
        &previous.user,
        previous.token.id,
        why,
    )
    .await?;
    Ok(())
}

#[derive(Deserialize)]
pub struct LogoutForm {}

/// Ends this browser's sign-in and deletes its session token.
#[post("/logout")]
pub async fn logout(
    state: web::Data<AppState>,
    user: SignedIn,
    _form: CsrfForm<LogoutForm>,
) -> Result<HttpResponse, WebError> {
    let actor = user.actor();
    let why = Removal::LoggedOut;
    tokens::end_session(
        &state.db,
        &state.revocations,
        &actor,
        &user.auth.user,
        user.auth.token.id,
        why,
    )
    .await?;
    user.session.end();
    user.session
        .flash(FlashLevel::Success, "You have signed out.");
    Ok(see_other("/login"))
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        assert_eq!(safe_next(Some("/admin/users")), "/admin/users");
        assert_eq!(safe_next(Some("/tokens?x=1")), "/tokens?x=1");
        for hostile in [
            "//evil.example",
            "https://evil.example",
            "/\\evil.example",
            "javascript:alert(1)",
            "",
            "/a\nb",
        ] {
            assert_eq!(safe_next(Some(hostile)), "/tokens", "{hostile:?}");
        }
        assert_eq!(safe_next(None), "/tokens");
    }
}
