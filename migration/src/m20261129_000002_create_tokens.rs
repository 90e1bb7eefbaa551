use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261129_000001_create_users::Users;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Tokens::Table)
                    .if_not_exists()
                    .col(pk_uuid(Tokens::Id))
                    .col(uuid(Tokens::UserId))
                    .col(string_len(Tokens::Name, 256))
                    .col(string_len(Tokens::Kind, 16))
                    // SHA-256 of the key, hex. The key itself is never stored.
                    .col(string_len_uniq(Tokens::KeyDigest, 64))
                    .col(string_len(Tokens::KeyPrefix, 16))
                    .col(timestamp_with_time_zone(Tokens::CreatedAt))
                    .col(timestamp_with_time_zone_null(Tokens::ExpiresAt))
                    .col(timestamp_with_time_zone_null(Tokens::LastUsedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_tokens_user_id")
                            .from(Tokens::Table, Tokens::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade)
                            .on_update(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // Names are unique per user in the database itself, so concurrent creates cannot both win.
        manager
            .create_index(
                Index::create()
                    .name("ux_tokens_user_id_name")
                    .table(Tokens::Table)
                    .col(Tokens::UserId)
                    .col(Tokens::Name)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // Pruning and per-user expiry checks scan by expiry.
        manager
            .create_index(
                Index::create()
                    .name("ix_tokens_expires_at")
                    .table(Tokens::Table)
                    .col(Tokens::ExpiresAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Tokens::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Tokens {
    Table,
    Id,
    UserId,
    Name,
    Kind,
    KeyDigest,
    KeyPrefix,
    CreatedAt,
    ExpiresAt,
    LastUsedAt,
}
