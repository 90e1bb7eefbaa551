//! `/tokens`: the signed-in user's own tokens — list, create a named device token with its access
//! (its key shown once), delete with a confirmation step. One token's own page is `token.rs`.

use std::collections::HashMap;

use actix_web::{HttpResponse, get, post, web};
use askama::Template;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use uuid::Uuid;

use super::session::FlashLevel;
use super::{
    Layout, RevealedKey,
    access::{AccessForm, Mark, marks},
    back_with,
    chart::Sparkline,
    done,
    extract::{CsrfForm, SignedIn},
    format, render, see_other,
};
use crate::{
    entities::tokens::Model as Token,
    routes::pages::error::WebError,
    services::{
        Invalid, now,
        tokens::{self, Lifetime, NewToken, Removal, TokenName, policy::Policy, usage},
    },
    state::AppState,
    verify::checks,
};

/// A token as a table row: everything already formatted for people.
pub struct TokenRow {
    pub id: Uuid,
    pub name: String,
    pub kind: &'static str,
    pub prefix: String,
    pub created: String,
    pub created_exact: String,
    pub expires: String,
    pub expires_exact: String,
    pub expired: bool,
    pub last_used: String,
    pub last_used_exact: String,
    /// The session token of the browser looking at the page.
    pub is_current: bool,
    /// The owner's username (admin listing only).
    pub owner: String,
    /// Read-only, network-bound, limited, expiring soon.
    pub marks: Vec<Mark>,
    /// Its last week at a glance (the owner's list only).
    pub spark: Option<Sparkline>,
}

impl TokenRow {
    pub fn new(token: Token, at: DateTime<Utc>, current: Option<Uuid>) -> TokenRow {
        let marks = marks(&token, &Policy::of(&token), at);
        TokenRow {
            marks,
            spark: None,
            id: token.id,
            kind: token.kind.as_str(),
            prefix: token.key_prefix.clone(),
            created: format::relative(token.created_at, at),
            created_exact: format::exact(token.created_at),
            expires: format::expiry(token.expires_at, at),
            expires_exact: token.expires_at.map(format::exact).unwrap_or_default(),
            expired: checks::is_expired_at(&token, at),
            last_used: format::last_used(token.last_used_at, at),
            last_used_exact: token.last_used_at.map(format::exact).unwrap_or_default(),
            is_current: Some(token.id) == current,
            owner: String::new(),
            name: token.name,
        }
    }
}

/// The days a row's sparkline covers.
const SPARK_DAYS: i64 = 7;

/// The expiry choices offered when creating a token, in days.
pub const EXPIRY_CHOICES: [u32; 4] = [7, 30, 90, 365];

#[derive(Template)]
#[template(path = "tokens/index.html")]
struct TokensPage {
    layout: Layout,
    tokens: Vec<TokenRow>,
    revealed: Option<RevealedKey>,
    terms: TermsDefaults,
    max_tokens: u32,
}

#[get("/tokens")]
pub async fn tokens_page(
    state: web::Data<AppState>,
    user: SignedIn,
) -> Result<HttpResponse, WebError> {
    show_tokens(&state, &user, None).await
}

/// The tokens page, with a just-issued key when there is one.
async fn show_tokens(
    state: &AppState,
    user: &SignedIn,
    revealed: Option<RevealedKey>,
) -> Result<HttpResponse, WebError> {
    let at = now();
    let current = Some(user.auth.token.id);
    let tokens = tokens::list_for(&state.db, state.verifier.last_used(), user.auth.user.id).await?;
    let ids: Vec<Uuid> = tokens.iter().map(|token| token.id).collect();
    let days = usage::Days::parse(Some(SPARK_DAYS)).map_err(WebError::internal)?;
    let mut hours: HashMap<Uuid, Vec<usage::Hour>> = HashMap::new();
    for (id, hour) in usage::of_tokens(&state.db, &ids, days).await? {
        hours.entry(id).or_default().push(hour);
    }
    let tokens = tokens
        .into_iter()
        .map(|token| {
            let spark =
                Sparkline::daily(hours.get(&token.id).into_iter().flatten(), SPARK_DAYS, at);
            TokenRow {
                spark: Some(spark),
                ..TokenRow::new(token, at, current)
            }
        })
        .collect();
    render(&TokensPage {
        revealed,
        layout: Layout::signed_in(user, "tokens"),
        tokens,
        terms: TermsDefaults::new(state, at),
        max_tokens: state.policy.max_tokens_per_user,
    })
}

