use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Rotation without downtime: a rotated token keeps its previous key's digest beside the new
/// one until the grace ends, so the one lookup by digest finds the row by either key (no second
/// query, no write per request). Unique like the current digest; NULL when there is none.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite's ALTER TABLE adds one at a time.
        for column in columns() {
            manager
                .alter_table(
                    Table::alter()
                        .table(Tokens::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("ux_tokens_previous_key_digest")
                    .table(Tokens::Table)
                    .col(Tokens::PreviousKeyDigest)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("ux_tokens_previous_key_digest")
                    .table(Tokens::Table)
                    .to_owned(),
            )
            .await?;
        for column in columns().iter().rev() {
            manager
                .alter_table(
                    Table::alter()
                        .table(Tokens::Table)
                        .drop_column(column.get_column_name())
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

fn columns() -> Vec<ColumnDef> {
    vec![
        ColumnDef::new(Tokens::PreviousKeyDigest)
            .string_len(64)
            .null()
            .to_owned(),
        ColumnDef::new(Tokens::PreviousKeyExpiresAt)
            .timestamp_with_time_zone()
            .null()
            .to_owned(),
        // A self-rotation: the previous key stops as soon as the new one is used.
        ColumnDef::new(Tokens::RetirePreviousOnUse)
            .boolean()
            .not_null()
            .default(false)
            .to_owned(),
    ]
}

#[derive(DeriveIden)]
enum Tokens {
    Table,
    PreviousKeyDigest,
    PreviousKeyExpiresAt,
    RetirePreviousOnUse,
}
