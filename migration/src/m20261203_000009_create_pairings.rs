use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Device pairing (the RFC 8628 device flow): a device asks for a pair of codes, its owner
/// approves the short one in a browser, the device collects its token with the long one. Both
/// codes are kept as digests only. Rows are short-lived and pruned after they expire.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Pairings::Table)
                    .if_not_exists()
                    .col(pk_uuid(Pairings::Id))
                    .col(string_len_uniq(Pairings::DeviceCodeDigest, 64))
                    .col(string_len_uniq(Pairings::UserCodeDigest, 64))
                    .col(string_len_null(Pairings::SuggestedName, 64))
                    // The address the device asked from, for the owner and the audit log.
                    .col(string_len_null(Pairings::DeviceAddress, 64))
                    .col(timestamp_with_time_zone(Pairings::CreatedAt))
                    .col(timestamp_with_time_zone(Pairings::ExpiresAt))
                    .col(integer(Pairings::IntervalSeconds))
                    .col(timestamp_with_time_zone_null(Pairings::LastPolledAt))
                    // pending, approved, denied or collected.
                    .col(string_len(Pairings::State, 16))
                    // The approved device token; its key is made when the device collects it.
                    .col(uuid_null(Pairings::TokenId))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Pairings::Table, Pairings::TokenId)
                            .to(Tokens::Table, Tokens::Id)
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;
        // Pruning takes the expired; starting counts one address's waiting pairings.
        manager
            .create_index(
                Index::create()
                    .name("ix_pairings_expires_at")
                    .table(Pairings::Table)
                    .col(Pairings::ExpiresAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_pairings_device_address")
                    .table(Pairings::Table)
                    .col(Pairings::DeviceAddress)
                    .col(Pairings::ExpiresAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Pairings::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Pairings {
    Table,
    Id,
    DeviceCodeDigest,
    UserCodeDigest,
    SuggestedName,
    DeviceAddress,
    CreatedAt,
    ExpiresAt,
    IntervalSeconds,
    LastPolledAt,
    State,
    TokenId,
}

#[derive(DeriveIden)]
enum Tokens {
    Table,
    Id,
}
