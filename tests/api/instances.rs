//! Several instances on one PostgreSQL or MariaDB database, each with its own verification
//! cache: a revocation through one must be refused by the others within one second.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::json;

use crate::helpers::{Backend, IssuedKey, TestApp, spawn_app, test_settings};
use multitoken::startup::Application;

/// The bound: a revocation reaches every other instance within this.
const WITHIN: Duration = Duration::from_secs(1);

/// A second instance on the first one's database, reached over HTTP only.
pub struct OtherInstance {
    pub port: u16,
    pub handle: actix_web::dev::ServerHandle,
    client: reqwest::Client,
}

impl OtherInstance {
    async fn start(first: &TestApp) -> OtherInstance {
        OtherInstance::start_with(first, |_| {}).await
    }

    /// With settings changed from the tests' defaults, as the first instance's may be.
    pub async fn start_with(
        first: &TestApp,
        adjust: impl FnOnce(&mut multitoken::config::Settings),
    ) -> OtherInstance {
        let mut settings = test_settings(&first.database.url);
        adjust(&mut settings);
        let application = Application::build(&settings)
            .await
            .expect("a second instance starts on the same database");
        let port = application.port();
        let handle = application.handle();
        tokio::spawn(application.run_until_stopped());
        OtherInstance {
            port,
            handle,
            client: reqwest::Client::new(),
        }
    }

    pub async fn me_status(&self, key: &str) -> StatusCode {
        self.client
            .get(format!("http://127.0.0.1:{}/api/me/", self.port))
            .bearer_auth(key)
            .send()
            .await
            .expect("request sent")
            .status()
    }

