//! `/tokens/{id}`: one of the owner's tokens — its whole policy, its last use (time, address,
//! user agent), the attempts its policy refused — and the form that changes its name and policy.

use actix_web::{HttpResponse, get, post, web};
use askama::Template;
use serde::Deserialize;
use uuid::Uuid;

use super::{
    Layout, RevealedKey,
    access::{AccessForm, networks},
    admin::AuditRow,
    back_with,
    chart::UsageChart,
    done,
    extract::{CsrfForm, SignedIn},
    format, render,
    tokens::TokenRow,
};
use crate::{
    entities::audit_events,
    routes::pages::error::WebError,
    services::{
        audit::{self, Action},
        now,
        tokens::{
            self, Grace, RotatedBy, TokenChange, TokenError, TokenName, policy::Policy, usage,
        },
    },
    state::AppState,
};

/// Refused attempts shown on the page, newest first.
const REFUSALS_SHOWN: u64 = 20;
/// Audit events about the token shown on its page, newest first.
const HISTORY_SHOWN: u64 = 20;
/// The days the usage chart covers.
const CHART_DAYS: i64 = 7;

pub struct RefusedRow {
    pub when: String,
    pub when_exact: String,
    pub reason: String,
    pub address: String,
}

impl RefusedRow {
    fn new(event: audit_events::Model, at: chrono::DateTime<chrono::Utc>) -> RefusedRow {
        let address = event.client_address.unwrap_or_default();
        let detail = event.detail.unwrap_or_default();
        // The detail repeats the address for the log's readers; here it has its own column.
        let reason = detail
            .strip_suffix(&format!(" (from {address})"))
            .unwrap_or(&detail)
            .to_owned();
        RefusedRow {
            when: format::relative(event.occurred_at, at),
            when_exact: format::exact(event.occurred_at),
            reason,
            address,
        }
    }
}

