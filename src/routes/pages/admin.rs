//! Admin pages: users (create, deactivate, activate, revoke all tokens), every token (filter,
//! revoke), and the audit log. Every handler takes `SignedInAdmin`: others get a 403 page.

use actix_web::{HttpResponse, get, post, web};
use askama::Template;
use serde::Deserialize;
use uuid::Uuid;

use super::{
    Layout, RevealedKey, back_with, done,
    extract::{CsrfForm, SignedIn, SignedInAdmin},
    format, render,
    tokens::{ConfirmForm, ConfirmPage, TokenRow, signed_out_by_own_hand},
};
use crate::{
    auth::session::FlashLevel,
    entities::{audit_events, tokens::TokenKind},
    error::WebError,
    services::{
        audit::{self, Action},
        now,
        tokens::{self, TokenFilter},
        users::{self, NewUser, Username},
    },
    startup::AppState,
};

const PAGE_SIZE: u64 = 50;

pub struct UserRow {
    pub id: Uuid,
    pub username: String,
    pub is_admin: bool,
    pub is_active: bool,
    pub tokens: u64,
    pub created: String,
    pub created_exact: String,
    pub is_self: bool,
}

#[derive(Template)]
#[template(path = "admin/users.html")]
struct UsersPage {
    layout: Layout,
    users: Vec<UserRow>,
    revealed: Option<RevealedKey>,
    min_chars: usize,
}

#[get("/admin/users")]
pub async fn users_page(
    state: web::Data<AppState>,
    admin: SignedInAdmin,
) -> Result<HttpResponse, WebError> {
    show_users(&state, &admin.0, None).await
}

async fn show_users(
    state: &AppState,
    admin: &SignedIn,
    revealed: Option<RevealedKey>,
) -> Result<HttpResponse, WebError> {
    let at = now();
    let counts = tokens::count_by_owner(&state.db).await?;
    let users = users::list(&state.db)
        .await?
        .into_iter()
        .map(|user| UserRow {
            id: user.id,
            tokens: counts.get(&user.id).copied().unwrap_or(0),
            created: format::relative(user.created_at, at),
            created_exact: format::exact(user.created_at),
            is_self: user.id == admin.auth.user.id,
            is_admin: user.is_admin,
            is_active: user.is_active,
            username: user.username,
        })
        .collect();
    render(&UsersPage {
        revealed,
        layout: Layout::signed_in(admin, "users"),
        users,
        min_chars: users::PASSWORD_MIN_CHARS,
    })
}

#[derive(Deserialize)]
pub struct NewUserForm {
    username: String,
    password: String,
    /// A checkbox: `on` when ticked (see `checkbox`).
    #[serde(default, deserialize_with = "crate::routes::checkbox::deserialize")]
    is_admin: bool,
}

#[post("/admin/users")]
pub async fn create_user(
    state: web::Data<AppState>,
    admin: SignedInAdmin,
    form: CsrfForm<NewUserForm>,
) -> Result<HttpResponse, WebError> {
    let admin = admin.0;
    let form = form.0;
    const BACK: &str = "/admin/users";
    let username = match Username::parse(&form.username) {
        Ok(username) => username,
        Err(invalid) => return back_with(&admin.session, BACK, users::UserError::from(invalid)),
    };
    let new = NewUser {
        username,
        password: form.password,
        is_admin: form.is_admin,
    };
    let created = match users::create(&state.db, &state.policy, &admin.actor(), new).await {
        Ok(created) => created,
        Err(refusal) => return back_with(&admin.session, BACK, refusal),
    };
    let message = format!("User {} created.", created.user.username);
    match created.signup_token {
        // The signup token's key is shown in this answer, once (see `tokens::create_token`).
        Some(issued) => {
            admin.session.flash(FlashLevel::Success, message);
            let revealed = RevealedKey {
                token_name: issued.token.name,
                owner: Some(created.user.username),
                key: issued.key.reveal().to_owned(),
            };
            show_users(&state, &admin, Some(revealed)).await
        }
        None => Ok(done(&admin.session, BACK, message)),
    }
}

async fn set_active(
    state: &AppState,
    admin: SignedInAdmin,
    id: Uuid,
    active: bool,
) -> Result<HttpResponse, WebError> {
    let admin = admin.0;
    const BACK: &str = "/admin/users";
    let changed = match users::find_by_id(&state.db, id).await {
        Ok(user) => users::set_active(&state.db, &admin.actor(), user, active).await,
        Err(e) => Err(e),
    };
    match changed {
        Ok(user) => Ok(done(
            &admin.session,
            BACK,
            format!(
                "User {} {}.",
                user.username,
                if active { "activated" } else { "deactivated" }
            ),
        )),
        Err(refusal) => back_with(&admin.session, BACK, refusal),
    }
}

