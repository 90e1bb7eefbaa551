use sea_orm_migration::prelude::*;

use crate::m20261129_000001_create_users::Users;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Uniqueness by what a name looks like: the application stores each name's skeleton (NFKC,
/// case-folded, invisible characters removed, confusables mapped; `services::names::skeleton`)
/// beside it, and these unique indexes refuse a second name with the same one, so concurrent
/// look-alikes cannot both win. Rows from before this migration get theirs when the application
/// starts (a migration cannot run the application's code); until then they hold NULL, which no
/// unique index compares.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite's ALTER TABLE adds one at a time.
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .add_column(ColumnDef::new(Skeletons::UsernameSkeleton).text().null())
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Tokens::Table)
                    .add_column(ColumnDef::new(Skeletons::NameSkeleton).text().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_users_username_skeleton")
                    .table(Users::Table)
                    .col(Skeletons::UsernameSkeleton)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_tokens_user_id_name_skeleton")
                    .table(Tokens::Table)
                    .col(Tokens::UserId)
                    .col(Skeletons::NameSkeleton)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("ux_tokens_user_id_name_skeleton")
                    .table(Tokens::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("ux_users_username_skeleton")
                    .table(Users::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Tokens::Table)
                    .drop_column(Skeletons::NameSkeleton)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .drop_column(Skeletons::UsernameSkeleton)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Tokens {
    Table,
    UserId,
}

#[derive(DeriveIden)]
enum Skeletons {
    UsernameSkeleton,
    NameSkeleton,
}
