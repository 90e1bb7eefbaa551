//! The audit log: who did what to which token or user, when and from where. Written in the
//! same transaction as the change it records, so the log and the data cannot disagree.

use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

use chrono::Timelike;

use super::{names::escape_invisible, now};
use crate::entities::{audit_events, tokens, users};

/// Column limits of `audit_events`; longer text is cut, never refused: the log must not fail.
const NAME_MAX_CHARS: usize = 150;
const DETAIL_MAX_CHARS: usize = 200;
const ADDRESS_MAX_CHARS: usize = 64;
/// Rows per INSERT when one operation removes many tokens.
const INSERT_CHUNK: usize = 500;

/// Who acts: a signed-in user, an unknown caller (a failed login), the command line or the
/// service itself (expiry). The client address is the TCP peer's.
#[derive(Clone, Debug)]
pub struct Actor {
    pub user_id: Option<Uuid>,
    pub name: String,
    pub address: Option<String>,
}

impl Actor {
    pub fn user(user: &users::Model, address: Option<String>) -> Actor {
        Actor {
            user_id: Some(user.id),
            name: user.username.clone(),
            address,
        }
    }

    pub fn anonymous(address: Option<String>) -> Actor {
        Actor {
            user_id: None,
            name: "anonymous".into(),
            address,
        }
    }

    pub fn system() -> Actor {
        Actor {
            user_id: None,
            name: "system".into(),
            address: None,
        }
    }

    pub fn command_line() -> Actor {
        Actor {
            user_id: None,
            name: "command line".into(),
            address: None,
        }
    }

    pub fn is(&self, user: &users::Model) -> bool {
        self.user_id == Some(user.id)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    TokenCreated,
    TokenUpdated,
    TokenRotated,
    TokenRefused,
    TokenRevoked,
    TokenExpired,
    TokenPruned,
    DevicePaired,
    LoginFailed,
    UserCreated,
    UserDeactivated,
    UserActivated,
    UserDeleted,
    PasswordChanged,
}

impl Action {
    pub const ALL: [Action; 14] = [
        Action::TokenCreated,
        Action::TokenUpdated,
        Action::TokenRotated,
        Action::TokenRefused,
        Action::TokenRevoked,
        Action::TokenExpired,
        Action::TokenPruned,
        Action::DevicePaired,
        Action::LoginFailed,
        Action::UserCreated,
        Action::UserDeactivated,
        Action::UserActivated,
        Action::UserDeleted,
        Action::PasswordChanged,
    ];

    /// The stored code.
    pub fn code(self) -> &'static str {
        match self {
            Action::TokenCreated => "token.created",
            Action::TokenUpdated => "token.updated",
            Action::TokenRefused => "token.refused",
            Action::TokenRotated => "token.rotated",
            Action::TokenRevoked => "token.revoked",
            Action::TokenExpired => "token.expired",
            Action::TokenPruned => "token.pruned",
            Action::DevicePaired => "device.paired",
            Action::LoginFailed => "login.failed",
            Action::UserCreated => "user.created",
            Action::UserDeactivated => "user.deactivated",
            Action::UserActivated => "user.activated",
            Action::UserDeleted => "user.deleted",
            Action::PasswordChanged => "password.changed",
        }
    }

    pub fn from_code(code: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|action| action.code() == code)
    }
}

/// What an action was done to.
#[derive(Clone, Debug)]
pub struct Target {
    kind: &'static str,
    id: Option<Uuid>,
    name: String,
    owner: Option<String>,
}

impl Target {
    pub fn token(token: &tokens::Model, owner: &str) -> Target {
        Target {
            kind: "token",
            id: Some(token.id),
            name: token.name.clone(),
            owner: Some(owner.to_owned()),
        }
    }

    pub fn user(user: &users::Model) -> Target {
        Target {
            kind: "user",
            id: Some(user.id),
            name: user.username.clone(),
            owner: None,
        }
    }

    /// A login attempt's username, which may name nobody and may be any text at all.
    pub fn attempted_username(name: &str, known: Option<&users::Model>) -> Target {
        Target {
            kind: "user",
            id: known.map(|user| user.id),
            name: name.to_owned(),
            owner: None,
        }
    }
}

pub struct Event {
    pub action: Action,
    pub target: Target,
    pub detail: Option<String>,
}

