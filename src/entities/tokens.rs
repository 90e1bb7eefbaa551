use sea_orm::entity::prelude::*;

/// Debug is written by hand: the key digest never reaches a log.
#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "tokens")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub user_id: Uuid,
    pub name: String,
    /// What the name looks like (`names::skeleton`); unique per owner. NULL only on a row from
    /// before the column, until the next start fills it.
    pub name_skeleton: Option<String>,
    pub kind: TokenKind,
    /// Hex SHA-256 of the key.
    #[sea_orm(unique)]
    pub key_digest: String,
    pub key_prefix: String,
    pub created_at: DateTimeUtc,
    pub expires_at: Option<DateTimeUtc>,
    pub last_used_at: Option<DateTimeUtc>,
    // The policy columns (`services::tokens::policy` reads and writes them; `StoredPolicy`).
    pub description: String,
    pub read_only: bool,
    /// Space-separated.
    pub scopes: String,
    /// Space-separated normalized networks; empty = anywhere.
    pub allowed_ips: String,
    pub pin_ip: bool,
    pub idle_expiry_days: Option<i32>,
    /// NULL = unlimited.
    pub remaining_uses: Option<i64>,
    /// A JSON object's compact text.
    pub metadata: String,
    pub last_used_ip: Option<String>,
    pub last_used_user_agent: Option<String>,
    /// After a rotation: the previous key's digest, still accepted until
    /// `previous_key_expires_at` (never past `expires_at`).
    #[sea_orm(unique)]
    pub previous_key_digest: Option<String>,
    pub previous_key_expires_at: Option<DateTimeUtc>,
    /// A self-rotation: the previous key stops the moment the new one is first used.
    pub retire_previous_on_use: bool,
    /// Requests per minute; NULL = no limit.
    pub rate_limit_per_minute: Option<i32>,
}

/// `session`: from a username + password login, expires after the session TTL.
/// `device`: named by its owner, expires only when the owner chose so.
#[derive(
    Copy,
    Clone,
    Debug,
    PartialEq,
    Eq,
    EnumIter,
    DeriveActiveEnum,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    #[sea_orm(string_value = "session")]
    Session,
    #[sea_orm(string_value = "device")]
    Device,
}

impl TokenKind {
    /// The word stored in the database (the `string_value`s above), for people to read too.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Session => "session",
            TokenKind::Device => "device",
        }
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::users::Entity",
        from = "Column::UserId",
        to = "super::users::Column::Id",
        on_delete = "Cascade"
    )]
    User,
}

impl Related<super::users::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::User.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("key_prefix", &self.key_prefix)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}