    /// Polls until `key` is refused; how long that took, or a panic past the bound.
    async fn time_until_refused(&self, key: &str, since: Instant, what: &str) -> Duration {
        loop {
            let status = self.me_status(key).await;
            let elapsed = since.elapsed();
            if status == StatusCode::UNAUTHORIZED {
                return elapsed;
            }
            assert_eq!(status, StatusCode::OK, "{what}: unexpected answer");
            assert!(
                elapsed < WITHIN,
                "{what}: the other instance still accepts the token after {elapsed:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

crate::on_server_backends!(
    a_token_revoked_through_one_instance_is_refused_by_another_within_a_second,
    a_policy_changed_through_one_instance_applies_on_another_within_a_second,
    a_key_rotated_with_no_grace_through_one_instance_is_refused_by_another_within_a_second,
    a_self_rotated_key_retired_by_the_new_keys_first_use_on_one_instance_is_refused_by_another_within_a_second,
);

/// Waits until `count` revocation listeners are subscribed on the test database. On MariaDB,
/// where instances poll instead, until every instance has polled once (a few poll periods).
async fn wait_for_listeners(app: &TestApp, count: i64) {
    let db = app.db().await;
    if db.get_database_backend() == sea_orm::DbBackend::MySql {
        tokio::time::sleep(4 * multitoken::verify::revocations::POLL_EVERY).await;
        return;
    }
    let started = Instant::now();
    loop {
        let row = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                "SELECT count(*) AS n FROM pg_stat_activity \
                 WHERE datname = current_database() AND query LIKE 'LISTEN%'",
            ))
            .await
            .unwrap()
            .unwrap();
        let listening: i64 = row.try_get("", "n").unwrap();
        if listening >= count {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{count} revocation listeners expected, {listening} subscribed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Uses a fresh token on `other`, deletes its row behind the services' back and checks that
/// `other` still accepts it: its cache is live, so what follows tests invalidation, not lookup.
async fn assert_cache_live(app: &TestApp, other: &OtherInstance, session: &str, name: &str) {
    let probe = app.create_token(session, name).await;
    assert_eq!(other.me_status(&probe.key).await, StatusCode::OK);
    app.delete_token_row(&probe.id).await;
    assert_eq!(
        other.me_status(&probe.key).await,
        StatusCode::OK,
        "the other instance's cache must be live (else this test proves nothing)"
    );
}

/// Two instances on one database, both listening, and a device token of alice's that B has
/// cached: what a test of a change made through A and seen by B starts from.
struct Cached {
    a: TestApp,
    b: OtherInstance,
    session: String,
    device: IssuedKey,
}

async fn a_device_cached_on_b(backend: Backend, name: &str) -> Cached {
    let a = spawn_app(backend).await;
    let b = OtherInstance::start(&a).await;
    wait_for_listeners(&a, 2).await;
    let session = a.create_user("alice", false).await;
    assert_cache_live(&a, &b, &session, "probe").await;
    let device = a.create_token(&session, name).await;
    assert_eq!(
        b.me_status(&device.key).await,
        StatusCode::OK,
        "cached on B"
    );
    Cached {
        a,
        b,
        session,
        device,
    }
}

async fn a_token_revoked_through_one_instance_is_refused_by_another_within_a_second(
    backend: Backend,
) {
    // One token, revoked by an admin through A.
    let Cached {
        a,
        b,
        session,
        device,
    } = a_device_cached_on_b(backend, "thermostat").await;
    let revoked = a
        .delete(
            &format!("/api/admin/tokens/{}/", device.id),
            Some(&a.admin_key),
        )
        .await;
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    let took = b
        .time_until_refused(&device.key, Instant::now(), "revoked token")
        .await;
    eprintln!("revoked token refused by the other instance after {took:?}");

    // A logout through A.
    assert_eq!(b.me_status(&session).await, StatusCode::OK, "cached on B");
    let logout = a.post("/api/logout/", Some(&session), json!({})).await;
    assert_eq!(logout.status(), StatusCode::OK);
    b.time_until_refused(&session, Instant::now(), "logged-out session")
        .await;

    // A whole user, deactivated through A.
    let bob = a.create_user("bob", false).await;
    let bobs_device = a.create_token(&bob, "car").await;
    assert_eq!(
        b.me_status(&bobs_device.key).await,
        StatusCode::OK,
        "cached on B"
    );
    let deactivated = a
        .post(
            "/api/admin/users/bob/deactivate/",
            Some(&a.admin_key),
            json!({}),
        )
        .await;
    assert_eq!(deactivated.status(), StatusCode::OK);
    b.time_until_refused(&bobs_device.key, Instant::now(), "deactivated user")
        .await;
    b.handle.stop(true).await;
}

async fn a_policy_changed_through_one_instance_applies_on_another_within_a_second(
    backend: Backend,
) {
    let Cached {
        a,
        b,
        session,
        device,
    } = a_device_cached_on_b(backend, "thermostat").await;
    // Bound to a network the test's loopback is not in: B must refuse it within the bound.
    let changed = a
        .client
        .patch(a.url(&format!("/api/tokens/{}/", device.id)))
        .bearer_auth(&session)
        .json(&json!({ "allowed_ips": ["198.51.100.0/24"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), StatusCode::OK);
    let took = b
        .time_until_refused(&device.key, Instant::now(), "token bound elsewhere")
        .await;
    eprintln!("changed policy applied by the other instance after {took:?}");
    b.handle.stop(true).await;
}

#[tokio::test]
async fn a_lost_listen_connection_never_leaves_a_revoked_token_cached() {
    let Some(backend) = Backend::postgres() else {
        eprintln!("MULTITOKEN_TEST_POSTGRES_URL is not set: multi-instance test skipped");
        return;
    };
    let a = spawn_app(backend).await;
    let b = OtherInstance::start(&a).await;
    wait_for_listeners(&a, 2).await;
    let session = a.create_user("alice", false).await;
    let device = a.create_token(&session, "thermostat").await;
    assert_eq!(
        b.me_status(&device.key).await,
        StatusCode::OK,
        "cached on B"
    );

    // Cut every listener, then revoke at once: B may miss the notification, never the revocation.
    let db = a.db().await;
    db.execute_unprepared(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND query LIKE 'LISTEN%'",
    )
    .await
    .unwrap();
    let revoked = a
        .delete(&format!("/api/tokens/{}/", device.id), Some(&session))
        .await;
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    b.time_until_refused(&device.key, Instant::now(), "revoked while disconnected")
        .await;

    // The listeners come back, and so does B's cache.
    wait_for_listeners(&a, 2).await;
    assert_cache_live(&a, &b, &session, "probe after reconnecting").await;
    b.handle.stop(true).await;
}

/// MariaDB's twin of the lost listener: while an instance cannot read `revocation_log` (here the
/// table is renamed away), it cannot learn of revocations, so its cache is emptied and bypassed:
/// a token deleted meanwhile is refused at once, even though nothing announced it.
#[tokio::test]
async fn a_failing_revocation_poll_never_leaves_a_revoked_token_cached() {
    let Some(backend) = Backend::mariadb() else {
        eprintln!("MULTITOKEN_TEST_MYSQL_URL is not set: multi-instance test skipped");
        return;
    };
    let Cached {
        a,
        b,
        session,
        device,
    } = a_device_cached_on_b(backend, "thermostat").await;
    let db = a.db().await;
    db.execute_unprepared("RENAME TABLE revocation_log TO revocation_log_away")
        .await
        .unwrap();
    // A few polls fail.
    tokio::time::sleep(3 * multitoken::verify::revocations::POLL_EVERY).await;
    a.delete_token_row(&device.id).await;
    assert_eq!(
        b.me_status(&device.key).await,
        StatusCode::UNAUTHORIZED,
        "deleted while B could not poll: B must not answer from its cache"
    );
    db.execute_unprepared("RENAME TABLE revocation_log_away TO revocation_log")
        .await
        .unwrap();
    wait_for_listeners(&a, 2).await;
    assert_cache_live(&a, &b, &session, "probe after the poll recovered").await;
    b.handle.stop(true).await;
}

async fn a_key_rotated_with_no_grace_through_one_instance_is_refused_by_another_within_a_second(
    backend: Backend,
) {
    let Cached {
        a,
        b,
        session,
        device,
    } = a_device_cached_on_b(backend, "leaked").await;
    let rotated = a
        .client
        .post(a.url(&format!("/api/tokens/{}/rotate/", device.id)))
        .bearer_auth(&session)
        .json(&json!({ "grace_seconds": 0 }))
        .send()
        .await
        .unwrap();
    assert_eq!(rotated.status(), StatusCode::OK);
    let took = b
        .time_until_refused(&device.key, Instant::now(), "key rotated with no grace")
        .await;
    eprintln!("rotated key refused by the other instance after {took:?}");
    b.handle.stop(true).await;
}

async fn a_self_rotated_key_retired_by_the_new_keys_first_use_on_one_instance_is_refused_by_another_within_a_second(
    backend: Backend,
) {
    let Cached { a, b, device, .. } = a_device_cached_on_b(backend, "self-rotating").await;
    let rotated = a
        .client
        .post(a.url("/api/tokens/self/rotate/"))
        .bearer_auth(&device.key)
        .json(&json!({ "grace_seconds": 3600 }))
        .send()
        .await
        .unwrap();
    assert_eq!(rotated.status(), StatusCode::OK);
    let new_key = rotated.json::<serde_json::Value>().await.unwrap()["id_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        b.me_status(&device.key).await,
        StatusCode::OK,
        "the previous key works on B through the grace (and B caches that answer)"
    );
    // The device shows it stored the new key by using it, on A.
    assert_eq!(a.me_status(&new_key).await, StatusCode::OK);
    let took = b
        .time_until_refused(
            &device.key,
            Instant::now(),
            "previous key after the new key's first use",
        )
        .await;
    eprintln!("self-rotated previous key refused by the other instance after {took:?}");
    assert_eq!(
        b.me_status(&new_key).await,
        StatusCode::OK,
        "the new key works on B"
    );
    b.handle.stop(true).await;
}
