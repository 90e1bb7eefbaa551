//! Bursts against the login throttle (issue 10 item 6), on the database store and on Redis, at
//! the default limits (5 failures per username, 30 per address): correct passwords in a burst
//! are all let through in turn, guesses in a burst get no more password checks than the limit.

use futures_util::future::join_all;
use multitoken::config::Settings;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::audit::audit_log;
use crate::helpers::{
    Backend, PASSWORD, TestApp, TestDatabase, spawn_app_with, start, status_and_json, test_settings,
};
use crate::on_every_backend;

const PER_USERNAME: u32 = 5;

on_every_backend!(
    fifty_concurrent_correct_logins_of_one_user_all_succeed,
    twenty_concurrent_non_expiring_tokens_of_one_name_give_one_201_and_nineteen_409s,
    ten_wrong_passwords_in_a_row_are_throttled,
    a_burst_of_forty_guesses_gets_at_most_the_limits_worth_of_password_checks,
    with_redis_fifty_concurrent_correct_logins_of_one_user_all_succeed,
    with_redis_twenty_concurrent_non_expiring_tokens_give_one_201_and_nineteen_409s,
    with_redis_ten_wrong_passwords_in_a_row_are_throttled,
    with_redis_a_burst_of_forty_guesses_gets_at_most_the_limits_worth_of_checks,
);

fn default_limits(settings: &mut Settings) {
    settings.login_max_failures = PER_USERNAME;
    settings.login_max_failures_per_address = 30;
}

/// The application at the default limits, with its counters in the database, or in Redis
/// (`None` when no Redis is configured for the tests: the Redis run is skipped).
async fn app_on(backend: Backend, redis: bool) -> Option<TestApp> {
    if !redis {
        return Some(spawn_app_with(backend, default_limits).await);
    }
    let Some(redis_url) = std::env::var("MULTITOKEN_TEST_REDIS_URL")
        .ok()
        .filter(|url| !url.is_empty())
    else {
        eprintln!("MULTITOKEN_TEST_REDIS_URL is not set: Redis run skipped");
        return None;
    };
    let database = TestDatabase::create(&backend).await;
    let mut settings = test_settings(&database.url);
    default_limits(&mut settings);
    settings.redis_url = Some(redis_url);
    settings.redis_prefix = format!("mt_test_{}:", uuid::Uuid::new_v4().simple());
    Some(start(database, &settings).await)
}

async fn post(app: &TestApp, path: &str, body: Value) -> (StatusCode, Value) {
    status_and_json(app.post(path, None, body).await).await
}

fn count(statuses: &[(StatusCode, Value)], status: StatusCode) -> usize {
    statuses.iter().filter(|(s, _)| *s == status).count()
}

async fn fifty_correct_logins(backend: Backend, redis: bool) {
    let Some(app) = app_on(backend, redis).await else {
        return;
    };
    app.create_user("fleet", false).await;
    let login = json!({ "username": "fleet", "password": PASSWORD });
    let answers = join_all((0..50).map(|_| post(&app, "/api/token/", login.clone()))).await;
    let refused: Vec<_> = answers
        .iter()
        .filter(|(s, _)| *s != StatusCode::OK)
        .collect();
    assert!(
        refused.is_empty(),
        "a correct password is never refused because other logins are in flight; \
         {} of 50 were: {refused:?}",
        refused.len()
    );
}

async fn twenty_device_tokens(backend: Backend, redis: bool) {
    let Some(app) = app_on(backend, redis).await else {
        return;
    };
    app.create_user("provisioner", false).await;
    let body = json!({ "username": "provisioner", "password": PASSWORD, "token_name": "sensor" });
    let answers =
        join_all((0..20).map(|_| post(&app, "/api/non-expiring-token/", body.clone()))).await;
    assert_eq!(
        (
            count(&answers, StatusCode::CREATED),
            count(&answers, StatusCode::CONFLICT)
        ),
        (1, 19),
        "one name, twenty correct logins at once: one token, nineteen conflicts, no 429: {answers:?}"
    );
}

async fn ten_wrong_in_a_row(backend: Backend, redis: bool) {
    let Some(app) = app_on(backend, redis).await else {
        return;
    };
    app.create_user("victim", false).await;
    let guess = json!({ "username": "victim", "password": "wrong guess" });
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(post(&app, "/api/token/", guess.clone()).await.0);
    }
    let expected: Vec<StatusCode> = (0..10)
        .map(|i| {
            if i < PER_USERNAME as usize {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::TOO_MANY_REQUESTS
            }
        })
        .collect();
    assert_eq!(
        statuses, expected,
        "five wrong passwords are checked, the next five refused unchecked"
    );
}

async fn forty_guesses_at_once(backend: Backend, redis: bool) {
    let Some(app) = app_on(backend, redis).await else {
        return;
    };
    app.create_user("victim", false).await;
    let answers = join_all((0..40).map(|i| {
        let guess = json!({ "username": "victim", "password": format!("guess number {i}") });
        post(&app, "/api/token/", guess)
    }))
    .await;
    // Each checked password answers 400 and leaves one `login.failed` event; a refused one
    // answers 429 and is not checked, so the events count the password checks.
    let checked = audit_log(&app)
        .await
        .iter()
        .filter(|event| event["action"] == "login.failed" && event["target_name"] == "victim")
        .count();
    assert!(
        checked <= PER_USERNAME as usize,
        "a burst of 40 guesses got {checked} password checks; the limit is {PER_USERNAME}"
    );
    assert_eq!(
        count(&answers, StatusCode::BAD_REQUEST),
        checked,
        "every checked guess answers 400 and is audited: {answers:?}"
    );
    assert_eq!(
        count(&answers, StatusCode::TOO_MANY_REQUESTS),
        40 - checked,
        "every other guess is refused with 429: {answers:?}"
    );
    let right = post(
        &app,
        "/api/token/",
        json!({ "username": "victim", "password": PASSWORD }),
    )
    .await;
    assert_eq!(
        right.0,
        StatusCode::TOO_MANY_REQUESTS,
        "after the burst the username is locked out: {right:?}"
    );
}

async fn fifty_concurrent_correct_logins_of_one_user_all_succeed(backend: Backend) {
    fifty_correct_logins(backend, false).await
}

async fn twenty_concurrent_non_expiring_tokens_of_one_name_give_one_201_and_nineteen_409s(
    backend: Backend,
) {
    twenty_device_tokens(backend, false).await
}

async fn ten_wrong_passwords_in_a_row_are_throttled(backend: Backend) {
    ten_wrong_in_a_row(backend, false).await
}

async fn a_burst_of_forty_guesses_gets_at_most_the_limits_worth_of_password_checks(
    backend: Backend,
) {
    forty_guesses_at_once(backend, false).await
}

async fn with_redis_fifty_concurrent_correct_logins_of_one_user_all_succeed(backend: Backend) {
    fifty_correct_logins(backend, true).await
}

async fn with_redis_twenty_concurrent_non_expiring_tokens_give_one_201_and_nineteen_409s(
    backend: Backend,
) {
    twenty_device_tokens(backend, true).await
}

async fn with_redis_ten_wrong_passwords_in_a_row_are_throttled(backend: Backend) {
    ten_wrong_in_a_row(backend, true).await
}

async fn with_redis_a_burst_of_forty_guesses_gets_at_most_the_limits_worth_of_checks(
    backend: Backend,
) {
    forty_guesses_at_once(backend, true).await
}