impl Event {
    pub fn new(action: Action, target: Target) -> Event {
        Event {
            action,
            target,
            detail: None,
        }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Event {
        self.detail = Some(detail.into());
        self
    }
}

/// Text as it may be stored and shown: every invisible character (controls, format characters,
/// line separators, Hangul fillers...) written as an escape such as `\u{ad}`, so `admin` plus a
/// soft hyphen never reads as `admin` (and PostgreSQL never sees a NUL); cut to the column's length.
fn fit(text: &str, max_chars: usize) -> String {
    escape_invisible(text).chars().take(max_chars).collect()
}

fn row(actor: &Actor, event: Event) -> audit_events::ActiveModel {
    audit_events::ActiveModel {
        id: Set(Uuid::now_v7()),
        occurred_at: Set(now()),
        action: Set(event.action.code().to_owned()),
        actor_id: Set(actor.user_id),
        actor_name: Set(fit(&actor.name, NAME_MAX_CHARS)),
        client_address: Set(actor.address.as_deref().map(|a| fit(a, ADDRESS_MAX_CHARS))),
        target_type: Set(event.target.kind.to_owned()),
        target_id: Set(event.target.id),
        target_name: Set(fit(&event.target.name, NAME_MAX_CHARS)),
        target_owner: Set(event
            .target
            .owner
            .as_deref()
            .map(|o| fit(o, NAME_MAX_CHARS))),
        detail: Set(event.detail.as_deref().map(|d| fit(d, DETAIL_MAX_CHARS))),
        repeats: Set(1),
    }
}

pub async fn record(db: &impl ConnectionTrait, actor: &Actor, event: Event) -> Result<(), DbErr> {
    record_all(db, actor, vec![event]).await
}

/// Failed logins recorded one by one per address and minute; past that, the newest is counted up.
pub const FAILED_LOGINS_KEPT_PER_MINUTE: u64 = 5;

/// A failed login: recorded as its own event, unless its address has already failed
/// `FAILED_LOGINS_KEPT_PER_MINUTE` times this minute; then the newest of those stands for it too
/// (its `repeats` grows). A flood from one address writes at most that many rows a minute.
pub async fn record_failed_login(
    db: &impl ConnectionTrait,
    actor: &Actor,
    event: Event,
) -> Result<(), DbErr> {
    let Some(address) = actor.address.as_deref().map(|a| fit(a, ADDRESS_MAX_CHARS)) else {
        return record(db, actor, event).await;
    };
    let at = now();
    let minute = at - chrono::TimeDelta::seconds(i64::from(at.second()));
    let minute = minute.with_nanosecond(0).unwrap_or(minute);
    let recent = audit_events::Entity::find()
        .filter(audit_events::Column::Action.eq(Action::LoginFailed.code()))
        .filter(audit_events::Column::ClientAddress.eq(address.as_str()))
        .filter(audit_events::Column::OccurredAt.gte(minute))
        .order_by_desc(audit_events::Column::OccurredAt)
        .order_by_desc(audit_events::Column::Id)
        .limit(FAILED_LOGINS_KEPT_PER_MINUTE)
        .all(db)
        .await?;
    match recent.first() {
        Some(newest) if recent.len() as u64 >= FAILED_LOGINS_KEPT_PER_MINUTE => {
            audit_events::Entity::update_many()
                .col_expr(
                    audit_events::Column::Repeats,
                    sea_orm::sea_query::ExprTrait::add(
                        sea_orm::sea_query::Expr::col(audit_events::Column::Repeats),
                        1,
                    ),
                )
                .filter(audit_events::Column::Id.eq(newest.id))
                .exec(db)
                .await?;
            Ok(())
        }
        _ => record(db, actor, event).await,
    }
}

pub async fn record_all(
    db: &impl ConnectionTrait,
    actor: &Actor,
    events: Vec<Event>,
) -> Result<(), DbErr> {
    let mut rows = events.into_iter().map(|event| row(actor, event)).peekable();
    while rows.peek().is_some() {
        let chunk: Vec<_> = rows.by_ref().take(INSERT_CHUNK).collect();
        audit_events::Entity::insert_many(chunk).exec(db).await?;
    }
    Ok(())
}

/// Which events to read: by or about one user, of one action, within a time range. The default
/// is every event.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// A username: the events it made, and those about it or its tokens.
    pub user: Option<String>,
    pub action: Option<Action>,
    /// From this time on, inclusive.
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Before this time.
    pub until: Option<chrono::DateTime<chrono::Utc>>,
}