#[derive(Deserialize)]
pub struct NewTokenForm {
    name: String,
    #[serde(flatten)]
    terms: TermsForm,
}

/// What a new device token is given besides its name: its expiry and access. Shared by the
/// create form and the pairing approval (`templates/tokens/terms.html`).
#[derive(Deserialize)]
pub struct TermsForm {
    /// `never`, a number of days from `EXPIRY_CHOICES`, or `date`.
    #[serde(default)]
    expires: String,
    /// With `date`: the last day the token works (it expires at the end of that day, UTC).
    #[serde(default)]
    expires_on: String,
    /// Empty: unlimited.
    #[serde(default)]
    max_uses: String,
    #[serde(flatten)]
    access: AccessForm,
}

impl TermsForm {
    /// The device token these terms describe, named `name` (`None`: named later).
    pub fn new_token(
        self,
        name: Option<TokenName>,
        at: DateTime<Utc>,
    ) -> Result<NewToken, tokens::TokenError> {
        let access = self.access.creation(&self.max_uses)?.validate(None)?;
        let lifetime = match self.expires.as_str() {
            "" | "never" => Lifetime::Forever,
            "date" => {
                let date = NaiveDate::parse_from_str(self.expires_on.trim(), "%Y-%m-%d").map_err(
                    |_| Invalid::new("expiry_date", "must be a date such as 2027-03-31"),
                )?;
                Lifetime::until_end_of(date, at)?
            }
            days => days
                .parse()
                .ok()
                .filter(|d| EXPIRY_CHOICES.contains(d))
                .ok_or_else(|| Invalid::new("expires", "is not one of the choices"))
                .and_then(|days| Lifetime::in_days(days, "expires"))?,
        };
        Ok(NewToken {
            name,
            ..NewToken::device_unnamed(lifetime)
        }
        .with_access(access))
    }
}

impl NewTokenForm {
    fn validate(self, at: DateTime<Utc>) -> Result<NewToken, tokens::TokenError> {
        let name = TokenName::parse(&self.name)?;
        self.terms.new_token(Some(name), at)
    }
}

/// What the terms fields start with: the expiry choices, today's date (the earliest a date may
/// be), and the deployment's idle expiry for device tokens.
pub struct TermsDefaults {
    pub expiry_choices: [u32; 4],
    pub today: String,
    pub idle_default: String,
}

impl TermsDefaults {
    pub fn new(state: &AppState, at: DateTime<Utc>) -> TermsDefaults {
        TermsDefaults {
            expiry_choices: EXPIRY_CHOICES,
            today: at.date_naive().to_string(),
            idle_default: state
                .policy
                .device_idle_expiry_days
                .map(|days| days.to_string())
                .unwrap_or_default(),
        }
    }
}

/// Creates a named device token and shows its key once, in this answer (200, `no-store`): the key
/// is never stored anywhere, not even in the session cookie, and a later visit cannot show it.
#[post("/tokens")]
pub async fn create_token(
    state: web::Data<AppState>,
    user: SignedIn,
    form: CsrfForm<NewTokenForm>,
) -> Result<HttpResponse, WebError> {
    let request = match form.0.validate(now()) {
        Ok(request) => request,
        Err(refusal) => return back_with(&user.session, "/tokens", refusal),
    };
    let issued = match tokens::issue(
        &state.db,
        &state.revocations,
        &state.policy,
        &user.actor(),
        &user.auth.user,
        request,
    )
    .await
    {
        Ok(issued) => issued,
        Err(refusal) => return back_with(&user.session, "/tokens", refusal),
    };
    user.session.flash(
        FlashLevel::Success,
        format!("Token \u{201c}{}\u{201d} created.", issued.token.name),
    );
    let revealed = RevealedKey {
        token_name: issued.token.name.clone(),
        owner: None,
        key: issued.key.reveal().to_owned(),
    };
    show_tokens(&state, &user, Some(revealed)).await
}

#[derive(Template)]
#[template(path = "confirm.html")]
pub struct ConfirmPage {
    pub layout: Layout,
    pub heading: String,
    pub question: String,
    pub consequence: String,
    pub action: String,
    pub button: &'static str,
    pub cancel: &'static str,
}

