//! SQLite only: the verification lookup on the calling thread.
//!
//! sqlx runs each SQLite connection on a thread of its own, so every query through it is two
//! thread hand-offs, and those cost far more than the lookup itself (an indexed read of a few
//! microseconds). A profile of `/api/me/` with the cache disabled showed about half of all CPU in
//! the kernel switching threads. So a cache miss (or every request, with the cache disabled) reads
//! through a connection owned by the HTTP worker thread instead: one per worker and database,
//! query-only, with the same statement as the pool's lookup; the same checks follow either way.
//! Anything unexpected (an error, a value in another format) falls back to the pool.
//!
//! Blocking the worker for that read is fine: in WAL mode readers never wait for writers, and
//! the read is shorter than parsing the request.

use std::{cell::RefCell, collections::HashMap, time::Duration};

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, types::ValueRef};
use sea_orm::ActiveEnum;
use uuid::Uuid;

use super::direct::{LOOKUP_SQL, Unanswered};
use crate::{
    auth::key::KeyDigest,
    entities::{
        tokens::{self, TokenKind},
        users,
    },
};

thread_local! {
    static CONNECTIONS: RefCell<HashMap<String, Connection>> = RefCell::new(HashMap::new());
}

/// The token stored under `digest` with its owner, read from the database file at `path`.
pub fn find(
    path: &str,
    digest: &KeyDigest,
) -> Result<Option<(tokens::Model, users::Model)>, Unanswered> {
    let found = CONNECTIONS.with(|connections| -> Result<_, Unanswered> {
        let mut connections = connections.borrow_mut();
        if !connections.contains_key(path) {
            connections.insert(path.to_owned(), open(path)?);
        }
        let connection = connections.get_mut(path).ok_or("connection just opened")?;
        let mut statement = connection.prepare_cached(LOOKUP_SQL)?;
        let mut hex = [0u8; 64];
        let row = statement
            .query_row([digest.write_hex(&mut hex)], |row| Ok(decode(row)))
            .optional()?;
        row.transpose()
    });
    match found {
        Ok(found) => Ok(found),
        Err(error) => {
            // A broken connection is not kept: the next request opens a fresh one.
            CONNECTIONS.with(|connections| connections.borrow_mut().remove(path));
            Err(error)
        }
    }
}

fn open(path: &str) -> Result<Connection, Unanswered> {
    // Not read-only: a read-only connection cannot always use the WAL index. `query_only` keeps
    // it from writing all the same.
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    connection.busy_timeout(Duration::from_secs(1))?;
    connection.pragma_update(None, "query_only", true)?;
    Ok(connection)
}

fn decode(row: &Row<'_>) -> Result<(tokens::Model, users::Model), Unanswered> {
    let stored: String = row.get(3)?;
    let kind = TokenKind::try_from_value(&stored)
        .map_err(|_| Unanswered(format!("unknown token kind {stored:?}")))?;
    let token = tokens::Model {
        id: uuid_at(row, 0)?,
        user_id: uuid_at(row, 1)?,
        name: row.get(2)?,
        name_skeleton: None, // not read: `checks::accept` drops it
        kind,
        key_digest: row.get(4)?,
        key_prefix: row.get(5)?,
        created_at: time_at(row, 6)?.ok_or("no created_at")?,
        expires_at: time_at(row, 7)?,
        last_used_at: time_at(row, 8)?,
        description: row.get(14)?,
        read_only: row.get(15)?,
        scopes: row.get(16)?,
        allowed_ips: row.get(17)?,
        pin_ip: row.get(18)?,
        idle_expiry_days: row.get(19)?,
        remaining_uses: row.get(20)?,
        metadata: row.get(21)?,
        // Not read: written back by `last_used`, never needed to verify.
        last_used_ip: None,
        last_used_user_agent: None,
        previous_key_digest: row.get(22)?,
        previous_key_expires_at: time_at(row, 23)?,
        retire_previous_on_use: row.get(24)?,
        rate_limit_per_minute: row.get(25)?,
    };
    let user = users::Model {
        id: token.user_id,
        username: row.get(9)?,
        username_key: row.get(10)?,
        username_skeleton: None, // not read: `checks::accept` drops it
        // Never needed past authentication (`checks::accept` drops it too).
        password_hash: String::new(),
        is_admin: row.get(11)?,
        is_active: row.get(12)?,
        created_at: time_at(row, 13)?.ok_or("no created_at")?,
    };
    Ok((token, user))
}

