use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// How often each token was used, and refused, per hour: counted in memory and added here in
/// the same batches as `last_used_at` (never a write per request), kept for the retention
/// period (`MULTITOKEN_USAGE_RETENTION`). Gone with its token.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(TokenUsage::Table)
                    .if_not_exists()
                    .col(uuid(TokenUsage::TokenId))
                    // The hour's start, UTC.
                    .col(timestamp_with_time_zone(TokenUsage::Hour))
                    .col(big_integer(TokenUsage::Uses).default(0))
                    .col(big_integer(TokenUsage::Refused).default(0))
                    .primary_key(
                        Index::create()
                            .col(TokenUsage::TokenId)
                            .col(TokenUsage::Hour),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(TokenUsage::Table, TokenUsage::TokenId)
                            .to(Tokens::Table, Tokens::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // Pruning and the admins' overview read by hour across tokens.
        manager
            .create_index(
                Index::create()
                    .name("ix_token_usage_hour")
                    .table(TokenUsage::Table)
                    .col(TokenUsage::Hour)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(TokenUsage::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum TokenUsage {
    Table,
    TokenId,
    Hour,
    Uses,
    Refused,
}

#[derive(DeriveIden)]
enum Tokens {
    Table,
    Id,
}
