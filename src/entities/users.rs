use sea_orm::entity::prelude::*;

/// Debug is written by hand: the password hash never reaches a log.
#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub username: String,
    /// Unicode-lowercased username; unique, so lookups and uniqueness ignore case.
    #[sea_orm(unique)]
    pub username_key: String,
    /// What the name looks like (`names::skeleton`); unique, so no username passes for another.
    /// NULL only on a row from before the column, until the next start fills it.
    #[sea_orm(unique)]
    pub username_skeleton: Option<String>,
    pub password_hash: String,
    pub is_admin: bool,
    pub is_active: bool,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::tokens::Entity")]
    Tokens,
}

impl Related<super::tokens::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Tokens.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("is_admin", &self.is_admin)
            .field("is_active", &self.is_active)
            .finish_non_exhaustive()
    }
}
