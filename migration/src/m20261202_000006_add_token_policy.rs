use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Each token's policy (`services::tokens::policy`) and what its last use came from. Every
/// column has a default meaning "as before" (full access, anywhere, unlimited) or is NULL, so
/// existing rows keep today's behaviour. Lists are plain text (space-separated words, JSON for
/// metadata) rather than arrays or JSON columns, so that one schema serves every database.
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
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
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
        ColumnDef::new(Tokens::Description)
            .text()
            .not_null()
            .default("")
            .to_owned(),
        ColumnDef::new(Tokens::ReadOnly)
            .boolean()
            .not_null()
            .default(false)
            .to_owned(),
        // Space-separated scopes; '' for none.
        ColumnDef::new(Tokens::Scopes)
            .text()
            .not_null()
            .default("")
            .to_owned(),
        // Space-separated normalized CIDRs; '' for anywhere.
        ColumnDef::new(Tokens::AllowedIps)
            .text()
            .not_null()
            .default("")
            .to_owned(),
        ColumnDef::new(Tokens::PinIp)
            .boolean()
            .not_null()
            .default(false)
            .to_owned(),
        ColumnDef::new(Tokens::IdleExpiryDays)
            .integer()
            .null()
            .to_owned(),
        // NULL for unlimited; taken one at a time by a conditional UPDATE.
        ColumnDef::new(Tokens::RemainingUses)
            .big_integer()
            .null()
            .to_owned(),
        // A JSON object as compact text.
        ColumnDef::new(Tokens::Metadata)
            .text()
            .not_null()
            .default("{}")
            .to_owned(),
        ColumnDef::new(Tokens::LastUsedIp).text().null().to_owned(),
        ColumnDef::new(Tokens::LastUsedUserAgent)
            .text()
            .null()
            .to_owned(),
    ]
}

#[derive(DeriveIden)]
enum Tokens {
    Table,
    Description,
    ReadOnly,
    Scopes,
    AllowedIps,
    PinIp,
    IdleExpiryDays,
    RemainingUses,
    Metadata,
    LastUsedIp,
    LastUsedUserAgent,
}
