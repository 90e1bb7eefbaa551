//! What reaches the disk: digests only, and tokens that outlive the process.

use reqwest::StatusCode;

use crate::helpers::{Backend, TestDatabase, login_status_at, spawn_app, start, test_settings};
use crate::on_every_backend;

on_every_backend!(
    tokens_survive_a_restart,
    instances_starting_together_on_one_empty_database_all_come_up,
);

async fn tokens_survive_a_restart(backend: Backend) {
    let app = spawn_app(backend).await;
    let session = app.create_user("alice", false).await;
    let device = app.create_token(&session, "thermostat").await;
    let database = app.stop().await;
    let settings = test_settings(&database.url);
    let restarted = start(database, &settings).await;
    assert_eq!(
        restarted.me_status(&device.key).await,
        StatusCode::OK,
        "device token after restart"
    );
    assert_eq!(
        restarted.me_status(&session).await,
        StatusCode::OK,
        "session token after restart"
    );
}

#[tokio::test]
async fn no_issued_key_appears_anywhere_in_the_sqlite_files() {
    let app = spawn_app(Backend::Sqlite).await;
    let session = app.create_user("bob", false).await;
    let device = app.create_token(&session, "car").await;
    let file = app.database.sqlite_file.clone().unwrap();
    let keys = [app.admin_key.clone(), session, device.key];
    // Look while running (WAL and shared memory hold recent writes) and after a clean stop.
    let check = |moment: &str| {
        let dir = file.parent().unwrap();
        let mut files_read = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            // SQLite removes its -wal and -shm files when the last connection closes.
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            files_read += 1;
            for key in &keys {
                let secret = &key[3..];
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                    "{moment}: a key's secret part was found in {}",
                    path.display()
                );
            }
        }
        assert!(files_read >= 1, "the database file exists");
    };
    check("while running");
    let database = app.stop().await;
    check("after stopping");
    drop(database);
}

/// A change that reads before it writes (a rotation, a deletion) while another connection is
/// writing (a last-used flush, another process) waits its turn; a deferred SQLite transaction
/// would have read a snapshot it could not write from and failed at once with a 500.
#[tokio::test]
async fn on_sqlite_a_change_made_while_another_connection_writes_waits_instead_of_failing() {
    use sea_orm::{ConnectionTrait, SqliteTransactionMode, TransactionOptions, TransactionTrait};
    let app = spawn_app(Backend::Sqlite).await;
    let session = app.create_user("carol", false).await;
    let rotated = app.create_token(&session, "thermostat").await;
    let deleted = app.create_token(&session, "car").await;
    for (method, path) in [
        (
            reqwest::Method::POST,
            format!("/api/tokens/{}/rotate/", rotated.id),
        ),
        (
            reqwest::Method::DELETE,
            format!("/api/tokens/{}/", deleted.id),
        ),
    ] {
        let other = app.db().await;
        let writer = other
            .begin_with_options(TransactionOptions {
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..TransactionOptions::default()
            })
            .await
            .expect("another connection takes the write lock");
        writer
            .execute_unprepared("UPDATE users SET is_admin = is_admin")
            .await
            .expect("the other connection writes");
        let finish = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            writer.commit().await.expect("the other connection commits");
        });
        let response = app.request(method.clone(), &path, Some(&session)).await;
        let status = response.status();
        assert!(
            status.is_success(),
            "{method} {path} during another connection's write answered {status}: {}",
            response.text().await.unwrap_or_default()
        );
        finish.await.unwrap();
    }
    assert_eq!(
        app.me_status(&deleted.key).await,
        StatusCode::UNAUTHORIZED,
        "the deletion made during the other write holds"
    );
}

async fn instances_starting_together_on_one_empty_database_all_come_up(backend: Backend) {
    let database = TestDatabase::create(&backend).await;
    let settings = test_settings(&database.url);
    // Each races to migrate and to create the first admin; none may fail.
    let starts = (0..3).map(|_| multitoken::startup::Application::build(&settings));
    let results = futures_util::future::join_all(starts).await;
    let mut ports = Vec::new();
    for result in results {
        let application = result.unwrap_or_else(|e| panic!("an instance failed to start: {e}"));
        ports.push(application.port());
        tokio::spawn(application.run_until_stopped());
    }
    for port in ports {
        assert_eq!(
            login_status_at(port, "admin", crate::helpers::ADMIN_PASSWORD).await,
            StatusCode::OK,
            "instance on port {port} serves the one admin"
        );
    }
}
