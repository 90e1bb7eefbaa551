//! Connections owned by the calling worker thread, for the direct lookups on database servers
//! (`postgres`, `mariadb`).
//!
//! Through the shared pool a cache miss cost two round trips, not one: sqlx's pool tests every
//! connection it takes back (a ping, from a task it spawns for the purpose), and the pool's
//! connections are watched by whichever runtime opened them, so a worker's lookup could wait on
//! another thread's event loop; on top of that the SeaORM query was built, and its row read back
//! by column name, on every miss. With the cache off, `/api/me/` got 0.24 of what
//! `pgbench -M prepared` got from the same query (BENCHMARKS.md, "The hot path").
//!
//! Here each HTTP worker thread keeps a few connections of its own, opened on that thread as
//! needed, each sending one constant statement (prepared once per connection by sqlx's statement
//! cache: a miss is one round trip). A connection goes back to its worker only after a lookup
//! finished cleanly; one that failed, or whose request was dropped mid-query, is closed.

use std::{
    cell::{Cell, RefCell},
    collections::HashMap,
    rc::Rc,
    thread::LocalKey,
    time::Duration,
};

use sea_orm::sqlx::Connection;
use tokio::sync::Notify;

use super::direct::Unanswered;

/// Connections per HTTP worker, opened as needed: with the default two workers, eight in all.
/// More only queue inside the database on a small machine (see BENCHMARKS.md).
const CONNECTIONS_PER_WORKER: u32 = 4;

/// As the shared pool's: past this, the lookup goes to the pool (which reports the trouble).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One thread's connections to each database it has looked up in, by URL (a backend module's
/// `thread_local!`).
pub type OfThisThread<C> = RefCell<HashMap<String, Rc<Connections<C>>>>;

/// One worker's connections to one database. Single-threaded (it lives in a thread-local), so
/// plain cells suffice; `Notify` wakes a lookup waiting for a connection to come back.
pub struct Connections<C: Connection> {
    options: C::Options,
    idle: RefCell<Vec<C>>,
    open: Cell<u32>,
    returned: Notify,
}

impl<C: Connection> Connections<C> {
    /// This thread's connections to `url`, made with `options` the first time.
    fn of_this_thread(
        all: &'static LocalKey<OfThisThread<C>>,
        url: &str,
        options: impl FnOnce(&str) -> Result<C::Options, Unanswered>,
    ) -> Result<Rc<Connections<C>>, Unanswered> {
        all.with(|all| {
            let mut all = all.borrow_mut();
            if let Some(connections) = all.get(url) {
                return Ok(connections.clone());
            }
            let connections = Rc::new(Connections {
                options: options(url)?,
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
    async fn take(self: &Rc<Self>) -> Result<Taken<C>, Unanswered> {
        loop {
            if let Some(connection) = self.idle.borrow_mut().pop() {
                return Ok(self.place(Some(connection)));
            }
            if self.open.get() < CONNECTIONS_PER_WORKER {
                self.open.set(self.open.get() + 1);
                let mut taken = self.place(None);
                let connecting = C::connect_with(&self.options);
                let connection = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
                    .await
                    .map_err(|_| Unanswered("no connection within 10 s".into()))??;
                taken.connection = Some(connection);
                return Ok(taken);
            }
            self.returned.notified().await;
        }
    }

    fn place(self: &Rc<Self>, connection: Option<C>) -> Taken<C> {
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

/// Runs `query` on one of this thread's connections to `url` (made with `options` the first
/// time) and gives the connection back only if it succeeded: what both direct lookups on
/// database servers do.
pub async fn query_on_own<C: Connection, T>(
    all: &'static LocalKey<OfThisThread<C>>,
    url: &str,
    options: impl FnOnce(&str) -> Result<C::Options, Unanswered>,
    query: impl AsyncFnOnce(&mut C) -> Result<T, sea_orm::sqlx::Error>,
) -> Result<T, Unanswered> {
    let connections = Connections::of_this_thread(all, url, options)?;
    let mut connection = connections.take().await?;
    let answer = query(connection.get()).await?;
    connection.give_back();
    Ok(answer)
}

/// One of a worker's places, taken: its connection is given back after a clean lookup; dropped
/// any other way (an error, a request dropped mid-query or mid-connect) the connection, whose
/// protocol state is unknown, is closed and the place freed.
struct Taken<C: Connection> {
    connection: Option<C>,
    home: Rc<Connections<C>>,
    given_back: bool,
}

impl<C: Connection> Taken<C> {
    fn get(&mut self) -> &mut C {
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

impl<C: Connection> Drop for Taken<C> {
    fn drop(&mut self) {
        if !self.given_back {
            self.home.closed();
        }
    }
}
