//! SIGTERM: requests in flight complete, the process exits 0, and buffered last-use times are
//! written before it does.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::{
    database::{Backend, TestDatabase, digest_of},
    driver::{http_client, login},
    on_every_backend,
    server::{ADMIN_PASSWORD, Server},
};

/// Concurrent logins in flight at the SIGTERM: argon2 keeps each busy for a while.
const LOGINS: usize = 10;
/// The longest a graceful stop may take here (the server allows itself 25 s to drain and 5 s to close).
const STOP_BOUND: Duration = Duration::from_secs(15);

on_every_backend!(
    sigterm_finishes_requests_in_flight_and_writes_last_uses,
    sigquit_stops_at_once_and_still_writes_last_uses,
);

/// A server whose last uses are written only when it stops (an interval no test reaches), a
/// client, and the bootstrap admin's session key.
async fn server_writing_uses_only_at_the_stop(
    backend: &Backend,
) -> (TestDatabase, Server, reqwest::Client, String) {
    let database = TestDatabase::create(backend).await;
    let server = Server::start(
        &database.url,
        database.dir(),
        "server",
        &[("MULTITOKEN_LAST_USED_FLUSH", "1h")],
    );
    let http = http_client();
    let (status, body) = login(&http, &server, "admin", ADMIN_PASSWORD, "10.0.0.1").await;
    assert_eq!(status, StatusCode::OK, "admin login: {body}");
    let admin = body["id_token"].as_str().unwrap().to_owned();
    (database, server, http, admin)
}

async fn sigterm_finishes_requests_in_flight_and_writes_last_uses(backend: Backend) {
    let (database, mut server, http, admin) = server_writing_uses_only_at_the_stop(&backend).await;
    let created: serde_json::Value = http
        .post(server.url("/api/tokens/"))
        .bearer_auth(&admin)
        .json(&json!({ "name": "used once" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let device = created["id_token"]
        .as_str()
        .expect("a device key")
        .to_owned();
    let used = http
        .get(server.url("/api/me/"))
        .bearer_auth(&device)
        .send()
        .await
        .unwrap();
    assert_eq!(used.status(), StatusCode::OK);
    let used_at = chrono::Utc::now();
    let row = database
        .tokens_by_digest()
        .await
        .remove(&digest_of(&device));
    assert_eq!(
        row.expect("the device token has a row").last_used_at,
        None,
        "with an hour's flush interval the use is only buffered before the stop"
    );

    let mut logins = tokio::task::JoinSet::new();
    for index in 0..LOGINS {
        let (http, url) = (http.clone(), server.url("/api/token/"));
        logins.spawn(async move {
            let response = http
                .post(url)
                .header("X-Forwarded-For", format!("10.0.1.{index}"))
                .json(&json!({ "username": "admin", "password": ADMIN_PASSWORD }))
                .send()
                .await;
            let answer = match response {
                Ok(response) => {
                    let status = response.status();
                    (status, response.json::<serde_json::Value>().await)
                }
                Err(e) => panic!("login {index} in flight at the SIGTERM got no answer: {e:?}"),
            };
            (answer, Instant::now())
        });
    }
    // Once the first login is answered the others have reached the server and wait for their
    // turn at hashing (two at a time on two cores): they are in flight.
    let first = logins
        .join_next()
        .await
        .unwrap()
        .expect("login task panicked");
    let signalled = Instant::now();
    server.terminate();

    let mut answered = vec![first];
    while let Some(login) = logins.join_next().await {
        answered.push(login.expect("login task panicked"));
    }
    let mut sessions = Vec::new();
    for ((status, body), _) in &answered {
        let body = body.as_ref().expect("a JSON answer");
        assert_eq!(
            *status,
            StatusCode::OK,
            "a login in flight at the SIGTERM completes: {body}\n{}",
            server.problems()
        );
        sessions.push(body["id_token"].as_str().unwrap().to_owned());
    }
    let after_signal = answered.iter().filter(|(_, at)| *at > signalled).count();
    assert!(
        after_signal > 0,
        "some logins were still running when the SIGTERM came (else this shows nothing)"
    );

    let status = server.wait_for_exit(STOP_BOUND).unwrap_or_else(|| {
        panic!(
            "the server did not exit within {STOP_BOUND:?} of SIGTERM:\n{}",
            server.log()
        )
    });
    let stopped_in = signalled.elapsed();
    assert_eq!(
        status.code(),
        Some(0),
        "a graceful stop exits 0:\n{}",
        server.log()
    );
    println!(
        "SIGTERM on {}: {after_signal} of {LOGINS} logins answered after the signal, exit 0 after {:.2} s",
        backend.name(),
        stopped_in.as_secs_f64()
    );

    let errors = server.errors();
    assert!(
        errors.is_empty(),
        "the server logged no error while stopping:\n{}",
        errors.join("\n")
    );
    let rows = database.tokens_by_digest().await;
    let written = rows[&digest_of(&device)].last_used_at;
    let written = written
        .unwrap_or_else(|| panic!("the buffered use is written at the stop:\n{}", server.log()));
    assert!(
        (written - used_at).abs() < chrono::TimeDelta::seconds(10),
        "the written time is the time of use ({used_at}), got {written}"
    );
    for session in &sessions {
        assert!(
            rows.contains_key(&digest_of(session)),
            "a login answered during the stop is in the database"
        );
    }
}

/// SIGQUIT is the immediate stop: no waiting for requests in flight, but the buffered last
/// uses are still written and the process exits 0 (not the signal's default, a core dump).
async fn sigquit_stops_at_once_and_still_writes_last_uses(backend: Backend) {
    let (database, mut server, http, admin) = server_writing_uses_only_at_the_stop(&backend).await;
    let used = http
        .get(server.url("/api/me/"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(used.status(), StatusCode::OK);

    server.signal(libc::SIGQUIT);
    let status = server.wait_for_exit(STOP_BOUND).unwrap_or_else(|| {
        panic!(
            "no exit within {STOP_BOUND:?} of SIGQUIT:\n{}",
            server.log()
        )
    });
    assert_eq!(status.code(), Some(0), "SIGQUIT exits 0:\n{}", server.log());
    assert!(
        server.log().contains("SIGQUIT received: stopping at once"),
        "{}",
        server.log()
    );
    let rows = database.tokens_by_digest().await;
    assert!(
        rows[&digest_of(&admin)].last_used_at.is_some(),
        "the buffered use is written at the stop:\n{}",
        server.log()
    );
}