impl Filter {
    /// A filter as typed (a query string or a form): empty fields filter nothing. Times are RFC
    /// 3339, or a date (`2026-12-03`): `since` from its start, `until` to its end (UTC).
    pub fn parse(
        user: Option<&str>,
        action: Option<&str>,
        since: Option<&str>,
        until: Option<&str>,
    ) -> Result<Filter, crate::services::Invalid> {
        use crate::services::Invalid;
        fn given(text: Option<&str>) -> Option<&str> {
            text.map(str::trim).filter(|text| !text.is_empty())
        }
        let time = |text: &str, field: &'static str, end_of_day: bool| {
            if let Ok(at) = chrono::DateTime::parse_from_rfc3339(text) {
                return Ok(at.to_utc());
            }
            chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .ok()
                .and_then(|date| {
                    let date = if end_of_day { date.succ_opt()? } else { date };
                    Some(date.and_hms_opt(0, 0, 0)?.and_utc())
                })
                .ok_or_else(|| {
                    Invalid::new(field, "must be a date (2026-12-03) or an RFC 3339 time")
                })
        };
        Ok(Filter {
            user: given(user).map(str::to_owned),
            action: given(action)
                .map(|code| {
                    Action::from_code(code)
                        .ok_or_else(|| Invalid::new("action", "is not an audit action"))
                })
                .transpose()?,
            since: given(since)
                .map(|text| time(text, "since", false))
                .transpose()?,
            until: given(until)
                .map(|text| time(text, "until", true))
                .transpose()?,
        })
    }

    fn query(&self) -> sea_orm::Select<audit_events::Entity> {
        let mut query = audit_events::Entity::find();
        if let Some(user) = &self.user {
            query = query.filter(
                sea_orm::Condition::any()
                    .add(audit_events::Column::ActorName.eq(user.as_str()))
                    .add(audit_events::Column::TargetOwner.eq(user.as_str()))
                    .add(
                        sea_orm::Condition::all()
                            .add(audit_events::Column::TargetType.eq("user"))
                            .add(audit_events::Column::TargetName.eq(user.as_str())),
                    ),
            );
        }
        if let Some(action) = self.action {
            query = query.filter(audit_events::Column::Action.eq(action.code()));
        }
        if let Some(since) = self.since {
            query = query.filter(audit_events::Column::OccurredAt.gte(since));
        }
        if let Some(until) = self.until {
            query = query.filter(audit_events::Column::OccurredAt.lt(until));
        }
        query
    }
}

/// How many events match `filter`.
pub async fn count(db: &impl ConnectionTrait, filter: &Filter) -> Result<u64, DbErr> {
    filter.query().count(db).await
}

/// One page of the log, newest first.
pub async fn page(
    db: &impl ConnectionTrait,
    filter: &Filter,
    limit: u64,
    offset: u64,
) -> Result<Vec<audit_events::Model>, DbErr> {
    filter
        .query()
        .order_by_desc(audit_events::Column::OccurredAt)
        .order_by_desc(audit_events::Column::Id)
        .limit(limit)
        .offset(offset)
        .all(db)
        .await
}

/// Deletes events older than `retention`; returns how many.
pub async fn prune(
    db: &impl ConnectionTrait,
    retention: std::time::Duration,
) -> Result<u64, DbErr> {
    let cutoff = now() - chrono::TimeDelta::from_std(retention).unwrap_or(chrono::TimeDelta::MAX);
    let done = audit_events::Entity::delete_many()
        .filter(audit_events::Column::OccurredAt.lt(cutoff))
        .exec(db)
        .await?;
    Ok(done.rows_affected)
}

/// The newest `limit` events about one token, of one kind or of any, newest first.
pub async fn history_of_token(
    db: &impl ConnectionTrait,
    token: Uuid,
    limit: u64,
) -> Result<Vec<audit_events::Model>, DbErr> {
    audit_events::Entity::find()
        .filter(audit_events::Column::TargetType.eq("token"))
        .filter(audit_events::Column::TargetId.eq(token))
        .order_by_desc(audit_events::Column::OccurredAt)
        .order_by_desc(audit_events::Column::Id)
        .limit(limit)
        .all(db)
        .await
}

/// The newest `limit` events of one kind about one token, newest first.
pub async fn about_token(
    db: &impl ConnectionTrait,
    token: Uuid,
    action: Action,
    limit: u64,
) -> Result<Vec<audit_events::Model>, DbErr> {
    audit_events::Entity::find()
        .filter(audit_events::Column::TargetType.eq("token"))
        .filter(audit_events::Column::TargetId.eq(token))
        .filter(audit_events::Column::Action.eq(action.code()))
        .order_by_desc(audit_events::Column::OccurredAt)
        .order_by_desc(audit_events::Column::Id)
        .limit(limit)
        .all(db)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_text_shows_invisible_characters_as_escapes_and_is_cut_to_fit() {
        assert_eq!(fit("a\u{0}b\nc", 20), r"a\u{0}b\u{a}c");
        assert_eq!(fit("evil\u{202E}gpj.exe", 20), r"evil\u{202e}gpj.exe");
        assert_eq!(fit("admin\u{AD}", 20), r"admin\u{ad}");
        assert_eq!(
            fit("👨\u{200D}👩", 20),
            "👨\u{200D}👩",
            "emoji sequences stay"
        );
        assert_eq!(fit(&"é".repeat(300), NAME_MAX_CHARS).chars().count(), 150);
    }

    #[test]
    fn every_action_code_reads_back_as_itself() {
        for action in Action::ALL {
            assert_eq!(Action::from_code(action.code()), Some(action));
        }
        assert_eq!(Action::from_code("nonsense"), None);
    }
}