/// The confirmation step before deleting a token (works without JavaScript).
#[get("/tokens/{id}/delete")]
pub async fn delete_token_page(
    state: web::Data<AppState>,
    user: SignedIn,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, WebError> {
    let token = match tokens::find_own(&state.db, user.auth.user.id, *id).await {
        Ok(token) => token,
        Err(tokens::TokenError::NotFound) => return Err(WebError::NotFound),
        Err(e) => return Err(e.into()),
    };
    let consequence = if token.id == user.auth.token.id {
        "This is the session of the browser you are using: you will be signed out.".to_owned()
    } else {
        "Anything still using its key will be refused from now on.".to_owned()
    };
    render(&ConfirmPage {
        heading: "Delete token".into(),
        question: format!(
            "Delete the {} token \u{201c}{}\u{201d} ({}…)?",
            token.kind.as_str(),
            token.name,
            token.key_prefix
        ),
        consequence,
        action: format!("/tokens/{}/delete", token.id),
        button: "Delete token",
        cancel: "/tokens",
        layout: Layout::signed_in(&user, "tokens"),
    })
}

#[derive(Deserialize)]
pub struct ConfirmForm {}

#[post("/tokens/{id}/delete")]
pub async fn delete_token(
    state: web::Data<AppState>,
    user: SignedIn,
    id: web::Path<Uuid>,
    _form: CsrfForm<ConfirmForm>,
) -> Result<HttpResponse, WebError> {
    let deleted = tokens::delete_own(
        &state.db,
        &state.revocations,
        &user.actor(),
        &user.auth.user,
        id.into_inner(),
        Removal::Deleted,
    )
    .await;
    let token = match deleted {
        Ok(token) => token,
        Err(refusal) => return back_with(&user.session, "/tokens", refusal),
    };
    if token.id == user.auth.token.id {
        return Ok(signed_out_by_own_hand(
            &user,
            "Token deleted: this browser is signed out.",
        ));
    }
    Ok(done(
        &user.session,
        "/tokens",
        format!("Token \u{201c}{}\u{201d} deleted.", token.name),
    ))
}

/// This browser's own session token was just removed: end the session here, with a message that
/// says so, rather than let the next page find the session gone.
pub fn signed_out_by_own_hand(user: &SignedIn, message: &str) -> HttpResponse {
    user.session.end();
    user.session.flash(FlashLevel::Success, message);
    see_other("/login")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    fn form(expires: &str, expires_on: &str) -> NewTokenForm {
        NewTokenForm {
            name: "sensor".into(),
            terms: TermsForm {
                expires: expires.into(),
                expires_on: expires_on.into(),
                max_uses: String::new(),
                access: AccessForm::default(),
            },
        }
    }

    #[test]
    fn the_whole_create_form_reads_with_its_access_fields() {
        let at = DateTime::parse_from_rfc3339("2026-11-29T18:00:00Z")
            .unwrap()
            .to_utc();
        let form: NewTokenForm = serde_urlencoded::from_str(
            "csrf=x&name=ci&expires=never&expires_on=&access=read_only&scopes=deploy\
             &allowed_ips=127.0.0.1&pin_ip=on&idle_expiry_days=&max_uses=3&description=",
        )
        .unwrap();
        let error = form
            .validate(at)
            .err()
            .expect("pin beside networks is refused");
        assert!(error.to_string().contains("pin_ip"), "{error}");
        let form: NewTokenForm = serde_urlencoded::from_str(
            "name=ci&access=read_only&scopes=deploy&allowed_ips=127.0.0.1&max_uses=3",
        )
        .unwrap();
        let access = form.validate(at).unwrap().access.unwrap();
        assert!(access.read_only());
        assert_eq!(access.remaining_uses(), Some(3));
        assert_eq!(access.scopes(), ["deploy"]);
    }

    #[test]
    fn expiry_choices_become_lifetimes() {
        let at = DateTime::parse_from_rfc3339("2026-11-29T18:00:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(
            form("never", "").validate(at).unwrap().lifetime,
            Lifetime::Forever
        );
        assert_eq!(
            form("30", "").validate(at).unwrap().lifetime,
            Lifetime::For(TimeDelta::days(30))
        );
        assert_eq!(
            form("date", "2026-11-30").validate(at).unwrap().lifetime,
            Lifetime::For(TimeDelta::hours(30)),
            "until the end of that day, UTC"
        );
    }

    #[test]
    fn odd_expiry_choices_are_refused() {
        let at = DateTime::parse_from_rfc3339("2026-11-29T18:00:00Z")
            .unwrap()
            .to_utc();
        for (expires, on) in [
            ("8", ""),
            ("-1", ""),
            ("date", ""),
            ("date", "2026-11-28"),
            ("date", "2026-13-01"),
            ("date", "9999-01-01"),
        ] {
            assert!(form(expires, on).validate(at).is_err(), "{expires} {on}");
        }
    }
}
