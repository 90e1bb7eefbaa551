//! `/account/password`: change your own password, optionally signing out every other session.

use actix_web::{HttpResponse, get, post, web};
use askama::Template;
use serde::Deserialize;

use super::error::WebError;
use super::{
    Layout, back_with, done,
    extract::{CsrfForm, SignedIn},
    render,
};
use crate::{services::users, state::AppState};

#[derive(Template)]
#[template(path = "account/password.html")]
struct PasswordPage {
    layout: Layout,
    min_chars: usize,
}

#[get("/account/password")]
pub async fn password_page(user: SignedIn) -> Result<HttpResponse, WebError> {
    render(&PasswordPage {
        layout: Layout::signed_in(&user, "account"),
        min_chars: users::PASSWORD_MIN_CHARS,
    })
}

#[derive(Deserialize)]
pub struct PasswordForm {
    current_password: String,
    new_password: String,
    confirm_password: String,
    /// A checkbox: `on` when ticked (see `checkbox`).
    #[serde(default, deserialize_with = "crate::routes::checkbox::deserialize")]
    sign_out_everywhere: bool,
}

#[post("/account/password")]
pub async fn change_password(
    state: web::Data<AppState>,
    user: SignedIn,
    form: CsrfForm<PasswordForm>,
) -> Result<HttpResponse, WebError> {
    let form = form.0;
    const BACK: &str = "/account/password";
    if form.new_password != form.confirm_password {
        return back_with(
            &user.session,
            BACK,
            WebError::Refused("The new password and its confirmation differ.".into()),
        );
    }
    // This browser stays signed in either way.
    let sign_out_others = form.sign_out_everywhere.then_some(user.auth.token.id);
    let changed = users::change_password(
        &state.db,
        &state.revocations,
        &state.throttle,
        &user.actor(),
        &user.auth.user,
        users::PasswordChange {
            current: form.current_password,
            new: form.new_password,
            sign_out_others,
        },
    )
    .await;
    match changed {
        Ok(0) => Ok(done(&user.session, "/tokens", "Password changed.")),
        Ok(ended) => Ok(done(
            &user.session,
            "/tokens",
            format!(
                "Password changed; {ended} other session{} signed out.",
                if ended == 1 { "" } else { "s" }
            ),
        )),
        Err(refusal) => back_with(&user.session, BACK, refusal),
    }
}
