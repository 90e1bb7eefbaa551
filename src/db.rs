//! The database connection: pool settings per backend, migrations taken in turns by instances
//! starting together.

use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ColumnTrait, Condition, ConnectOptions, ConnectionTrait, Database, DatabaseConnection,
    DbBackend, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, sea_query::Expr,
};
use uuid::Uuid;

use crate::{entities::tokens, services::name_skeletons};

/// Connects with settings fit for a server: on SQLite, WAL (readers never wait for the writer)
/// and a busy timeout (writers queue instead of failing with "database is locked").
pub async fn connect(database_url: &str) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(database_url.to_owned());
    options
        .sqlx_logging(false)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(30))
        .map_sqlx_sqlite_opts(|opts| {
            opts.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(30))
                .foreign_keys(true)
        });
    if database_url.starts_with("sqlite:") {
        // Pinging a local file before each query costs a round trip to the connection's
        // thread and checks nothing: with it, every query was two thread hand-offs instead of one.
        options
            .max_connections(8)
            .min_connections(1)
            .test_before_acquire(false);
    } else {
        // MariaDB only (the other drivers never call it): READ COMMITTED, as on PostgreSQL.
        // InnoDB's default, REPEATABLE READ, also locks the gaps between the rows a statement
        // reads, and concurrent issuances and deletions of one user's tokens deadlocked on them.
        options.map_sqlx_mysql_pool_opts(|pool| {
            pool.after_connect(|connection, _| {
                Box::pin(async move {
                    use sea_orm::sqlx::Executor;
                    connection
                        .execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
                        .await
                        .map(|_| ())
                })
            })
        });
        // A ping on every checkout is a network round trip per query; only a connection idle
        // long enough to have been dropped (by a restart, a proxy, a firewall) is worth testing.
        options
            .max_connections(20)
            .min_connections(2)
            .test_before_acquire_if_idle_for(Duration::from_secs(30));
    }
    Database::connect(options).await
}

/// Connects, applies pending migrations, and fills the name skeletons older rows lack.
pub async fn connect_and_migrate(database_url: &str) -> Result<DatabaseConnection, DbErr> {
    if database_url.starts_with("sqlite:") {
        // Connecting may switch a new file to WAL, which needs the file to itself: so the first
        // connection is made under the lock as well, not only the migration.
        let _lock = lock_sqlite_migrations(database_url).await?;
        let db = connect(database_url).await?;
        Migrator::up(&db, None).await?;
        name_skeletons::fill_missing(&db).await?;
        return Ok(db);
    }
    let db = connect(database_url).await?;
    migrate_holding_lock(database_url).await?;
    name_skeletons::fill_missing(&db).await?;
    Ok(db)
}

/// Processes sharing one SQLite file (a server and a `create-user`, say) take turns to set it up,
/// through an exclusive lock on a file beside the database. Not the database file itself: closing
/// any other handle on it would drop SQLite's own locks.
async fn lock_sqlite_migrations(database_url: &str) -> Result<Option<std::fs::File>, DbErr> {
    let Some(path) = sqlite_file(database_url) else {
        return Ok(None);
    };
    let lock_path = format!("{path}.migrate-lock");
    let lock = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)?;
        file.lock()?;
        Ok(file)
    })
    .await
    .map_err(|e| DbErr::Custom(format!("migration lock task failed: {e}")))?
    .map_err(|e| DbErr::Custom(format!("cannot lock {path}.migrate-lock: {e}")))?;
    Ok(Some(lock))
}

/// Any constant will do, as long as every instance uses the same one.
const MIGRATION_LOCK_ID: i64 = 0x6d74_6d69_6772; // "mtmigr"

