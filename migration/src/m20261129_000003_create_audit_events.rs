use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // No foreign keys: the record of what happened outlives the users and tokens it names.
        manager
            .create_table(
                Table::create()
                    .table(AuditEvents::Table)
                    .if_not_exists()
                    .col(pk_uuid(AuditEvents::Id))
                    .col(timestamp_with_time_zone(AuditEvents::OccurredAt))
                    .col(string_len(AuditEvents::Action, 32))
                    .col(uuid_null(AuditEvents::ActorId))
                    .col(string_len(AuditEvents::ActorName, 256))
                    .col(string_len_null(AuditEvents::ClientAddress, 64))
                    .col(string_len(AuditEvents::TargetType, 16))
                    .col(uuid_null(AuditEvents::TargetId))
                    .col(string_len(AuditEvents::TargetName, 256))
                    .col(string_len_null(AuditEvents::TargetOwner, 256))
                    .col(string_len_null(AuditEvents::Detail, 256))
                    .to_owned(),
            )
            .await?;
        // The log is read newest first, a page at a time.
        manager
            .create_index(
                Index::create()
                    .name("ix_audit_events_occurred_at")
                    .table(AuditEvents::Table)
                    .col(AuditEvents::OccurredAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AuditEvents::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    Id,
    OccurredAt,
    Action,
    ActorId,
    ActorName,
    ClientAddress,
    TargetType,
    TargetId,
    TargetName,
    TargetOwner,
    Detail,
}
