//! The admin's audit log page.

use actix_web::{HttpResponse, get, web};
use askama::Template;
use serde::Deserialize;

use crate::routes::pages::{Layout, extract::SignedInAdmin, format, render};
use crate::{
    entities::audit_events,
    routes::pages::error::WebError,
    services::{
        audit::{self, Action},
        now,
    },
    state::AppState,
};

use super::{PAGE_SIZE, Pager};

pub struct AuditRow {
    pub when: String,
    pub when_exact: String,
    pub action: &'static str,
    pub code: String,
    pub actor: String,
    pub target: String,
    pub address: String,
    pub detail: String,
}

fn describe(action: Option<Action>) -> &'static str {
    match action {
        Some(Action::TokenCreated) => "Token created",
        Some(Action::TokenUpdated) => "Token changed",
        Some(Action::TokenRotated) => "Token key rotated",
        Some(Action::TokenRefused) => "Token refused by its policy",
        Some(Action::TokenRevoked) => "Token revoked",
        Some(Action::TokenExpired) => "Token expired",
        Some(Action::TokenPruned) => "Token pruned",
        Some(Action::DevicePaired) => "Device paired",
        Some(Action::LoginFailed) => "Login failed",
        Some(Action::UserCreated) => "User created",
        Some(Action::UserDeactivated) => "User deactivated",
        Some(Action::UserActivated) => "User activated",
        Some(Action::UserDeleted) => "User deleted",
        Some(Action::PasswordChanged) => "Password changed",
        None => "Other",
    }
}

impl AuditRow {
    pub fn new(event: audit_events::Model, at: chrono::DateTime<chrono::Utc>) -> AuditRow {
        let target = match (&event.target_type[..], &event.target_owner) {
            ("token", Some(owner)) => {
                format!("token \u{201c}{}\u{201d} of {owner}", event.target_name)
            }
            ("token", None) => format!("token \u{201c}{}\u{201d}", event.target_name),
            _ => format!("user {}", event.target_name),
        };
        AuditRow {
            when: format::relative(event.occurred_at, at),
            when_exact: format::exact(event.occurred_at),
            action: describe(Action::from_code(&event.action)),
            code: event.action,
            actor: event.actor_name,
            target,
            address: event.client_address.unwrap_or_default(),
            detail: match event.repeats {
                1 => event.detail.unwrap_or_default(),
                n => format!("{} (×{n} this minute)", event.detail.unwrap_or_default()),
            },
        }
    }
}

#[derive(Template)]
#[template(path = "admin/audit.html")]
struct AuditPage {
    layout: Layout,
    events: Vec<AuditRow>,
    total: u64,
    pager: Pager,
    /// The filter as typed, to show it again.
    user: String,
    action: String,
    since: String,
    until: String,
    choices: Vec<ActionChoice>,
    /// Why the filter could not be used, if it could not.
    problem: String,
    /// The same events as JSON lines, through the API.
    export: String,
}

#[derive(Deserialize)]
pub struct PageQuery {
    page: Option<u64>,
    #[serde(default)]
    user: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
}

/// An action the filter offers: its code and how the page names it.
pub struct ActionChoice {
    pub code: &'static str,
    pub label: &'static str,
}

#[get("/admin/audit")]
pub async fn audit_page(
    state: web::Data<AppState>,
    admin: SignedInAdmin,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, WebError> {
    let admin = admin.0;
    let query = query.into_inner();
    let (filter, problem) = match audit::Filter::parse(
        Some(&query.user),
        Some(&query.action),
        Some(&query.since),
        Some(&query.until),
    ) {
        Ok(filter) => (filter, String::new()),
        // A bad field is said on the page, which then shows everything.
        Err(invalid) => (audit::Filter::default(), invalid.to_string()),
    };
    let total = audit::count(&state.db, &filter).await?;
    // The filter's fields that were given, for the pages' and the export's links.
    let given: Vec<(&str, &str)> = [
        ("user", query.user.as_str()),
        ("action", query.action.as_str()),
        ("since", query.since.as_str()),
        ("until", query.until.as_str()),
    ]
    .into_iter()
    .filter(|(_, value)| !value.trim().is_empty())
    .collect();
    let kept = serde_urlencoded::to_string(given).unwrap_or_default();
    // Clamped before use: a page past the end shows the last one, a huge number no error.
    let pager = Pager::new(query.page, total, kept.clone());
    let events = audit::page(&state.db, &filter, PAGE_SIZE, pager.offset()).await?;
    let at = now();
    render(&AuditPage {
        choices: Action::ALL
            .into_iter()
            .map(|action| ActionChoice {
                code: action.code(),
                label: describe(Some(action)),
            })
            .collect(),
        user: query.user,
        action: query.action,
        since: query.since,
        until: query.until,
        problem,
        export: format!("/api/admin/audit/export?{kept}"),
        layout: Layout::signed_in(&admin, "audit"),
        events: events.into_iter().map(|e| AuditRow::new(e, at)).collect(),
        total,
        pager,
    })
}
