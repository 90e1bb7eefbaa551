//! Sustained load on one server: no 5xx, no unexpected answer, no lost write.

use std::time::Instant;

use crate::{
    database::{Backend, TestDatabase},
    driver::{self, CLIENTS, CLIENTS_PER_USER},
    on_every_backend,
    server::Server,
};

on_every_backend!(two_hundred_clients_get_only_expected_answers_and_lose_no_write);

async fn two_hundred_clients_get_only_expected_answers_and_lose_no_write(backend: Backend) {
    let test_started = Instant::now();
    let database = TestDatabase::create(&backend).await;
    let mut server = Server::start(&database.url, database.dir(), "server", &[]);
    let users = driver::create_users(&server, CLIENTS / CLIENTS_PER_USER).await;

    let run = driver::run(&mut server, users, driver::load_duration(), None).await;
    let summary = run.summary(&format!("load on {}", backend.name()));
    println!("{summary}");
    assert_eq!(
        run.failures,
        0,
        "every request gets its one expected answer (no 5xx, no connection error):\n{summary}\n{}",
        server.problems()
    );
    assert!(
        run.requests() > CLIENTS as u64,
        "the clients got through the load:\n{summary}"
    );

    let lost = driver::lost_writes(&server, &database, &run).await;
    assert!(
        lost.is_empty(),
        "every acknowledged creation is present and every acknowledged deletion absent:\n{}\n{summary}\n{}",
        lost.join("\n"),
        server.problems()
    );
    let errors = server.errors();
    assert!(
        errors.is_empty(),
        "the server logged no error under load:\n{}",
        errors.join("\n")
    );
    println!("{}", server.problems());
    println!(
        "load on {}: {:.1} s in all",
        backend.name(),
        test_started.elapsed().as_secs_f64()
    );
}
