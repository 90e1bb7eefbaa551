//! A fresh database per test: a temporary SQLite file, or a uniquely named PostgreSQL database
//! when `MULTITOKEN_TEST_POSTGRES_URL` is set, or MariaDB one when `MULTITOKEN_TEST_MYSQL_URL` is.
//! Shared by the `api` and `load` test binaries (each includes this file with `#[path]`, and
//! each uses a part of it).

use std::path::{Path, PathBuf};

use sea_orm::{ConnectionTrait, Database};

#[derive(Clone, Debug)]
pub enum Backend {
    Sqlite,
    /// The server URL of a database we may create databases from.
    Postgres(String),
    /// The same, of a MariaDB server.
    MariaDb(String),
}

impl Backend {
    pub fn postgres() -> Option<Backend> {
        server_url("MULTITOKEN_TEST_POSTGRES_URL").map(Backend::Postgres)
    }

    pub fn mariadb() -> Option<Backend> {
        server_url("MULTITOKEN_TEST_MYSQL_URL").map(Backend::MariaDb)
    }

    pub fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres(_) => "PostgreSQL",
            Backend::MariaDb(_) => "MariaDB",
        }
    }
}

/// The server URL in `variable`, when set and not empty.
fn server_url(variable: &str) -> Option<String> {
    std::env::var(variable).ok().filter(|url| !url.is_empty())
}

/// A database that exists for one test, and is removed with it. Its directory holds the SQLite
/// file, and whatever else the test keeps beside it (server logs).
pub struct TestDatabase {
    pub url: String,
    /// The SQLite file, kept alive (and deleted) with the test.
    pub sqlite_file: Option<PathBuf>,
    dir: tempfile::TempDir,
    /// The server URL (PostgreSQL or MariaDB) and database name, to drop it afterwards.
    server: Option<(String, String)>,
}

impl TestDatabase {
    pub async fn create(backend: &Backend) -> TestDatabase {
        let dir = tempfile::tempdir().expect("temporary directory");
        match backend {
            Backend::Sqlite => {
                let file = dir.path().join("multitoken.db");
                TestDatabase {
                    url: format!("sqlite://{}?mode=rwc", file.display()),
                    sqlite_file: Some(file),
                    dir,
                    server: None,
                }
            }
            Backend::Postgres(server_url) | Backend::MariaDb(server_url) => {
                let name = format!("mt_test_{}", uuid::Uuid::new_v4().simple());
                let admin = Database::connect(server_url.as_str())
                    .await
                    .unwrap_or_else(|e| {
                        panic!("cannot connect to {} at {server_url}: {e}", backend.name())
                    });
                admin
                    .execute_unprepared(&create_statement(backend, &name))
                    .await
                    .expect("create a test database");
                admin.close().await.ok();
                TestDatabase {
                    url: with_database_name(server_url, &name),
                    sqlite_file: None,
                    dir,
                    server: Some((server_url.clone(), name)),
                }
            }
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some((server_url, name)) = self.server.take() else {
            return;
        };
        // Drop runs inside the test's runtime, which cannot block on itself: use a thread of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let admin = Database::connect(server_url.as_str()).await?;
                admin
                    .execute_unprepared(&drop_statement(&server_url, &name))
                    .await?;
                admin.close().await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop a test database (.ci/run removes leftovers): {dropped:?}");
        }
    }
}

/// Creates the database `name`; on MariaDB with the character set and collation the
/// application's tables get (migration 13).
fn create_statement(backend: &Backend, name: &str) -> String {
    match backend {
        Backend::MariaDb(_) => {
            format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        }
        _ => format!(r#"CREATE DATABASE "{name}""#),
    }
}

/// Drops the database `name` of the server at `server_url`, connections and all.
fn drop_statement(server_url: &str, name: &str) -> String {
    if server_url.starts_with("mysql:") {
        format!("DROP DATABASE IF EXISTS `{name}`")
    } else {
        format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#)
    }
}

/// `postgres://user@host:port/db?options` (or `mysql://…`) with another database name, options
/// kept.
fn with_database_name(server_url: &str, name: &str) -> String {
    let (address, options) = match server_url.split_once('?') {
        Some((address, options)) => (address, Some(options)),
        None => (server_url, None),
    };
    let (scheme, rest) = address
        .split_once("://")
        .expect("a postgres:// or mysql:// URL");
    let host = rest.split_once('/').map_or(rest, |(host, _)| host);
    match options {
        Some(options) => format!("{scheme}://{host}/{name}?{options}"),
        None => format!("{scheme}://{host}/{name}"),
    }
}