#[derive(Template)]
#[template(path = "tokens/show.html")]
struct TokenPage {
    layout: Layout,
    token: TokenRow,
    description: String,
    read_only: bool,
    scopes: String,
    /// The allowed networks as shown; empty means anywhere.
    networks: String,
    /// What the edit form's networks field holds: empty for a pinning token (its pinned
    /// network is not the owner's to type; see `AccessForm::change`).
    networks_field: String,
    pin_ip: bool,
    awaits_pin: bool,
    idle_expiry_days: String,
    /// Requests per minute, empty for none.
    rate_limit_per_minute: String,
    remaining_uses: Option<i64>,
    metadata: String,
    last_used_address: String,
    last_used_agent: String,
    refused: Vec<RefusedRow>,
    /// After a rotation: until when the previous key still works (relative, exact).
    previous_key_until: Option<(String, String)>,
    /// A key issued by a rotation a moment ago, shown in this answer only.
    revealed: Option<RevealedKey>,
    /// Uses and refusals per hour over the last week.
    chart: UsageChart,
    /// What was done to it (created, changed, rotated, refused…), newest first.
    history: Vec<AuditRow>,
    /// The grace choices of the Rotate form, in seconds, with their labels.
    grace_choices: [(u64, &'static str); 4],
}

/// What the Rotate form offers: now (a leaked key), an hour, a day, a week.
const GRACE_CHOICES: [(u64, &str); 4] = [
    (0, "Now (the key leaked)"),
    (3600, "In 1 hour"),
    (86_400, "In 24 hours"),
    (604_800, "In 7 days"),
];

async fn find(state: &AppState, user: &SignedIn, id: Uuid) -> Result<TokenPage, WebError> {
    // Before the read: see `LastUsed::unwritten_of`.
    let unwritten = state.verifier.last_used().unwritten_of(&[id]);
    let mut token = match tokens::find_own(&state.db, user.auth.user.id, id).await {
        Ok(token) => token,
        Err(TokenError::NotFound) => return Err(WebError::NotFound),
        Err(e) => return Err(e.into()),
    };
    unwritten.overlay(std::iter::once(&mut token));
    let at = now();
    let history = audit::history_of_token(&state.db, id, HISTORY_SHOWN)
        .await
        .map_err(WebError::internal)?
        .into_iter()
        .map(|event| AuditRow::new(event, at))
        .collect();
    let refused = audit::about_token(&state.db, id, Action::TokenRefused, REFUSALS_SHOWN)
        .await
        .map_err(WebError::internal)?
        .into_iter()
        .map(|event| RefusedRow::new(event, at))
        .collect();
    let days = usage::Days::parse(Some(CHART_DAYS)).map_err(WebError::internal)?;
    let hours = usage::of_token(&state.db, id, days).await?;
    let chart = UsageChart::hourly(&hours, CHART_DAYS, at);
    let access = Policy::of(&token);
    let metadata = serde_json::to_string_pretty(access.metadata()).unwrap_or_default();
    let previous_key_until = token
        .previous_key_expires_at
        .filter(|until| token.previous_key_digest.is_some() && *until > at)
        .map(|until| (format::relative(until, at), format::exact(until)));
    Ok(TokenPage {
        chart,
        history,
        layout: Layout::signed_in(user, "tokens"),
        description: access.description().to_owned(),
        read_only: access.read_only(),
        scopes: access.scopes().join(" "),
        networks: networks(&access),
        networks_field: if access.pin_ip() {
            String::new()
        } else {
            networks(&access).replace(' ', "\n")
        },
        pin_ip: access.pin_ip(),
        awaits_pin: access.awaits_pin(),
        idle_expiry_days: access
            .idle_expiry_days()
            .map(|days| days.to_string())
            .unwrap_or_default(),
        rate_limit_per_minute: access
            .rate_limit_per_minute()
            .map(|limit| limit.to_string())
            .unwrap_or_default(),
        remaining_uses: access.remaining_uses(),
        metadata,
        last_used_address: token.last_used_ip.clone().unwrap_or_default(),
        last_used_agent: token.last_used_user_agent.clone().unwrap_or_default(),
        refused,
        previous_key_until,
        revealed: None,
        grace_choices: GRACE_CHOICES,
        token: TokenRow::new(token, at, Some(user.auth.token.id)),
    })
}

#[get("/tokens/{id}")]
pub async fn token_page(
    state: web::Data<AppState>,
    user: SignedIn,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, WebError> {
    render(&find(&state, &user, *id).await?)
}

#[derive(Deserialize)]
pub struct TokenForm {
    name: String,
    /// A JSON object; empty is `{}`.
    #[serde(default)]
    metadata: String,
    #[serde(flatten)]
    access: AccessForm,
}

/// Saves the name and policy; every instance applies them from the next request on (the change
/// is finished through `Revocations`, like a revocation).
#[post("/tokens/{id}")]
pub async fn change_token(
    state: web::Data<AppState>,
    user: SignedIn,
    id: web::Path<Uuid>,
    form: CsrfForm<TokenForm>,
) -> Result<HttpResponse, WebError> {
    let id = id.into_inner();
    let here = format!("/tokens/{id}");
    let current = match tokens::find_own(&state.db, user.auth.user.id, id).await {
        Ok(token) => Policy::of(&token),
        Err(TokenError::NotFound) => return Err(WebError::NotFound),
        Err(e) => return Err(e.into()),
    };
    let form = form.0;
    let change = TokenName::parse(&form.name).and_then(|name| {
        Ok(TokenChange {
            name: Some(name),
            access: form.access.change(&current, &form.metadata)?,
        })
    });
    let change = match change {
        Ok(change) => change,
        Err(invalid) => return back_with(&user.session, &here, TokenError::from(invalid)),
    };
    let updated = tokens::update_own(
        &state.db,
        &state.revocations,
        &user.actor(),
        &user.auth.user,
        id,
        change,
    )
    .await;
    match updated {
        Ok(token) => Ok(done(
            &user.session,
            &here,
            format!("Token \u{201c}{}\u{201d} saved.", token.name),
        )),
        Err(refusal) => back_with(&user.session, &here, refusal),
    }
}

#[derive(Deserialize)]
pub struct RotateForm {
    /// Seconds the previous key keeps working: one of `GRACE_CHOICES`.
    grace: String,
}

/// Gives the token a new key and shows it once, in this answer (200, `no-store`), on the token's
/// page, which also says until when the previous key works.
#[post("/tokens/{id}/rotate")]
pub async fn rotate_key(
    state: web::Data<AppState>,
    user: SignedIn,
    id: web::Path<Uuid>,
    form: CsrfForm<RotateForm>,
) -> Result<HttpResponse, WebError> {
    let id = id.into_inner();
    let here = format!("/tokens/{id}");
    let grace = form
        .0
        .grace
        .parse::<u64>()
        .ok()
        .filter(|seconds| GRACE_CHOICES.iter().any(|(choice, _)| choice == seconds))
        .and_then(|seconds| Grace::seconds(seconds as i64).ok());
    let Some(grace) = grace else {
        return back_with(
            &user.session,
            &here,
            TokenError::from(crate::services::Invalid::new(
                "grace",
                "is not one of the choices",
            )),
        );
    };
    let rotated = tokens::rotate(
        &state.db,
        &state.revocations,
        &user.actor(),
        RotatedBy::Owner(&user.auth.user),
        id,
        grace,
    )
    .await;
    let rotated = match rotated {
        Ok(rotated) => rotated,
        Err(TokenError::NotFound) => return Err(WebError::NotFound),
        Err(refusal) => return back_with(&user.session, &here, refusal),
    };
    user.session.flash(
        super::session::FlashLevel::Success,
        format!("New key for \u{201c}{}\u{201d}.", rotated.token.name),
    );
    let mut page = find(&state, &user, id).await?;
    page.revealed = Some(RevealedKey {
        token_name: rotated.token.name.clone(),
        owner: None,
        key: rotated.key.reveal().to_owned(),
    });
    render(&page)
}
