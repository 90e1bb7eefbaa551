use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Login attempts, for throttling password guessing. Kept in the database (unless Redis is
/// configured) so that every instance on one database counts the same attempts.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(LoginAttempts::Table)
                    .if_not_exists()
                    .col(pk_uuid(LoginAttempts::Id))
                    // A digest of the username, or a client address: never a password.
                    .col(string_len(LoginAttempts::ThrottleKey, 80))
                    .col(timestamp_with_time_zone(LoginAttempts::AttemptedAt))
                    // False while the password is being checked; true once it proved wrong.
                    .col(boolean(LoginAttempts::Failed))
                    .to_owned(),
            )
            .await?;
        // Each login reads the recent attempts of its two keys.
        manager
            .create_index(
                Index::create()
                    .name("ix_login_attempts_key_time")
                    .table(LoginAttempts::Table)
                    .col(LoginAttempts::ThrottleKey)
                    .col(LoginAttempts::AttemptedAt)
                    .to_owned(),
            )
            .await?;
        // The sweeper deletes attempts too old to matter.
        manager
            .create_index(
                Index::create()
                    .name("ix_login_attempts_time")
                    .table(LoginAttempts::Table)
                    .col(LoginAttempts::AttemptedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(LoginAttempts::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum LoginAttempts {
    Table,
    Id,
    ThrottleKey,
    AttemptedAt,
    Failed,
}
