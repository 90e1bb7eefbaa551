//! MariaDB and MySQL only: the verification lookup through connections owned by the calling
//! worker, as on PostgreSQL (see `own_connections`). The statement names the digest twice, so it
//! is bound twice; sqlx prepares it once per connection.

use std::str::FromStr;

use sea_orm::sqlx::{
    self, ConnectOptions,
    mysql::{MySqlConnectOptions, MySqlConnection},
};

use super::{
    direct::{self, LOOKUP_SQL_MARIADB, Unanswered},
    own_connections::{OfThisThread, query_on_own},
};
use crate::{
    auth::key::KeyDigest,
    entities::{tokens, users},
};

thread_local! {
    static WORKER_CONNECTIONS: OfThisThread<MySqlConnection> = OfThisThread::default();
}

/// The token stored under `digest` with its owner, from the database at `url`.
pub async fn find(
    url: &str,
    digest: &KeyDigest,
) -> Result<Option<(tokens::Model, users::Model)>, Unanswered> {
    let mut hex = [0u8; 64];
    let hex = digest.write_hex(&mut hex);
    let options = |url: &str| Ok(MySqlConnectOptions::from_str(url)?.disable_statement_logging());
    let row = query_on_own(&WORKER_CONNECTIONS, url, options, async |connection| {
        sqlx::query(LOOKUP_SQL_MARIADB)
            .bind(hex)
            .bind(hex)
            .fetch_optional(connection)
            .await
    })
    .await?;
    row.as_ref().map(direct::decode).transpose()
}
