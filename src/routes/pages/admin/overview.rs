//! `/admin`: the admins' overview — active tokens in the last 24 hours, every token's uses and
//! refusals per hour, logins and failed logins per hour, refusals by reason, the busiest tokens.

use actix_web::{HttpResponse, get, web};
use askama::Template;

use crate::routes::pages::{Layout, chart::UsageChart, extract::SignedInAdmin, render};
use crate::{
    routes::pages::error::WebError,
    services::{
        now, overview,
        tokens::usage::{self, Days},
    },
    state::AppState,
};

/// The days the charts cover.
const DAYS: i64 = 7;

pub struct BusyRow {
    pub id: String,
    pub name: String,
    pub owner: String,
    pub uses: i64,
}

#[derive(Template)]
#[template(path = "admin/overview.html")]
struct OverviewPage {
    layout: Layout,
    active_tokens: i64,
    usage: UsageChart,
    logins: UsageChart,
    refusals: Vec<(String, i64)>,
    busiest: Vec<BusyRow>,
}

#[get("/admin")]
pub async fn overview_page(
    state: web::Data<AppState>,
    admin: SignedInAdmin,
) -> Result<HttpResponse, WebError> {
    let admin = admin.0;
    let at = now();
    let days = Days::parse(Some(DAYS)).map_err(WebError::internal)?;
    let hours = usage::of_all_tokens(&state.db, days).await?;
    let seen = overview::overview(&state.db, DAYS).await?;
    render(&OverviewPage {
        layout: Layout::signed_in(&admin, "overview"),
        active_tokens: seen.active_tokens,
        usage: UsageChart::hourly(&hours, DAYS, at),
        logins: UsageChart::hourly(&seen.logins, DAYS, at).named(
            "logins-chart",
            "logins",
            "failed logins",
        ),
        refusals: seen.refusals,
        busiest: seen
            .busiest
            .into_iter()
            .map(|(token, owner, uses)| BusyRow {
                id: token.id.to_string(),
                name: token.name,
                owner,
                uses,
            })
            .collect(),
    })
}