/// sqlx stores UUIDs as 16-byte blobs; text is accepted too.
fn uuid_at(row: &Row<'_>, index: usize) -> Result<Uuid, Unanswered> {
    Ok(match row.get_ref(index)? {
        ValueRef::Blob(bytes) => Uuid::from_slice(bytes)?,
        ValueRef::Text(text) => std::str::from_utf8(text)?.parse()?,
        other => return Err(Unanswered(format!("not a UUID: {:?}", other.data_type()))),
    })
}

/// sqlx stores times as RFC 3339 text; anything else goes the slow way.
fn time_at(row: &Row<'_>, index: usize) -> Result<Option<DateTime<Utc>>, Unanswered> {
    match row.get_ref(index)? {
        ValueRef::Null => Ok(None),
        ValueRef::Text(text) => Ok(Some(
            DateTime::parse_from_rfc3339(std::str::from_utf8(text)?)?.with_timezone(&Utc),
        )),
        other => Err(Unanswered(format!("not a time: {:?}", other.data_type()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        auth::key::TokenKey,
        services::{Policy, audit::Actor, tokens as token_service, users as user_service},
        verify::{
            Revocations,
            checks::{self, AuthError},
            lookup::{self, Lookup},
        },
    };

    /// The fast path falls back silently on anything unexpected, so only a direct comparison
    /// shows that it really answers, and answers as the pool's lookup does.
    #[tokio::test]
    async fn the_direct_lookup_answers_exactly_as_the_pool_does() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("multitoken.db");
        let url = format!("sqlite://{}?mode=rwc", file.display());
        let db = crate::db::connect_and_migrate(&url).await.unwrap();
        let policy = Policy {
            session_ttl: Duration::from_secs(3600),
            max_tokens_per_user: 10,
            token_on_signup: false,
            device_idle_expiry_days: None,
        };
        let new = user_service::NewUser {
            username: user_service::Username::parse("Zoë").unwrap(),
            password: "long enough password".into(),
            is_admin: true,
        };
        let (cli, none) = (Actor::command_line(), Revocations::none());
        let user = user_service::create(&db, &none, &policy, &cli, new)
            .await
            .unwrap()
            .user;
        let name = token_service::TokenName::parse("Küche 🌡️").unwrap();
        let lifetime = token_service::Lifetime::For(chrono::TimeDelta::days(3));
        let new_token = token_service::NewToken::device(name, lifetime);
        let issued = token_service::issue(&db, &none, &policy, &cli, &user, new_token)
            .await
            .unwrap();
        let path = crate::db::sqlite_file(&url).unwrap();
        let digest = issued.key.digest();

        let (token, owner) = find(&path, &digest)
            .expect("the direct lookup answers")
            .expect("a stored key");
        let direct = checks::accept(&digest, token, Some(owner)).unwrap();
        let (token, owner) = lookup::pooled(&db, &digest).await.unwrap().unwrap();
        let pooled = checks::accept(&digest, token, owner).unwrap();
        assert!(
            direct.token == pooled.token && direct.user == pooled.user,
            "same answer both ways:\n{direct:?}\n{pooled:?}"
        );

        let unknown = TokenKey::generate().digest();
        assert!(
            matches!(find(&path, &unknown), Ok(None)),
            "an unknown digest finds nothing"
        );
        user_service::set_active(&db, &none, &cli, user.clone(), false)
            .await
            .unwrap();
        let lookup = Lookup::new(db.clone(), &url, Default::default());
        assert!(
            matches!(
                lookup.authenticate(&digest).await,
                Err(AuthError::InactiveUser)
            ),
            "an inactive user's key is refused"
        );
        db.close().await.unwrap();
    }
}
