//! The database's answer for one digest: on SQLite a direct read on the calling thread (see
//! `sqlite`), else (or when that cannot answer) one query through the pool. Reads only.

use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};

use super::{
    checks::{self, AuthError, Authenticated},
    sqlite,
};
use crate::{
    auth::key::KeyDigest,
    entities::{tokens, users},
};

/// Where a cache miss reads from.
pub struct Lookup {
    db: DatabaseConnection,
    /// The SQLite file, read directly on a miss.
    sqlite_file: Option<String>,
}

impl Lookup {
    pub fn new(db: DatabaseConnection, sqlite_file: Option<String>) -> Lookup {
        Lookup { db, sqlite_file }
    }

    /// The token and owner stored under `digest`, through every check of [`checks::accept`].
    pub async fn authenticate(&self, digest: &KeyDigest) -> Result<Authenticated, AuthError> {
        if let Some(file) = &self.sqlite_file {
            match sqlite::find(file, digest) {
                Ok(found) => return accept_found(digest, found),
                Err(why) => log::warn!("direct SQLite lookup fell back to the pool: {}", why.0),
            }
        }
        let found = pooled(&self.db, digest).await?;
        accept_found(digest, found)
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

fn accept_found(
    digest: &KeyDigest,
    found: Option<(tokens::Model, Option<users::Model>)>,
) -> Result<Authenticated, AuthError> {
    let (token, user) = found.ok_or(AuthError::Invalid)?;
    checks::accept(digest, token, user)
}
