//! Admin pages for users: list, create, deactivate, activate, revoke all of a user's tokens.

use actix_web::{HttpResponse, get, post, web};
use askama::Template;
use serde::Deserialize;
use uuid::Uuid;

use crate::routes::pages::{
    Layout, RevealedKey, back_with, done,
    extract::{CsrfForm, SignedIn, SignedInAdmin},
    format, render,
    tokens::{ConfirmForm, ConfirmPage, signed_out_by_own_hand},
};
use crate::{
    routes::pages::error::WebError,
    routes::pages::session::FlashLevel,
    services::{
        now,
        tokens::{self},
        users::{self, NewUser, Username},
    },
    state::AppState,
};

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
    let created = match users::create(
        &state.db,
        &state.revocations,
        &state.policy,
        &admin.actor(),
        new,
    )
    .await
    {
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
        Ok(user) => {
            users::set_active(&state.db, &state.revocations, &admin.actor(), user, active).await
        }
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
    match tokens::revoke_all_for(&state.db, &state.revocations, &admin.actor(), &user).await {
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
