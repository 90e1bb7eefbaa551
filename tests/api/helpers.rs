//! Test harness: the real application on a free port, a fresh database per test (a temporary
//! SQLite file, or a uniquely named PostgreSQL database when `MULTITOKEN_TEST_POSTGRES_URL` is
//! set), and a client with a helper per endpoint.

use std::time::Duration;

use multitoken::{
    config::{SecretKey, Settings},
    startup::Application,
};
use reqwest::{Response, StatusCode};
use sea_orm::{Database, DatabaseConnection};
use serde_json::{Value, json};

pub const ADMIN_PASSWORD: &str = "admin-password-for-tests";
pub const PASSWORD: &str = "correct horse battery";

/// Runs each named `async fn name(backend: Backend)` once per backend, as `name::sqlite`,
/// `name::postgres` and `name::mariadb`.
#[macro_export]
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name($crate::helpers::Backend::Sqlite).await
            }
            $crate::server_backend_tests!($name);
        }
    )*};
}

/// Runs each named `async fn name(backend: Backend)` on the backends several instances can
/// share, as `name::postgres` and `name::mariadb`.
#[macro_export]
macro_rules! on_server_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            $crate::server_backend_tests!($name);
        }
    )*};
}

/// The `postgres` and `mariadb` tests of `super::$name`, each skipped (saying so) when its
/// server URL is not set.
#[macro_export]
macro_rules! server_backend_tests {
    ($name:ident) => {
        #[tokio::test]
        async fn postgres() {
            match $crate::helpers::Backend::postgres() {
                Some(backend) => super::$name(backend).await,
                None => {
                    eprintln!("MULTITOKEN_TEST_POSTGRES_URL is not set: PostgreSQL run skipped")
                }
            }
        }
        #[tokio::test]
        async fn mariadb() {
            match $crate::helpers::Backend::mariadb() {
                Some(backend) => super::$name(backend).await,
                None => eprintln!("MULTITOKEN_TEST_MYSQL_URL is not set: MariaDB run skipped"),
            }
        }
    };
}

pub use crate::test_database::{Backend, TestDatabase};

