//! Per-token rate limits (counted in memory, per instance): 429 with `Retry-After` and the
//! RateLimit fields on our API and on `/auth/verify`, nothing counted or taken by a refusal,
//! changed at once by PATCH, refused when out of range, audited as a refusal.

use reqwest::StatusCode;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};

use crate::helpers::{Backend, spawn_app, spawn_app_with, status_and_json};
use crate::instances::OtherInstance;
use crate::on_every_backend;
use multitoken::entities::audit_events;

on_every_backend!(
    a_token_over_its_limit_gets_429_with_retry_after_and_the_ratelimit_fields,
    a_429_takes_no_use_and_patch_changes_the_limit_at_once,
    limits_out_of_range_are_refused_and_shown_where_the_policy_is,
    each_instance_counts_on_its_own_without_redis,
);

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("a {name} header"))
        .to_str()
        .unwrap()
        .to_owned()
}

async fn a_token_over_its_limit_gets_429_with_retry_after_and_the_ratelimit_fields(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let owner = app.create_user("alice", false).await;
    let (id, key) = app
        .create_device(
            &owner,
            json!({"name": "chatty", "rate_limit_per_minute": 3}),
        )
        .await;
    // Recording refusals is per clock minute: start early in one, so all below share it.
    let second = chrono::Timelike::second(&chrono::Utc::now());
    if second > 45 {
        tokio::time::sleep(std::time::Duration::from_secs(u64::from(61 - second))).await;
    }
    for n in 1..=3 {
        assert_eq!(
            app.me_status(&key).await,
            StatusCode::OK,
            "request {n} of 3"
        );
    }
    let over = app.get("/api/me/", Some(&key)).await;
    assert_eq!(over.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = header(&over, "retry-after").parse().unwrap();
    assert!(
        (1..=20).contains(&retry_after),
        "one interval of 60 s / 3 at most: {retry_after}"
    );
    assert_eq!(header(&over, "ratelimit-limit"), "3");
    assert_eq!(header(&over, "ratelimit-remaining"), "0");
    assert_eq!(header(&over, "ratelimit-reset"), retry_after.to_string());
    assert_eq!(header(&over, "ratelimit-policy"), "3;w=60");
    let (_, body) = status_and_json(over).await;
    assert_eq!(body["error"], "Rate limit exceeded", "{body}");
    assert_eq!(body["retry_after"], retry_after, "{body}");

    let verify = app
        .client
        .get(app.url("/auth/verify"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        verify.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "forward auth counts against the same limit"
    );
    assert_eq!(header(&verify, "ratelimit-limit"), "3");
    assert!(verify.headers().contains_key("retry-after"));

    // Other tokens, even the owner's, are not held back.
    for _ in 0..10 {
        assert_eq!(app.me_status(&owner).await, StatusCode::OK);
    }

    // Refusals are written in batches: the stop writes what is held.
    let database = app.stop().await;
    let db = sea_orm::Database::connect(database.url.as_str())
        .await
        .unwrap();
    let refused = audit_events::Entity::find()
        .filter(audit_events::Column::Action.eq("token.refused"))
        .all(&db)
        .await
        .unwrap();
    assert_eq!(
        refused.len(),
        1,
        "one event per token, reason and address a minute, however many 429s"
    );
    assert_eq!(refused[0].target_id.map(|t| t.to_string()), Some(id));
    assert!(
        refused[0]
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("over its rate limit")),
        "{:?}",
        refused[0].detail
    );
}

async fn a_429_takes_no_use_and_patch_changes_the_limit_at_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let owner = app.create_user("alice", false).await;
    let (id, key) = app
        .create_device(
            &owner,
            json!({"name": "metered", "max_uses": 5, "rate_limit_per_minute": 2}),
        )
        .await;
    assert_eq!(app.me_status(&key).await, StatusCode::OK);
    assert_eq!(app.me_status(&key).await, StatusCode::OK);
    for _ in 0..3 {
        assert_eq!(app.me_status(&key).await, StatusCode::TOO_MANY_REQUESTS);
    }
    let token = app.listed_token(&owner, &id).await;
    assert_eq!(
        token["remaining_uses"], 3,
        "two uses taken, none by the 429s: {token}"
    );

    let path = format!("/api/tokens/{id}/");
    let patch = |body: Value| {
        app.client
            .patch(app.url(&path))
            .bearer_auth(&owner)
            .json(&body)
            .send()
    };
    let (status, changed) =
        status_and_json(patch(json!({"rate_limit_per_minute": 600})).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["rate_limit_per_minute"], 600, "{changed}");
    assert_eq!(
        app.me_status(&key).await,
        StatusCode::OK,
        "a raised limit applies at once"
    );
    let (status, changed) =
        status_and_json(patch(json!({"rate_limit_per_minute": null})).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(
        changed["rate_limit_per_minute"],
        Value::Null,
        "no limit: {changed}"
    );
    assert_eq!(app.me_status(&key).await, StatusCode::OK);
    assert_eq!(app.me_status(&key).await, StatusCode::OK);
    assert_eq!(
        app.me_status(&key).await,
        StatusCode::UNAUTHORIZED,
        "five uses, the last taken: the limit on uses still holds"
    );
}

async fn limits_out_of_range_are_refused_and_shown_where_the_policy_is(backend: Backend) {
    let app = spawn_app(backend).await;
    let owner = app.create_user("alice", false).await;
    for bad in [json!(0), json!(1_000_001), json!(-5)] {
        let (status, body) = status_and_json(
            app.post(
                "/api/tokens/",
                Some(&owner),
                json!({"name": "x", "rate_limit_per_minute": bad}),
            )
            .await,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(
            body["fields"]["rate_limit_per_minute"].is_array(),
            "the field is named: {body}"
        );
    }
    let (status, body) = status_and_json(
        app.post(
            "/api/tokens/",
            Some(&owner),
            json!({"name": "x", "rate_limit_per_minute": "fast"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (_, key) = app
        .create_device(
            &owner,
            json!({"name": "sensor", "rate_limit_per_minute": 1000000}),
        )
        .await;
    let (status, me) = status_and_json(app.get("/api/me/", Some(&key)).await).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["token"]["rate_limit_per_minute"], 1_000_000, "{me}");
    let (_, plain) = app.create_device(&owner, json!({"name": "plain"})).await;
    let (_, me) = status_and_json(app.get("/api/me/", Some(&plain)).await).await;
    assert_eq!(me["token"]["rate_limit_per_minute"], Value::Null, "{me}");
}

/// Documented: without Redis, N instances allow up to N times the limit.
async fn each_instance_counts_on_its_own_without_redis(backend: Backend) {
    let a = spawn_app(backend).await;
    let b = OtherInstance::start_with(&a, |_| {}).await;
    let owner = a.create_user("alice", false).await;
    let (_, key) = a
        .create_device(&owner, json!({"name": "split", "rate_limit_per_minute": 2}))
        .await;
    for instance in ["a", "b"] {
        for n in 1..=2 {
            let status = if instance == "a" {
                a.me_status(&key).await
            } else {
                b.me_status(&key).await
            };
            assert_eq!(
                status,
                StatusCode::OK,
                "{instance}: request {n} of its own 2"
            );
        }
    }
    assert_eq!(a.me_status(&key).await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(b.me_status(&key).await, StatusCode::TOO_MANY_REQUESTS);
    b.handle.stop(true).await;
}

/// With `MULTITOKEN_REDIS_URL`, two instances count against the one limit.
#[tokio::test]
async fn two_instances_sharing_redis_count_against_one_limit() {
    let Some(redis_url) = std::env::var("MULTITOKEN_TEST_REDIS_URL")
        .ok()
        .filter(|url| !url.is_empty())
    else {
        eprintln!("MULTITOKEN_TEST_REDIS_URL is not set: Redis run skipped");
        return;
    };
    let prefix = format!("mt_test_{}:", uuid::Uuid::new_v4().simple());
    let (url, pre) = (redis_url.clone(), prefix.clone());
    let a = spawn_app_with(Backend::Sqlite, move |settings| {
        settings.redis_url = Some(url);
        settings.redis_prefix = pre;
    })
    .await;
    let b = OtherInstance::start_with(&a, |settings| {
        settings.redis_url = Some(redis_url);
        settings.redis_prefix = prefix;
    })
    .await;
    let owner = a.create_user("alice", false).await;
    let (id, key) = a
        .create_device(
            &owner,
            json!({"name": "shared", "rate_limit_per_minute": 4, "max_uses": 100}),
        )
        .await;
    assert_eq!(a.me_status(&key).await, StatusCode::OK);
    assert_eq!(b.me_status(&key).await, StatusCode::OK);
    assert_eq!(a.me_status(&key).await, StatusCode::OK);
    assert_eq!(b.me_status(&key).await, StatusCode::OK);
    assert_eq!(
        a.me_status(&key).await,
        StatusCode::TOO_MANY_REQUESTS,
        "four between the two instances: the fifth is over the one limit"
    );
    assert_eq!(b.me_status(&key).await, StatusCode::TOO_MANY_REQUESTS);
    let over = a.get("/api/me/", Some(&key)).await;
    let retry_after: u64 = header(&over, "retry-after").parse().unwrap();
    assert!(
        (1..=15).contains(&retry_after),
        "60 s / 4 at most: {retry_after}"
    );
    assert_eq!(header(&over, "ratelimit-limit"), "4");
    let token = a.listed_token(&owner, &id).await;
    assert_eq!(
        token["remaining_uses"], 96,
        "four uses taken, none by the 429s: {token}"
    );
    b.handle.stop(true).await;
}
