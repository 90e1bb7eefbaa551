use sea_orm::entity::prelude::*;

/// A device waiting to be paired, or paired: see `services::pairing`. Codes are kept as digests.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "pairings")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(unique)]
    pub device_code_digest: String,
    #[sea_orm(unique)]
    pub user_code_digest: String,
    pub suggested_name: Option<String>,
    pub device_address: Option<String>,
    pub created_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
    pub interval_seconds: i32,
    pub last_polled_at: Option<DateTimeUtc>,
    pub state: String,
    pub token_id: Option<Uuid>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