/// Instances starting together on one PostgreSQL or MariaDB take turns: the first migrates, the others
/// then find nothing pending. The lock belongs to a session, so it uses a pool of exactly one.
async fn migrate_holding_lock(database_url: &str) -> Result<(), DbErr> {
    let mut options = ConnectOptions::new(database_url.to_owned());
    options
        .max_connections(1)
        .min_connections(1)
        .sqlx_logging(false);
    let session = Database::connect(options).await?;
    let (lock, unlock) = match session.get_database_backend() {
        DbBackend::MySql => (
            // MariaDB's named locks are its advisory locks; the timeout is in seconds.
            format!("SELECT GET_LOCK('multitoken-{MIGRATION_LOCK_ID}', 600)"),
            format!("SELECT RELEASE_LOCK('multitoken-{MIGRATION_LOCK_ID}')"),
        ),
        _ => (
            format!("SELECT pg_advisory_lock({MIGRATION_LOCK_ID})"),
            format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_ID})"),
        ),
    };
    session.execute_unprepared(&lock).await?;
    let migrated = Migrator::up(&session, None).await;
    let unlocked = session.execute_unprepared(&unlock).await;
    session.close().await.ok();
    migrated.and(unlocked.map(|_| ()))
}

/// Deletes the tokens `condition` matches and returns them: one `DELETE … RETURNING` on SQLite
/// and PostgreSQL. On MariaDB, inside the caller's transaction: the matching ids are read
/// without locks, then those rows are locked by primary key (always in id order, so two
/// deletions never wait on each other crosswise) and checked again, then deleted. (MariaDB has
/// `DELETE … RETURNING`, but SeaORM uses `RETURNING` there only when built with
/// `mariadb-use-returning`, which also sends the `UPDATE … RETURNING` MariaDB lacks; and a
/// locking read by `condition` itself locks every row its index range passes, which deadlocked
/// concurrent deletions of one user's tokens.)
pub async fn delete_tokens(
    db: &impl ConnectionTrait,
    condition: Condition,
) -> Result<Vec<tokens::Model>, DbErr> {
    if db.support_returning() {
        return tokens::Entity::delete_many()
            .filter(condition)
            .exec_with_returning(db)
            .await;
    }
    let ids: Vec<Uuid> = tokens::Entity::find()
        .select_only()
        .column(tokens::Column::Id)
        .filter(condition.clone())
        .into_tuple()
        .all(db)
        .await?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = tokens::Entity::find()
        .filter(tokens::Column::Id.is_in(ids))
        .filter(condition)
        .order_by_asc(tokens::Column::Id)
        .lock_exclusive()
        .all(db)
        .await?;
    if !rows.is_empty() {
        tokens::Entity::delete_many()
            .filter(tokens::Column::Id.is_in(rows.iter().map(|row| row.id)))
            .exec(db)
            .await?;
    }
    Ok(rows)
}

/// `SUM(column)` as a 64-bit integer on every backend: PostgreSQL sums a BIGINT into NUMERIC
/// and MariaDB into DECIMAL, and MariaDB's `CAST` says `SIGNED` where the others say `BIGINT`.
pub fn sum_as_integer(backend: DbBackend, column: &str) -> Expr {
    let integer = match backend {
        DbBackend::MySql => "SIGNED",
        _ => "BIGINT",
    };
    Expr::cust(format!("CAST(SUM({column}) AS {integer})"))
}

/// The file behind a `sqlite:` URL; `None` for an in-memory database (which another connection
/// could not see).
pub fn sqlite_file(database_url: &str) -> Option<String> {
    let path = database_url
        .strip_prefix("sqlite:")?
        .trim_start_matches("//")
        .split('?')
        .next()
        .unwrap_or_default();
    (!path.is_empty() && !path.contains(":memory:")).then(|| path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_files_have_a_path() {
        assert_eq!(
            sqlite_file("sqlite:///tmp/x/multitoken.db?mode=rwc").as_deref(),
            Some("/tmp/x/multitoken.db")
        );
        assert_eq!(
            sqlite_file("sqlite://multitoken.db?mode=rwc").as_deref(),
            Some("multitoken.db")
        );
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("postgres://u@h/db"), None);
    }
}
