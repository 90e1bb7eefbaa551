//! What reaches the disk: digests only, and tokens that outlive the process.

use reqwest::StatusCode;

use crate::helpers::{Backend, spawn_app, start, test_settings};
use crate::on_both_backends;

on_both_backends!(tokens_survive_a_restart);

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
            let bytes = std::fs::read(&path).unwrap();
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
