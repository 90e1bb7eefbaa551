//! The database's answer for one digest: on SQLite a direct read on the calling thread (see
//! `sqlite`), on PostgreSQL one prepared statement through the calling worker's own connections
//! (see `postgres`); when either cannot answer, one query through the shared pool. Reads only.

use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};

use super::{
    checks::{self, AuthError, Authenticated},
    postgres, sqlite,
};
use crate::{
    auth::key::KeyDigest,
    db,
    entities::{tokens, users},
};

/// Where a cache miss reads from.
pub struct Lookup {
    db: DatabaseConnection,
    direct: Direct,
}

/// The path that answers a miss without the shared pool.
enum Direct {
    /// The SQLite file, read on the calling thread.
    Sqlite(String),
    /// The PostgreSQL URL, for the calling worker's own connections.
    Postgres(String),
    /// Neither: every lookup goes through the pool.
    Pool,
}

impl Lookup {
    /// Lookups in `db`, reached at `database_url`.
    pub fn new(db: DatabaseConnection, database_url: &str) -> Lookup {
        let direct = if let Some(file) = db::sqlite_file(database_url) {
            Direct::Sqlite(file)
        } else if database_url.starts_with("postgres") {
            Direct::Postgres(database_url.to_owned())
        } else {
            Direct::Pool
        };
        Lookup { db, direct }
    }

    /// The token and owner stored under `digest`, through every check of [`checks::accept`].
    pub async fn authenticate(&self, digest: &KeyDigest) -> Result<Authenticated, AuthError> {
        let direct = match &self.direct {
            Direct::Sqlite(file) => Some(sqlite::find(file, digest).map_err(|why| why.0)),
            Direct::Postgres(url) => Some(postgres::find(url, digest).await.map_err(|why| why.0)),
            Direct::Pool => None,
        };
        let found = match direct {
            Some(Ok(found)) => found.map(|(token, user)| (token, Some(user))),
            Some(Err(why)) => {
                log::warn!("direct lookup fell back to the pool: {why}");
                pooled(&self.db, digest).await?
            }
            None => pooled(&self.db, digest).await?,
        };
        let (token, user) = found.ok_or(AuthError::Invalid)?;
        checks::accept(digest, token, user)
    }
}

/// One query through the pool: the token with its owner.
pub async fn pooled(
    db: &DatabaseConnection,
    digest: &KeyDigest,
) -> Result<Option<(tokens::Model, Option<users::Model>)>, AuthError> {
    Ok(tokens::Entity::find()
        .filter(tokens::Column::KeyDigest.eq(digest.to_hex()))
        .find_also_related(users::Entity)
        .one(db)
        .await?)
}
