//! Usage history: each token's uses and refusals per hour, as `verify::last_used` wrote them
//! (in batches, never a write per request), for the owner, for admins across tokens, and
//! pruned after the retention period.

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, sea_query::Expr,
};
use uuid::Uuid;

use super::{TokenError, find_own};
use crate::{
    db,
    entities::token_usage,
    services::{Invalid, now},
};

/// The longest history asked for at once, in days.
pub const MAX_DAYS: u32 = 90;

/// How far back a history goes: 1 to `MAX_DAYS` days, 7 unless asked.
#[derive(Debug, Clone, Copy)]
pub struct Days(u32);

impl Days {
    pub fn parse(days: Option<i64>) -> Result<Days, Invalid> {
        match days {
            None => Ok(Days(7)),
            Some(days) => u32::try_from(days)
                .ok()
                .filter(|days| (1..=MAX_DAYS).contains(days))
                .map(Days)
                .ok_or_else(|| Invalid::new("days", format!("must be 1 to {MAX_DAYS}"))),
        }
    }

    /// The start of the first hour shown.
    fn since(self, at: DateTime<Utc>) -> DateTime<Utc> {
        at - TimeDelta::days(i64::from(self.0))
    }
}

/// One hour of one token, or of every token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hour {
    pub hour: DateTime<Utc>,
    pub uses: i64,
    pub refused: i64,
    /// Tokens with any use or refusal that hour (1 for a single token's history).
    pub tokens: i64,
}

/// The hours of `days` in which `owner`'s token `id` was used or refused, oldest first.
/// Another user's token is `NotFound`.
pub async fn of_own_token(
    db: &impl ConnectionTrait,
    owner: Uuid,
    id: Uuid,
    days: Days,
) -> Result<Vec<Hour>, TokenError> {
    find_own(db, owner, id).await?;
    of_token(db, id, days).await.map_err(TokenError::from)
}

/// A token's hours, whoever owns it (its page, and admins).
pub async fn of_token(db: &impl ConnectionTrait, id: Uuid, days: Days) -> Result<Vec<Hour>, DbErr> {
    let hours = of_tokens(db, &[id], days).await?;
    Ok(hours.into_iter().map(|(_, hour)| hour).collect())
}

/// The hours of `days` of each of `ids` (one query for a whole list), oldest first.
pub async fn of_tokens(
    db: &impl ConnectionTrait,
    ids: &[Uuid],
    days: Days,
) -> Result<Vec<(Uuid, Hour)>, DbErr> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = token_usage::Entity::find()
        .filter(token_usage::Column::TokenId.is_in(ids.iter().copied()))
        .filter(token_usage::Column::Hour.gte(days.since(now())))
        .order_by_asc(token_usage::Column::Hour)
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            (
                row.token_id,
                Hour {
                    hour: row.hour,
                    uses: row.uses,
                    refused: row.refused,
                    tokens: 1,
                },
            )
        })
        .collect())
}

/// Every token's hours of `days`, summed per hour, oldest first (the admins' overview).
pub async fn of_all_tokens(db: &impl ConnectionTrait, days: Days) -> Result<Vec<Hour>, DbErr> {
    let rows: Vec<(DateTime<Utc>, i64, i64, i64)> = token_usage::Entity::find()
        .select_only()
        .column(token_usage::Column::Hour)
        .column_as(
            db::sum_as_integer(db.get_database_backend(), "uses"),
            "uses",
        )
        .column_as(
            db::sum_as_integer(db.get_database_backend(), "refused"),
            "refused",
        )
        .column_as(Expr::cust("COUNT(*)"), "tokens")
        .filter(token_usage::Column::Hour.gte(days.since(now())))
        .group_by(token_usage::Column::Hour)
        .order_by_asc(token_usage::Column::Hour)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(hour, uses, refused, tokens)| Hour {
            hour,
            uses,
            refused,
            tokens,
        })
        .collect())
}

/// Deletes hours older than `retention`; returns how many rows.
pub async fn prune(db: &DatabaseConnection, retention: std::time::Duration) -> Result<u64, DbErr> {
    let cutoff = now() - TimeDelta::from_std(retention).unwrap_or(TimeDelta::MAX);
    let done = token_usage::Entity::delete_many()
        .filter(token_usage::Column::Hour.lt(cutoff))
        .exec(db)
        .await?;
    Ok(done.rows_affected)
}
