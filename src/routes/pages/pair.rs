//! `/pair`: approving a device's pairing in the browser. The person signs in (and comes back
//! here), types the code the device shows (a link may fill it in), sees what the device asked
//! for and until when, chooses the token's name, expiry and access, and approves or denies.

use actix_web::{HttpResponse, get, post, web};
use askama::Template;
use serde::Deserialize;

use super::{
    Layout, back_with, done,
    extract::{CsrfForm, SignedIn},
    format, render,
    session::FlashLevel,
    tokens::{TermsDefaults, TermsForm},
};
use crate::{
    routes::pages::error::WebError,
    services::{
        now,
        pairing::{self, Approval},
        tokens::{TokenError, TokenName},
    },
    state::AppState,
};

#[derive(Template)]
#[template(path = "pair/enter.html")]
struct EnterPage {
    layout: Layout,
    code: String,
}

#[derive(Template)]
#[template(path = "pair/approve.html")]
struct ApprovePage {
    layout: Layout,
    code: String,
    suggested_name: String,
    device_address: String,
    expires: String,
    expires_exact: String,
    terms: TermsDefaults,
}

#[derive(Deserialize)]
pub struct CodeQuery {
    #[serde(default)]
    code: String,
}

/// Where a refused code goes back to: the form, with what was typed still in it.
fn enter_again(code: &str) -> String {
    let typed: String = code.chars().take(32).collect();
    format!(
        "/pair?{}",
        serde_urlencoded::to_string([("code", typed)]).unwrap_or_default()
    )
}

#[get("/pair")]
pub async fn pair_page(
    user: SignedIn,
    query: web::Query<CodeQuery>,
) -> Result<HttpResponse, WebError> {
    render(&EnterPage {
        layout: Layout::signed_in(&user, "pair"),
        code: query.into_inner().code.chars().take(32).collect(),
    })
}

#[derive(Deserialize)]
pub struct CodeForm {
    #[serde(default)]
    code: String,
}

/// The code typed: a wrong one counts like a failed sign-in; the right one shows what the
/// device asked for.
#[post("/pair")]
pub async fn look_up_code(
    state: web::Data<AppState>,
    user: SignedIn,
    form: CsrfForm<CodeForm>,
) -> Result<HttpResponse, WebError> {
    let code = form.0.code;
    let pending = match pairing::look_up(&state.db, &state.throttle, &user.actor(), &code).await {
        Ok(pending) => pending,
        Err(refusal) => return back_with(&user.session, &enter_again(&code), refusal),
    };
    let at = now();
    render(&ApprovePage {
        layout: Layout::signed_in(&user, "pair"),
        code: pending.user_code.display(),
        suggested_name: pending.suggested_name.unwrap_or_default(),
        device_address: pending.device_address.unwrap_or_default(),
        expires: format::expiry(Some(pending.expires_at), at),
        expires_exact: format::exact(pending.expires_at),
        terms: TermsDefaults::new(&state, at),
    })
}

#[derive(Deserialize)]
pub struct DecisionForm {
    code: String,
    /// `approve` or `deny`: the button pressed.
    decision: String,
    #[serde(default)]
    name: String,
    #[serde(flatten)]
    terms: TermsForm,
}

#[post("/pair/decision")]
pub async fn decide(
    state: web::Data<AppState>,
    user: SignedIn,
    form: CsrfForm<DecisionForm>,
) -> Result<HttpResponse, WebError> {
    let DecisionForm {
        code,
        decision,
        name,
        terms,
    } = form.0;
    let back = enter_again(&code);
    if decision == "deny" {
        return match pairing::deny(&state.db, &state.throttle, &user.actor(), &code).await {
            Ok(()) => Ok(done(
                &user.session,
                "/tokens",
                "Pairing denied: the device gets no token.",
            )),
            Err(refusal) => back_with(&user.session, &back, refusal),
        };
    }
    if decision != "approve" {
        return Err(WebError::BadRequest("Choose Approve or Deny.".into()));
    }
    let name = match name.trim() {
        "" => None,
        typed => match TokenName::parse(typed) {
            Ok(name) => Some(name),
            Err(refusal) => return back_with(&user.session, &back, TokenError::from(refusal)),
        },
    };
    let token = match terms.new_token(name, now()) {
        Ok(token) => token,
        Err(refusal) => return back_with(&user.session, &back, refusal),
    };
    let approval = Approval { code: &code, token };
    let paired = pairing::approve(
        &state.db,
        &state.revocations,
        &state.policy,
        &state.throttle,
        &user.actor(),
        &user.auth.user,
        approval,
    )
    .await;
    match paired {
        Ok(token) => {
            user.session.flash(
                FlashLevel::Success,
                format!(
                    "Device paired as \u{201c}{}\u{201d}. It collects its key on its next check, within a few seconds.",
                    token.name
                ),
            );
            Ok(super::see_other(&format!("/tokens/{}", token.id)))
        }
        Err(refusal) => back_with(&user.session, &back, refusal),
    }
}
