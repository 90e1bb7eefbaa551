//! PostgreSQL only: the verification lookup through connections owned by the calling worker.
//!
//! Through the shared pool a cache miss cost two round trips, not one: sqlx's pool tests every
//! connection it takes back (a `Sync` and a wait for `ReadyForQuery`, from a task it spawns for
//! the purpose), and the pool's connections are watched by whichever runtime opened them, so a
//! worker's lookup could wait on another thread's event loop; on top of that the SeaORM query was
//! built, and its row read back by column name, on every miss. With the cache off, `/api/me/` got
//! 0.24 of what `pgbench -M prepared` got from the same query (BENCHMARKS.md, "The hot path").
//!
//! Here each HTTP worker thread keeps a few connections of its own, opened on that thread as
//! needed, and sends one constant statement (prepared once per connection: a miss is one round
//! trip, bind-execute-sync, one row back) with the digest written into a buffer on the stack. A
//! connection goes back to its worker only after a lookup finished cleanly; one that failed, or
//! whose request was dropped mid-query, is closed. The same checks follow as for every lookup,
//! and anything unexpected falls back to the shared pool, which then reports the error as before.

use std::{
    cell::{Cell, RefCell},
    collections::HashMap,
    rc::Rc,
    str::FromStr,
    time::Duration,
};

use sea_orm::{
    ActiveEnum,
    sqlx::{
        self, ConnectOptions, Connection, Row,
        postgres::{PgConnectOptions, PgConnection, PgRow},
    },
};
use tokio::sync::Notify;

use super::direct::{LOOKUP_SQL, Unanswered};
use crate::{
    auth::key::KeyDigest,
    entities::{
        tokens::{self, TokenKind},
        users,
    },
};

/// Connections per HTTP worker, opened as needed: with the default two workers, eight in all.
/// More only queue inside PostgreSQL on a small machine (see BENCHMARKS.md).
const CONNECTIONS_PER_WORKER: u32 = 4;

/// As the shared pool's: past this, the lookup goes to the pool (which reports the trouble).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

thread_local! {
    /// This thread's connections to each database it has looked up in, by URL.
    static WORKER_CONNECTIONS: RefCell<HashMap<String, Rc<Connections>>> =
        RefCell::new(HashMap::new());
}

/// The token stored under `digest` with its owner, from the database at `url`.
pub async fn find(
    url: &str,
    digest: &KeyDigest,
) -> Result<Option<(tokens::Model, users::Model)>, Unanswered> {
    let connections = Connections::of_this_thread(url)?;
    let mut connection = connections.take().await?;
    let mut hex = [0u8; 64];
    let row = sqlx::query(LOOKUP_SQL)
        .bind(digest.write_hex(&mut hex))
        .fetch_optional(connection.get())
        .await?;
    connection.give_back();
    row.as_ref().map(decode).transpose()
}

/// One worker's connections to one database. Single-threaded (it lives in a thread-local), so
/// plain cells suffice; `Notify` wakes a lookup waiting for a connection to come back.
struct Connections {
    options: PgConnectOptions,
    idle: RefCell<Vec<PgConnection>>,
    open: Cell<u32>,
    returned: Notify,
}

impl Connections {
    fn of_this_thread(url: &str) -> Result<Rc<Connections>, Unanswered> {
        WORKER_CONNECTIONS.with(|all| {
            let mut all = all.borrow_mut();
            if let Some(connections) = all.get(url) {
                return Ok(connections.clone());
            }
            let connections = Rc::new(Connections {
                options: PgConnectOptions::from_str(url)?.disable_statement_logging(),
                idle: RefCell::new(Vec::new()),
                open: Cell::new(0),
                returned: Notify::new(),
            });
            all.insert(url.to_owned(), connections.clone());
            Ok(connections)
        })
    }

    /// An idle connection, a new one while fewer than the limit are open, else the next one
    /// given back. Cancellation-safe: a lookup dropped while connecting (its request failed on
    /// another extractor, say) gives its place back through `Taken`'s drop.
    async fn take(self: &Rc<Self>) -> Result<Taken, Unanswered> {
        loop {
            if let Some(connection) = self.idle.borrow_mut().pop() {
                return Ok(self.place(Some(connection)));
            }
            if self.open.get() < CONNECTIONS_PER_WORKER {
                self.open.set(self.open.get() + 1);
                let mut taken = self.place(None);
                let connecting = PgConnection::connect_with(&self.options);
                let connection = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
                    .await
                    .map_err(|_| Unanswered("no connection within 10 s".into()))??;
                taken.connection = Some(connection);
                return Ok(taken);
            }
            self.returned.notified().await;
        }
    }

    fn place(self: &Rc<Self>, connection: Option<PgConnection>) -> Taken {
        Taken {
            connection,
            home: self.clone(),
            given_back: false,
        }
    }

    fn closed(&self) {
        self.open.set(self.open.get() - 1);
        self.returned.notify_one();
    }
}

/// One of a worker's places, taken: its connection is given back after a clean lookup; dropped
/// any other way (an error, a request dropped mid-query or mid-connect) the connection, whose
/// protocol state is unknown, is closed and the place freed.
struct Taken {
    connection: Option<PgConnection>,
    home: Rc<Connections>,
    given_back: bool,
}

impl Taken {
    fn get(&mut self) -> &mut PgConnection {
        self.connection.as_mut().expect("connected before use")
    }

    fn give_back(mut self) {
        if let Some(connection) = self.connection.take() {
            self.home.idle.borrow_mut().push(connection);
            self.given_back = true;
            self.home.returned.notify_one();
        }
    }
}

impl Drop for Taken {
    fn drop(&mut self) {
        if !self.given_back {
            self.home.closed();
        }
    }
}

fn decode(row: &PgRow) -> Result<(tokens::Model, users::Model), Unanswered> {
    let stored: &str = row.try_get(3)?;
    let kind = TokenKind::try_from_value(&stored.to_owned())
        .map_err(|_| Unanswered(format!("unknown token kind {stored:?}")))?;
    let token = tokens::Model {
        id: row.try_get(0)?,
        user_id: row.try_get(1)?,
        name: row.try_get(2)?,
        name_skeleton: None, // not read: `checks::accept` drops it
        kind,
        key_digest: row.try_get(4)?,
        key_prefix: row.try_get(5)?,
        created_at: row.try_get(6)?,
        expires_at: row.try_get(7)?,
        last_used_at: row.try_get(8)?,
        description: row.try_get(14)?,
        read_only: row.try_get(15)?,
        scopes: row.try_get(16)?,
        allowed_ips: row.try_get(17)?,
        pin_ip: row.try_get(18)?,
        idle_expiry_days: row.try_get(19)?,
        remaining_uses: row.try_get(20)?,
        metadata: row.try_get(21)?,
        // Not read: written back by `last_used`, never needed to verify.
        last_used_ip: None,
        last_used_user_agent: None,
        previous_key_digest: row.try_get(22)?,
        previous_key_expires_at: row.try_get(23)?,
        retire_previous_on_use: row.try_get(24)?,
        rate_limit_per_minute: row.try_get(25)?,
    };
    let user = users::Model {
        id: token.user_id,
        username: row.try_get(9)?,
        username_key: row.try_get(10)?,
        username_skeleton: None, // not read: `checks::accept` drops it
        // Never needed past authentication (`checks::accept` drops it too).
        password_hash: String::new(),
        is_admin: row.try_get(11)?,
        is_active: row.try_get(12)?,
        created_at: row.try_get(13)?,
    };
    Ok((token, user))
}
