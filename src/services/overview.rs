//! What the admins' overview shows: how many tokens were active lately, logins and failed logins
//! per hour, refusals by reason and the busiest tokens — read from the usage history and the
//! audit log, never counted again.

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::Expr,
};
use uuid::Uuid;

use super::{audit::Action, hour_start, now, tokens::usage::Hour};
use crate::{
    db,
    entities::{audit_events, token_usage, tokens, users},
};

/// Audit events read per kind at most: a flood of failed logins cannot make the page slow.
const EVENTS_READ: u64 = 100_000;

pub struct Overview {
    /// Tokens used at least once in the last 24 hours.
    pub active_tokens: i64,
    /// Successful logins (`uses`) and failed ones (`refused`) per hour, over `days`.
    pub logins: Vec<Hour>,
    /// Refused attempts by reason, most frequent first, over `days`.
    pub refusals: Vec<(String, i64)>,
    /// The ten tokens with the most uses in the last 24 hours: token, owner, uses.
    pub busiest: Vec<(tokens::Model, String, i64)>,
}

pub async fn overview(db: &impl ConnectionTrait, days: i64) -> Result<Overview, DbErr> {
    let at = now();
    let day_ago = at - TimeDelta::hours(24);
    let since = at - TimeDelta::days(days);
    let active_tokens = token_usage::Entity::find()
        .select_only()
        .column_as(Expr::cust("COUNT(DISTINCT token_id)"), "active")
        .filter(token_usage::Column::Hour.gte(hour_start(day_ago)))
        .filter(token_usage::Column::Uses.gt(0))
        .into_tuple::<i64>()
        .one(db)
        .await?
        .unwrap_or(0);

    let logins = per_hour(
        event_times(db, Action::TokenCreated, since, Some("session,")).await?,
        event_times(db, Action::LoginFailed, since, None).await?,
    );

    let mut reasons: HashMap<String, i64> = HashMap::new();
    for event in audit_events::Entity::find()
        .filter(audit_events::Column::Action.eq(Action::TokenRefused.code()))
        .filter(audit_events::Column::OccurredAt.gte(since))
        .limit(EVENTS_READ)
        .all(db)
        .await?
    {
        let detail = event.detail.unwrap_or_default();
        // The detail ends with the address for the log's readers: the reason is what comes before.
        let reason = detail
            .split(" (from ")
            .next()
            .unwrap_or_default()
            .to_owned();
        *reasons.entry(reason).or_default() += 1;
    }
    let mut refusals: Vec<(String, i64)> = reasons.into_iter().collect();
    refusals.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));

    let top: Vec<(Uuid, i64)> = token_usage::Entity::find()
        .select_only()
        .column(token_usage::Column::TokenId)
        .column_as(
            db::sum_as_integer(db.get_database_backend(), "uses"),
            "uses",
        )
        .filter(token_usage::Column::Hour.gte(hour_start(day_ago)))
        .group_by(token_usage::Column::TokenId)
        .order_by_desc(db::sum_as_integer(db.get_database_backend(), "uses"))
        .limit(10)
        .into_tuple()
        .all(db)
        .await?;
    let found = tokens::Entity::find()
        .filter(tokens::Column::Id.is_in(top.iter().map(|(id, _)| *id)))
        .find_also_related(users::Entity)
        .all(db)
        .await?;
    let mut by_id: HashMap<Uuid, (tokens::Model, String)> = found
        .into_iter()
        .map(|(token, owner)| {
            let owner = owner.map(|u| u.username).unwrap_or_default();
            (token.id, (token, owner))
        })
        .collect();
    let busiest = top
        .into_iter()
        .filter(|(_, uses)| *uses > 0)
        .filter_map(|(id, uses)| by_id.remove(&id).map(|(token, owner)| (token, owner, uses)))
        .collect();

    Ok(Overview {
        active_tokens,
        logins,
        refusals,
        busiest,
    })
}

/// When events of `action` happened since `since` (with a detail starting `detail_prefix`).
async fn event_times(
    db: &impl ConnectionTrait,
    action: Action,
    since: DateTime<Utc>,
    detail_prefix: Option<&str>,
) -> Result<Vec<DateTime<Utc>>, DbErr> {
    let mut query = audit_events::Entity::find()
        .select_only()
        .column(audit_events::Column::OccurredAt)
        .filter(audit_events::Column::Action.eq(action.code()))
        .filter(audit_events::Column::OccurredAt.gte(since));
    if let Some(prefix) = detail_prefix {
        query = query.filter(audit_events::Column::Detail.starts_with(prefix));
    }
    query.limit(EVENTS_READ).into_tuple().all(db).await
}

/// Two lists of times as hours: the first counted as `uses`, the second as `refused`.
fn per_hour(first: Vec<DateTime<Utc>>, second: Vec<DateTime<Utc>>) -> Vec<Hour> {
    let mut hours: HashMap<DateTime<Utc>, (i64, i64)> = HashMap::new();
    for at in first {
        hours.entry(hour_start(at)).or_default().0 += 1;
    }
    for at in second {
        hours.entry(hour_start(at)).or_default().1 += 1;
    }
    let mut hours: Vec<Hour> = hours
        .into_iter()
        .map(|(hour, (uses, refused))| Hour {
            hour,
            uses,
            refused,
            tokens: 0,
        })
        .collect();
    hours.sort_by_key(|hour| hour.hour);
    hours
}