#[post("/admin/users/{id}/deactivate")]
pub async fn deactivate_user(
    state: web::Data<AppState>,
    admin: SignedInAdmin,
    id: web::Path<Uuid>,
    _form: CsrfForm<ConfirmForm>,
) -> Result<HttpResponse, WebError> {
    set_active(&state, admin, id.into_inner(), false).await
}

#[post("/admin/users/{id}/activate")]
pub async fn activate_user(
    state: web::Data<AppState>,
    admin: SignedInAdmin,
    id: web::Path<Uuid>,
    _form: CsrfForm<ConfirmForm>,
) -> Result<HttpResponse, WebError> {
    set_active(&state, admin, id.into_inner(), true).await
}

async fn user_or_404(
    state: &AppState,
    id: Uuid,
) -> Result<crate::entities::users::Model, WebError> {
    match users::find_by_id(&state.db, id).await {
        Ok(user) => Ok(user),
        Err(users::UserError::NotFound) => Err(WebError::NotFound),
        Err(e) => Err(e.into()),
    }
}

#[get("/admin/users/{id}/revoke-all")]
pub async fn revoke_all_page(
    state: web::Data<AppState>,
    admin: SignedInAdmin,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, WebError> {
    let user = user_or_404(&state, *id).await?;
    render(&ConfirmPage {
        heading: "Revoke all tokens".into(),
        question: format!("Revoke every token of {}?", user.username),
        consequence:
            "Their sessions and device tokens all stop working at once. The account itself stays."
                .into(),
        action: format!("/admin/users/{}/revoke-all", user.id),
        button: "Revoke all tokens",
        cancel: "/admin/users",
        layout: Layout::signed_in(&admin.0, "users"),
    })
}

#[post("/admin/users/{id}/revoke-all")]
pub async fn revoke_all(
    state: web::Data<AppState>,
    admin: SignedInAdmin,
    id: web::Path<Uuid>,
    _form: CsrfForm<ConfirmForm>,
) -> Result<HttpResponse, WebError> {
    let admin = admin.0;
    const BACK: &str = "/admin/users";
    let user = match users::find_by_id(&state.db, *id).await {
        Ok(user) => user,
        Err(refusal) => return back_with(&admin.session, BACK, refusal),
    };
    match tokens::revoke_all_for(&state.db, &admin.actor(), &user).await {
        Ok(_) if user.id == admin.auth.user.id => Ok(signed_out_by_own_hand(
            &admin,
            "All your tokens are revoked: this browser is signed out.",
        )),
        Ok(count) => Ok(done(
            &admin.session,
            BACK,
            format!("Revoked {count} token(s) of {}.", user.username),
        )),
        Err(refusal) => back_with(&admin.session, BACK, refusal),
    }
}

#[derive(Deserialize)]
pub struct TokenQuery {
    /// A username; empty for everyone.
    #[serde(default)]
    user: String,
    /// `session`, `device`, or empty for both.
    #[serde(default)]
    kind: String,
    page: Option<u64>,
}

pub struct Pager {
    pub page: u64,
    pub pages: u64,
    /// The query string without `page`, to build links.
    pub query: String,
}

impl Pager {
    fn new(page: Option<u64>, total: u64, query: String) -> Pager {
        let pages = total.div_ceil(PAGE_SIZE).max(1);
        Pager {
            page: page.unwrap_or(1).clamp(1, pages),
            pages,
            query,
        }
    }

    fn offset(&self) -> u64 {
        (self.page - 1) * PAGE_SIZE
    }

    pub fn has_previous(&self) -> bool {
        self.page > 1
    }

    pub fn has_next(&self) -> bool {
        self.page < self.pages
    }
}

#[derive(Template)]
#[template(path = "admin/tokens.html")]
struct AdminTokensPage {
    layout: Layout,
    tokens: Vec<TokenRow>,
    user: String,
    kind: String,
    total: u64,
    pager: Pager,
    unknown_user: bool,
}

#[get("/admin/tokens")]
pub async fn tokens_page(
    state: web::Data<AppState>,
    admin: SignedInAdmin,
    query: web::Query<TokenQuery>,
) -> Result<HttpResponse, WebError> {
    let admin = admin.0;
    let query = query.into_inner();
    let user = query.user.trim().to_owned();
    let kind = match query.kind.as_str() {
        "session" => Some(TokenKind::Session),
        "device" => Some(TokenKind::Device),
        _ => None,
    };
    let owner = if user.is_empty() {
        None
    } else {
        match users::find_by_username(&state.db, &user).await {
            Ok(found) => Some(found),
            Err(users::UserError::NotFound) => None,
            Err(e) => return Err(e.into()),
        }
    };
    let unknown_user = !user.is_empty() && owner.is_none();
    let filter = TokenFilter {
        owner: owner.as_ref().map(|o| o.id),
        kind,
    };
    let (rows, total, pager) = if unknown_user {
        (Vec::new(), 0, Pager::new(None, 0, String::new()))
    } else {
        let total = tokens::count_all(&state.db, &filter).await?;
        let kind_code = kind.map(TokenKind::as_str).unwrap_or_default();
        let link_query =
            serde_urlencoded::to_string([("user", user.as_str()), ("kind", kind_code)])
                .unwrap_or_default();
        let pager = Pager::new(query.page, total, link_query);
        let mut rows = tokens::list_all(&state.db, &filter, PAGE_SIZE, pager.offset()).await?;
        state
            .verifier
            .last_used()
            .overlay(rows.iter_mut().map(|(token, _)| token));
        (rows, total, pager)
    };
    let at = now();
    let tokens = rows
        .into_iter()
        .map(|(token, owner)| TokenRow {
            owner: owner.username,
            ..TokenRow::new(token, at, Some(admin.auth.token.id))
        })
        .collect();
    render(&AdminTokensPage {
        layout: Layout::signed_in(&admin, "admin-tokens"),
        tokens,
        kind: kind.map(TokenKind::as_str).unwrap_or_default().to_owned(),
        user,
        total,
        pager,
        unknown_user,
    })
}

#[get("/admin/tokens/{id}/revoke")]
pub async fn revoke_token_page(
    state: web::Data<AppState>,
    admin: SignedInAdmin,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, WebError> {
    let (token, owner) = match tokens::find_with_owner(&state.db, *id).await {
        Ok(found) => found,
        Err(tokens::TokenError::NotFound) => return Err(WebError::NotFound),
        Err(e) => return Err(e.into()),
    };
    render(&ConfirmPage {
        heading: "Revoke token".into(),
        question: format!(
            "Revoke the {} token \u{201c}{}\u{201d} ({}…) of {}?",
            token.kind.as_str(),
            token.name,
            token.key_prefix,
            owner.username
        ),
        consequence: "Anything still using its key will be refused from now on.".into(),
        action: format!("/admin/tokens/{}/revoke", token.id),
        button: "Revoke token",
        cancel: "/admin/tokens",
        layout: Layout::signed_in(&admin.0, "admin-tokens"),
    })
}

#[post("/admin/tokens/{id}/revoke")]
pub async fn revoke_token(
    state: web::Data<AppState>,
    admin: SignedInAdmin,
    id: web::Path<Uuid>,
    _form: CsrfForm<ConfirmForm>,
) -> Result<HttpResponse, WebError> {
    let admin = admin.0;
    const BACK: &str = "/admin/tokens";
    let id = id.into_inner();
    match tokens::revoke(&state.db, &admin.actor(), id).await {
        Ok(()) if id == admin.auth.token.id => Ok(signed_out_by_own_hand(
            &admin,
            "Token revoked: this browser is signed out.",
        )),
        Ok(()) => Ok(done(&admin.session, BACK, "Token revoked.")),
        Err(refusal) => back_with(&admin.session, BACK, refusal),
    }
}

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
        Some(Action::TokenRevoked) => "Token revoked",
        Some(Action::TokenExpired) => "Token expired",
        Some(Action::TokenPruned) => "Token pruned",
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
    fn new(event: audit_events::Model, at: chrono::DateTime<chrono::Utc>) -> AuditRow {
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
            detail: event.detail.unwrap_or_default(),
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
}

#[derive(Deserialize)]
pub struct PageQuery {
    page: Option<u64>,
}

#[get("/admin/audit")]
pub async fn audit_page(
    state: web::Data<AppState>,
    admin: SignedInAdmin,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, WebError> {
    let admin = admin.0;
    let total = audit::count(&state.db).await?;
    // Clamped before use: a page past the end shows the last one, a huge number no error.
    let pager = Pager::new(query.page, total, String::new());
    let events = audit::page(&state.db, PAGE_SIZE, pager.offset()).await?;
    let at = now();
    render(&AuditPage {
        layout: Layout::signed_in(&admin, "audit"),
        events: events.into_iter().map(|e| AuditRow::new(e, at)).collect(),
        total,
        pager,
    })
}
