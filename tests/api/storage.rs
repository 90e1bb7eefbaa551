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
