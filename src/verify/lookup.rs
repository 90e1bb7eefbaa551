//! The database's answer for one digest: on SQLite a direct read on the calling thread (see
//! `sqlite`), on PostgreSQL and MariaDB one prepared statement through the calling worker's own
//! connections (see `postgres`, `mariadb`); when a direct path cannot answer, one query through
//! the shared pool, counted for `/metrics`. Reads only.

use std::sync::Arc;

use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QuerySelect, TransactionTrait,
    sea_query::{Expr, ExprTrait},
};
use uuid::Uuid;

use super::{
    bus,
    checks::{self, AuthError, Authenticated},
    mariadb, postgres, sqlite,
};
use crate::{
    auth::key::KeyDigest,
    db,
    entities::{tokens, users},
    metrics::Metrics,
};

/// Where a cache miss reads from.
pub struct Lookup {
    db: DatabaseConnection,
    direct: Direct,
    /// Where fallbacks to the pool are counted.
    metrics: Arc<Metrics>,
}

/// The path that answers a miss without the shared pool.
enum Direct {
    /// The SQLite file, read on the calling thread.
    Sqlite(String),
    /// The PostgreSQL URL, for the calling worker's own connections.
    Postgres(String),
    /// The MariaDB (MySQL) URL, likewise.
    MariaDb(String),
    /// Neither: every lookup goes through the pool.
    Pool,
}

impl Lookup {
    /// Lookups in `db`, reached at `database_url`, counting into `metrics`.
    pub fn new(db: DatabaseConnection, database_url: &str, metrics: Arc<Metrics>) -> Lookup {
        let direct = if let Some(file) = db::sqlite_file(database_url) {
            Direct::Sqlite(file)
        } else if database_url.starts_with("postgres") {
            Direct::Postgres(database_url.to_owned())
        } else if database_url.starts_with("mysql") {
            Direct::MariaDb(database_url.to_owned())
        } else {
            Direct::Pool
        };
        Lookup {
            db,
            direct,
            metrics,
        }
    }

    /// The token and owner stored under `digest`, through every check of [`checks::accept`].
    pub async fn authenticate(&self, digest: &KeyDigest) -> Result<Authenticated, AuthError> {
        let direct = match &self.direct {
            Direct::Sqlite(file) => Some(sqlite::find(file, digest).map_err(|why| why.0)),
            Direct::Postgres(url) => Some(postgres::find(url, digest).await.map_err(|why| why.0)),
            Direct::MariaDb(url) => Some(mariadb::find(url, digest).await.map_err(|why| why.0)),
            Direct::Pool => None,
        };
        let found = match direct {
            Some(Ok(found)) => found.map(|(token, user)| (token, Some(user))),
            Some(Err(why)) => {
                log::warn!("direct lookup fell back to the pool: {why}");
                Metrics::count(&self.metrics.direct_lookup_fallbacks);
                pooled(&self.db, digest).await?
            }
            None => pooled(&self.db, digest).await?,
        };
        let (token, user) = found.ok_or(AuthError::Invalid)?;
        checks::accept(digest, token, user)
    }
}

impl Lookup {
    /// Takes one of a limited token's uses: the uses left after it, or `None` when none was left.
    /// One conditional update (returning the row), so concurrent uses on any number of instances
    /// never take more than there were.
    pub async fn take_use(&self, token: Uuid) -> Result<Option<i64>, AuthError> {
        if !self.db.support_returning() {
            return self.take_use_locked(token).await;
        }
        let taken = tokens::Entity::update_many()
            .col_expr(
                tokens::Column::RemainingUses,
                Expr::col(tokens::Column::RemainingUses).sub(1),
            )
            .filter(tokens::Column::Id.eq(token))
            .filter(tokens::Column::RemainingUses.gt(0))
            .exec_with_returning(&self.db)
            .await?;
        Ok(taken.first().and_then(|row| row.remaining_uses))
    }

    /// `take_use` where `UPDATE … RETURNING` does not exist (MariaDB): the row is read under an
    /// exclusive lock, so concurrent uses queue on it, and updated in the same transaction.
    async fn take_use_locked(&self, token: Uuid) -> Result<Option<i64>, AuthError> {
        let txn = self.db.begin().await?;
        let left: Option<Option<i64>> = tokens::Entity::find_by_id(token)
            .select_only()
            .column(tokens::Column::RemainingUses)
            .lock_exclusive()
            .into_tuple()
            .one(&txn)
            .await?;
        let Some(Some(left @ 1..)) = left else {
            return Ok(None);
        };
        tokens::Entity::update_many()
            .col_expr(tokens::Column::RemainingUses, Expr::value(left - 1))
            .filter(tokens::Column::Id.eq(token))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(Some(left - 1))
    }

    /// Ends a self-rotated token's previous key now that its new key was used: one conditional
    /// update (whoever comes first retires it), announced to other instances like a revocation
    /// (they may hold the previous key in their caches); true when this call retired it.
    pub async fn retire_previous(&self, token: Uuid) -> Result<bool, AuthError> {
        let txn = self.db.begin().await?;
        let retired = tokens::Entity::update_many()
            .col_expr(
                tokens::Column::PreviousKeyDigest,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                tokens::Column::PreviousKeyExpiresAt,
                Expr::value(Option::<chrono::DateTime<chrono::Utc>>::None),
            )
            .col_expr(tokens::Column::RetirePreviousOnUse, Expr::value(false))
            .filter(tokens::Column::Id.eq(token))
            .filter(tokens::Column::RetirePreviousOnUse.eq(true))
            .exec(&txn)
            .await?;
        if retired.rows_affected == 1 {
            bus::announce(&txn, &bus::token_payload(token)).await?;
        }
        txn.commit().await?;
        Ok(retired.rows_affected == 1)
    }

    /// Pins a `pin_ip` token to `network` if it still awaits its pin: true when this call pinned
    /// it (another first use, here or on another instance, may have won).
    pub async fn pin(&self, token: Uuid, network: &str) -> Result<bool, AuthError> {
        let pinned = tokens::Entity::update_many()
            .col_expr(tokens::Column::AllowedIps, Expr::value(network))
            .filter(tokens::Column::Id.eq(token))
            .filter(tokens::Column::PinIp.eq(true))
            .filter(tokens::Column::AllowedIps.eq(""))
            .exec(&self.db)
            .await?;
        Ok(pinned.rows_affected == 1)
    }
}

/// One query through the pool: the token with its owner.
pub async fn pooled(
    db: &DatabaseConnection,
    digest: &KeyDigest,
) -> Result<Option<(tokens::Model, Option<users::Model>)>, AuthError> {
    let hex = digest.to_hex();
    Ok(tokens::Entity::find()
        .filter(
            Condition::any()
                .add(tokens::Column::KeyDigest.eq(hex.as_str()))
                .add(tokens::Column::PreviousKeyDigest.eq(hex.as_str())),
        )
        .find_also_related(users::Entity)
        .one(db)
        .await?)
}