/// Settings as a test wants them; change fields before `spawn_app_with`.
pub fn test_settings(database_url: &str) -> Settings {
    Settings {
        database_url: database_url.to_owned(),
        bind: "127.0.0.1:0".parse().unwrap(),
        secret_key: Some(SecretKey::parse(&"s".repeat(64)).unwrap()),
        session_ttl: Duration::from_secs(24 * 3600),
        max_tokens_per_user: 100,
        token_on_signup: false,
        device_idle_expiry: None,
        admin_password: Some(ADMIN_PASSWORD.to_owned()),
        // Two workers, so that concurrent requests really run side by side.
        workers: std::num::NonZeroUsize::new(2),
        cookie_secure: false,
        session_idle: Duration::from_secs(3600),
        expiry_sweep_interval: Duration::from_secs(600),
        verify_cache: 10_000,
        verify_cache_ttl: Duration::from_secs(60),
        last_used_flush: Duration::from_secs(5),
        // Tests that are not about throttling fail logins on purpose, many times: the
        // throttling tests set their own limits.
        login_max_failures: 1000,
        login_max_failures_per_address: 1000,
        login_failure_window: Duration::from_secs(60),
        trusted_proxies: Vec::new(),
        redis_url: None,
        redis_prefix: "multitoken:".to_owned(),
        pairing_ttl: Duration::from_secs(600),
        pairing_interval: Duration::from_secs(5),
        public_url: None,
        log_format: multitoken::config::LogFormat::Text,
        usage_retention: Duration::from_secs(90 * 86_400),
        audit_retention: Duration::from_secs(365 * 86_400),
    }
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub database: TestDatabase,
    /// A session key of the bootstrap `admin`.
    pub admin_key: String,
    handle: actix_web::dev::ServerHandle,
    /// `run_until_stopped`, which ends after the server stopped and its last work was written.
    server_task: tokio::task::JoinHandle<std::io::Result<()>>,
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

pub async fn spawn_app_with(backend: Backend, adjust: impl FnOnce(&mut Settings)) -> TestApp {
    let database = TestDatabase::create(&backend).await;
    let mut settings = test_settings(&database.url);
    adjust(&mut settings);
    start(database, &settings).await
}

/// Starts the application on `database` (new or reused) with `settings`.
pub async fn start(database: TestDatabase, settings: &Settings) -> TestApp {
    let application = Application::build(settings)
        .await
        .expect("the application starts");
    let address = format!("http://127.0.0.1:{}", application.port());
    let handle = application.handle();
    let server_task = tokio::spawn(application.run_until_stopped());
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut app = TestApp {
        address,
        client,
        database,
        admin_key: String::new(),
        handle,
        server_task,
    };
    // A database that already had users got no bootstrap admin; such tests bring their own users.
    let admin_password = settings.admin_password.as_deref().unwrap_or(ADMIN_PASSWORD);
    app.admin_key = app
        .try_login("admin", admin_password)
        .await
        .unwrap_or_default();
    app
}

/// A token as the API hands it out once.
pub struct IssuedKey {
    pub id: String,
    pub key: String,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// Stops the server (gracefully) and gives back its database, for a restart.
    pub async fn stop(self) -> TestDatabase {
        self.handle.stop(true).await;
        self.server_task
            .await
            .expect("the server task ends")
            .expect("the server stops cleanly");
        self.database
    }

    pub async fn db(&self) -> DatabaseConnection {
        Database::connect(self.database.url.as_str())
            .await
            .expect("connect to the test database")
    }

    /// `method path` with `Authorization: Token key` when a key is given.
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        key: Option<&str>,
    ) -> Response {
        let mut request = self.client.request(method, self.url(path));
        if let Some(key) = key {
            request = request.header("Authorization", format!("Token {key}"));
        }
        request.send().await.expect("request sent")
    }

    pub async fn get(&self, path: &str, key: Option<&str>) -> Response {
        self.request(reqwest::Method::GET, path, key).await
    }

    /// Deletes a token's row behind the services' back: no revocation is announced, so a cache
    /// that still answers for the key shows it was not asked.
    pub async fn delete_token_row(&self, id: &str) {
        use multitoken::entities::tokens;
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        let id: uuid::Uuid = id.parse().expect("a token id");
        let done = tokens::Entity::delete_many()
            .filter(tokens::Column::Id.eq(id))
            .exec(&self.db().await)
            .await
            .expect("delete the row");
        assert_eq!(done.rows_affected, 1, "token {id} existed");
    }

    pub async fn post(&self, path: &str, key: Option<&str>, body: Value) -> Response {
        let mut request = self.client.post(self.url(path)).json(&body);
        if let Some(key) = key {
            request = request.header("Authorization", format!("Bearer {key}"));
        }
        request.send().await.expect("request sent")
    }

    pub async fn delete(&self, path: &str, key: Option<&str>) -> Response {
        self.request(reqwest::Method::DELETE, path, key).await
    }

    /// Logs in through `POST /api/token/` and returns the session key.
    pub async fn login(&self, username: &str, password: &str) -> String {
        match self.try_login(username, password).await {
            Ok(key) => key,
            Err(body) => panic!("login of {username} failed: {body}"),
        }
    }

    pub async fn try_login(&self, username: &str, password: &str) -> Result<String, Value> {
        let response = self
            .post(
                "/api/token/",
                None,
                json!({ "username": username, "password": password }),
            )
            .await;
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        match (status, body["id_token"].as_str()) {
            (StatusCode::OK, Some(key)) => Ok(key.to_owned()),
            _ => Err(body),
        }
    }

    /// Creates a user through the admin API and returns a session key for it.
    pub async fn create_user(&self, username: &str, is_admin: bool) -> String {
        let response = self
            .post(
                "/api/admin/users/",
                Some(&self.admin_key),
                json!({ "username": username, "password": PASSWORD, "is_admin": is_admin }),
            )
            .await;
        assert_eq!(
            response.status(),
            StatusCode::CREATED,
            "create user {username}: {}",
            response.text().await.unwrap()
        );
        self.login(username, PASSWORD).await
    }

    /// Creates a named device token through `POST /api/tokens/`.
    /// Creates a device token with `body` (its name and policy) through the API: (id, key).
    pub async fn create_device(&self, owner: &str, body: Value) -> (String, String) {
        let (status, created) =
            status_and_json(self.post("/api/tokens/", Some(owner), body).await).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        (
            created["id"].as_str().unwrap().to_owned(),
            created["id_token"].as_str().unwrap().to_owned(),
        )
    }

    /// The owner's token `id` as `GET /api/tokens/` lists it.
    pub async fn listed_token(&self, owner: &str, id: &str) -> Value {
        let (status, list) = status_and_json(self.get("/api/tokens/", Some(owner)).await).await;
        assert_eq!(status, StatusCode::OK, "{list}");
        list.as_array()
            .unwrap()
            .iter()
            .find(|token| token["id"] == id)
            .unwrap_or_else(|| panic!("token {id} listed: {list}"))
            .clone()
    }

    pub async fn create_token(&self, key: &str, name: &str) -> IssuedKey {
        let response = self
            .post("/api/tokens/", Some(key), json!({ "name": name }))
            .await;
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "create token {name}: {body}");
        IssuedKey {
            id: body["id"].as_str().unwrap().to_owned(),
            key: body["id_token"].as_str().unwrap().to_owned(),
        }
    }

    /// `PATCH /api/tokens/{id}/` with `body`, as the holder of `key`.
    pub async fn patch_token(&self, key: &str, id: &str, body: Value) -> (StatusCode, Value) {
        let response = self
            .client
            .patch(self.url(&format!("/api/tokens/{id}/")))
            .header("Authorization", format!("Token {key}"))
            .json(&body)
            .send()
            .await
            .expect("request sent");
        status_and_json(response).await
    }

    /// The status of `GET /api/me/` with `key`.
    pub async fn me_status(&self, key: &str) -> StatusCode {
        self.get("/api/me/", Some(key)).await.status()
    }
}

/// A time as the API writes it (RFC 3339).
pub fn time(value: &Value) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(
        value.as_str().unwrap_or_else(|| panic!("a time: {value}")),
    )
    .unwrap()
    .to_utc()
}

/// Status and JSON body of a response, for assertions with the body in the message.
pub async fn status_and_json(response: Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("a JSON body expected with {status}, got {text:?}"));
    (status, body)
}

/// The status of `POST /api/token/` against a server started outside `TestApp` (a child process,
/// or one of several instances).
pub async fn login_status_at(port: u16, username: &str, password: &str) -> StatusCode {
    login_at(port, username, password).await.status()
}

/// `POST /api/token/` at a raw port, answered in full.
pub async fn login_at(port: u16, username: &str, password: &str) -> Response {
    reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/api/token/"))
        .json(&json!({ "username": username, "password": password }))
        .send()
        .await
        .expect("request sent")
}
