use sea_orm_migration::{
    prelude::*,
    sea_orm::{ConnectionTrait, DbBackend, Statement},
};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// MariaDB only; nothing on SQLite or PostgreSQL.
///
/// - Times: the schema helpers make `TIMESTAMP` columns there, which hold whole seconds only and
///   end in January 2038. Every one becomes `DATETIME(6)` (microseconds, to year 9999), stored as
///   UTC like the other backends (the driver's sessions run at `+00:00`).
/// - Text: every table becomes `utf8mb4` (emoji names) with the binary collation, so that
///   equality is exact as on the other backends (`utf8mb4_general_ci` would make `Thermostat`
///   and `thermostat` one value, and `é` equal `e`; our own look-alike rules decide that, through
///   the skeleton columns).
/// - `revocation_log`: MariaDB has no LISTEN/NOTIFY. A transaction that revokes inserts its
///   announcements here and they become visible when, and only when, it commits; every instance
///   polls the rows of the last seconds (`verify::revocations::poll`). Rows older than a minute
///   are deleted by the pollers.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::MySql {
            return Ok(());
        }
        let db = manager.get_connection();
        let columns = db
            .query_all_raw(Statement::from_string(
                DbBackend::MySql,
                "SELECT table_name, column_name, is_nullable FROM information_schema.columns \
                 WHERE table_schema = DATABASE() AND data_type = 'timestamp' \
                 ORDER BY table_name, ordinal_position",
            ))
            .await?;
        for column in columns {
            let table: String = column.try_get_by_index(0)?;
            let name: String = column.try_get_by_index(1)?;
            let nullable: String = column.try_get_by_index(2)?;
            let null = if nullable == "YES" {
                "NULL"
            } else {
                "NOT NULL"
            };
            db.execute_unprepared(&format!(
                "ALTER TABLE `{table}` MODIFY `{name}` DATETIME(6) {null}"
            ))
            .await?;
        }
        let tables = db
            .query_all_raw(Statement::from_string(
                DbBackend::MySql,
                "SELECT table_name FROM information_schema.tables \
                 WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE'",
            ))
            .await?;
        for table in tables {
            let table: String = table.try_get_by_index(0)?;
            db.execute_unprepared(&format!(
                "ALTER TABLE `{table}` CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
            ))
            .await?;
        }
        db.execute_unprepared(
            "CREATE TABLE revocation_log (\
               id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, \
               payload VARCHAR(128) NOT NULL, \
               noted_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), \
               INDEX ix_revocation_log_noted_at (noted_at)\
             ) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::MySql {
            return Ok(());
        }
        manager
            .get_connection()
            .execute_unprepared("DROP TABLE IF EXISTS revocation_log")
            .await?;
        Ok(())
    }
}
