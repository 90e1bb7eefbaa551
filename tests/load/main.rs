//! Load, crash and shutdown tests: the real `multitoken` binary as a child process, many HTTP
//! clients, a real database. One test at a time (the machine has two cores), each a few dozen
//! seconds; `MULTITOKEN_LOAD_SECONDS` shortens the load for a quick local run.

mod database;
// Shared with the other test binary; each uses a part of it.
mod driver;
mod server;
#[allow(dead_code)]
#[path = "../common/test_database.rs"]
mod test_database;

mod crash;
mod load;
mod shutdown;

/// Held for the whole of each test: two load runs side by side would measure each other.
pub static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs each named `async fn name(backend: Backend)` once per backend, as `name::sqlite`,
/// `name::postgres` and `name::mariadb`, one test at a time, on a runtime with two threads for
/// the clients.
#[macro_export]
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            $crate::load_test!($name, sqlite, Some($crate::database::Backend::Sqlite), "");
            $crate::load_test!(
                $name,
                postgres,
                $crate::database::Backend::postgres(),
                "MULTITOKEN_TEST_POSTGRES_URL is not set: PostgreSQL run skipped"
            );
            $crate::load_test!(
                $name,
                mariadb,
                $crate::database::Backend::mariadb(),
                "MULTITOKEN_TEST_MYSQL_URL is not set: MariaDB run skipped"
            );
        }
    )*};
}

/// One backend's test `$test` of `super::$name`, taking its turn; skipped with `$unset` when
/// `$backend` is `None`.
#[macro_export]
macro_rules! load_test {
    ($name:ident, $test:ident, $backend:expr, $unset:literal) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $test() {
            match $backend {
                Some(backend) => {
                    let _turn = $crate::ONE_AT_A_TIME.lock().await;
                    super::$name(backend).await
                }
                None => eprintln!($unset),
            }
        }
    };
}
