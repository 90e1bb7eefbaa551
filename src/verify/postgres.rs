//! PostgreSQL only: the verification lookup through connections owned by the calling worker (see
//! `own_connections` for why). One constant statement, prepared once per connection: a miss is
//! one round trip, bind-execute-sync, one row back, with the digest written into a buffer on the
//! stack. The same checks follow as for every lookup, and anything unexpected falls back to the
//! shared pool, which then reports the error as before.

use std::str::FromStr;

use sea_orm::sqlx::{
    self, ConnectOptions,
    postgres::{PgConnectOptions, PgConnection},
};

use super::{
    direct::{self, LOOKUP_SQL, Unanswered},
    own_connections::{OfThisThread, query_on_own},
};
use crate::{
    auth::key::KeyDigest,
    entities::{tokens, users},
};

thread_local! {
    static WORKER_CONNECTIONS: OfThisThread<PgConnection> = OfThisThread::default();
}

/// The token stored under `digest` with its owner, from the database at `url`.
pub async fn find(
    url: &str,
    digest: &KeyDigest,
) -> Result<Option<(tokens::Model, users::Model)>, Unanswered> {
    let mut hex = [0u8; 64];
    let hex = digest.write_hex(&mut hex);
    let options = |url: &str| Ok(PgConnectOptions::from_str(url)?.disable_statement_logging());
    let row = query_on_own(&WORKER_CONNECTIONS, url, options, async |connection| {
        sqlx::query(LOOKUP_SQL)
            .bind(hex)
            .fetch_optional(connection)
            .await
    })
    .await?;
    row.as_ref().map(direct::decode).transpose()
}
