//! Admin pages for tokens: every token, filtered by owner and kind, and revoking any of them.

use actix_web::{HttpResponse, get, post, web};
use askama::Template;
use serde::Deserialize;
use uuid::Uuid;

use crate::routes::pages::{
    Layout, back_with, done,
    extract::{CsrfForm, SignedInAdmin},
    render,
    tokens::{ConfirmForm, ConfirmPage, TokenRow, signed_out_by_own_hand},
};
use crate::{
    entities::tokens::TokenKind,
    routes::pages::error::WebError,
    services::{
        now,
        tokens::{self, TokenFilter},
        users::{self},
    },
    state::AppState,
};

use super::{PAGE_SIZE, Pager};

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
        let rows = tokens::list_all(
            &state.db,
            state.verifier.last_used(),
            &filter,
            PAGE_SIZE,
            pager.offset(),
        )
        .await?;
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
    match tokens::revoke(&state.db, &state.revocations, &admin.actor(), id).await {
        Ok(()) if id == admin.auth.token.id => Ok(signed_out_by_own_hand(
            &admin,
            "Token revoked: this browser is signed out.",
        )),
        Ok(()) => Ok(done(&admin.session, BACK, "Token revoked.")),
        Err(refusal) => back_with(&admin.session, BACK, refusal),
    }
}
