//! The shared test database (`tests/common/test_database.rs`), and direct reads of the tokens
//! table, for what must hold whatever the server says.

use std::collections::HashMap;

use multitoken::entities::tokens;
use sea_orm::{Database, EntityTrait};

pub use crate::test_database::{Backend, TestDatabase};

impl TestDatabase {
    /// Every row of the tokens table, by key digest (hex), read past the server.
    pub async fn tokens_by_digest(&self) -> HashMap<String, tokens::Model> {
        let db = Database::connect(self.url.as_str())
            .await
            .expect("connect to the test database");
        let rows = tokens::Entity::find()
            .all(&db)
            .await
            .expect("read the tokens table");
        db.close().await.ok();
        rows.into_iter()
            .map(|row| (row.key_digest.clone(), row))
            .collect()
    }
}

/// The digest the server stores for `key` (hex SHA-256).
pub fn digest_of(key: &str) -> String {
    multitoken::auth::key::TokenKey::parse(key)
        .unwrap_or_else(|e| panic!("the server handed out a malformed key: {e:?}"))
        .digest()
        .to_hex()
}
