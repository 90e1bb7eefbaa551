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
    own_connections::{Connections, OfThisThread},
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
    let connections = Connections::of_this_thread(&WORKER_CONNECTIONS, url, |url| {
        Ok(MySqlConnectOptions::from_str(url)?.disable_statement_logging())
    })?;
    let mut connection = connections.take().await?;
    let mut hex = [0u8; 64];
    let hex = digest.write_hex(&mut hex);
    let row = sqlx::query(LOOKUP_SQL_MARIADB)
        .bind(hex)
        .bind(hex)
        .fetch_optional(connection.get())
        .await?;
    connection.give_back();
    row.as_ref().map(direct::decode).transpose()
}
