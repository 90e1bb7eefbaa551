use sea_orm::entity::prelude::*;

/// One thing that happened to a token or a user: who did it, from where, to what.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_events")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub occurred_at: DateTimeUtc,
    /// `token.created`, `login.failed`, … (see `services::audit::Action`).
    pub action: String,
    /// The acting user; `None` for the system, the command line or an unknown caller.
    pub actor_id: Option<Uuid>,
    pub actor_name: String,
    pub client_address: Option<String>,
    /// `token` or `user`.
    pub target_type: String,
    pub target_id: Option<Uuid>,
    /// The token's name or the username (for a failed login: the name that was tried).
    pub target_name: String,
    /// For tokens: the owner's username.
    pub target_owner: Option<String>,
    pub detail: Option<String>,
    /// How many attempts the event stands for: more than 1 only for failed logins from one
    /// address collapsed into one event a minute.
    pub repeats: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
