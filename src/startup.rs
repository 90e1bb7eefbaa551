//! Building the application: database, migrations, first admin, HTTP server.

use std::{net::TcpListener, sync::Arc, time::Duration};

use actix_web::{
    App, HttpServer,
    dev::Server,
    http::header,
    middleware::{DefaultHeaders, Logger, NormalizePath, TrailingSlash, from_fn},
    web,
};
use ipnet::IpNet;
use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr};
use utoipa::OpenApi;
use utoipa_actix_web::AppExt;

use crate::{
    auth::password,
    config::{SecretKey, Settings},
    routes,
    services::{
        Policy,
        last_used::{self, LastUsed},
        name_skeletons, sqlite_lookup,
        throttle::{self, LoginThrottle, ThrottleConfig, ThrottleError},
        tokens,
        users::{self, Bootstrap},
        verification::{self, Verifier, VerifierConfig},
    },
};

/// Shared by every worker.
pub struct AppState {
    pub db: DatabaseConnection,
    pub policy: Policy,
    /// For signed session cookies (the web UI).
    pub secret_key: SecretKey,
    /// The web UI's cookie is `Secure`.
    pub cookie_secure: bool,
    /// A web sign-in ends after this long without a request.
    pub session_idle: Duration,
    /// Token verification through the cache; notes uses for `last_used_at`.
    pub verifier: Arc<Verifier>,
    /// Counts failed logins per username and per address, shared by every instance.
    pub throttle: Arc<LoginThrottle>,
    /// Proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<IpNet>,
}

pub fn policy_from(settings: &Settings) -> Policy {
    Policy {
        session_ttl: settings.session_ttl,
        max_tokens_per_user: settings.max_tokens_per_user,
        token_on_signup: settings.token_on_signup,
    }
}

pub fn throttle_config(settings: &Settings) -> ThrottleConfig {
    ThrottleConfig {
        per_username: settings.login_max_failures,
        per_address: settings.login_max_failures_per_address,
        window: settings.login_failure_window,
    }
}

/// Connects with settings fit for a server: on SQLite, WAL (readers never wait for the writer)
/// and a busy timeout (writers queue instead of failing with "database is locked").
pub async fn connect(database_url: &str) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(database_url.to_owned());
    options
        .sqlx_logging(false)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(30))
        .map_sqlx_sqlite_opts(|opts| {
            opts.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(30))
                .foreign_keys(true)
        });
    if database_url.starts_with("sqlite:") {
        // Pinging a local file before each query costs a round trip to the connection's
        // thread and checks nothing: with it, every query was two thread hand-offs instead of one.
        options
            .max_connections(8)
            .min_connections(1)
            .test_before_acquire(false);
    } else {
        // A ping on every checkout is a network round trip per query; only a connection idle
        // long enough to have been dropped (by a restart, a proxy, a firewall) is worth testing.
        options
            .max_connections(20)
            .min_connections(2)
            .test_before_acquire_if_idle_for(Duration::from_secs(30));
    }
    Database::connect(options).await
}

/// Connects, applies pending migrations, and fills the name skeletons older rows lack.
pub async fn connect_and_migrate(database_url: &str) -> Result<DatabaseConnection, DbErr> {
    if database_url.starts_with("sqlite:") {
        // Connecting may switch a new file to WAL, which needs the file to itself: so the first
        // connection is made under the lock as well, not only the migration.
        let _lock = lock_sqlite_migrations(database_url).await?;
        let db = connect(database_url).await?;
        Migrator::up(&db, None).await?;
        name_skeletons::fill_missing(&db).await?;
        return Ok(db);
    }
    let db = connect(database_url).await?;
    migrate_holding_lock(database_url).await?;
    name_skeletons::fill_missing(&db).await?;
    Ok(db)
}

/// Processes sharing one SQLite file (a server and a `create-user`, say) take turns to set it up,
/// through an exclusive lock on a file beside the database. Not the database file itself: closing
/// any other handle on it would drop SQLite's own locks.
async fn lock_sqlite_migrations(database_url: &str) -> Result<Option<std::fs::File>, DbErr> {
    let Some(path) = sqlite_lookup::file_of(database_url) else {
        return Ok(None);
    };
    let lock_path = format!("{path}.migrate-lock");
    let lock = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)?;
        file.lock()?;
        Ok(file)
    })
    .await
    .map_err(|e| DbErr::Custom(format!("migration lock task failed: {e}")))?
    .map_err(|e| DbErr::Custom(format!("cannot lock {path}.migrate-lock: {e}")))?;
    Ok(Some(lock))
}

/// Any constant will do, as long as every instance uses the same one.
const MIGRATION_LOCK_ID: i64 = 0x6d74_6d69_6772; // "mtmigr"

/// Instances starting together on one PostgreSQL take turns: the first migrates, the others
/// then find nothing pending. The lock belongs to a session, so it uses a pool of exactly one.
async fn migrate_holding_lock(database_url: &str) -> Result<(), DbErr> {
    let mut options = ConnectOptions::new(database_url.to_owned());
    options
        .max_connections(1)
        .min_connections(1)
        .sqlx_logging(false);
    let session = Database::connect(options).await?;
    session
        .execute_unprepared(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK_ID})"))
        .await?;
    let migrated = Migrator::up(&session, None).await;
    let unlocked = session
        .execute_unprepared(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_ID})"))
        .await;
    session.close().await.ok();
    migrated.and(unlocked.map(|_| ()))
}

pub struct Application {
    port: u16,
    server: Server,
    background: Background,
}

/// The tasks that run beside the server: the revocation listener (PostgreSQL), the
/// `last_used_at` writer and the expired-token sweeper.
struct Background {
    verifier: Arc<Verifier>,
    database_url: String,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Background {
    fn start(
        settings: &Settings,
        db: &DatabaseConnection,
        throttle: Arc<LoginThrottle>,
    ) -> Background {
        let last_used = Arc::new(LastUsed::default());
        let on_postgres = db.get_database_backend() == sea_orm::DbBackend::Postgres;
        let config = VerifierConfig {
            capacity: settings.verify_cache,
            ttl: settings.verify_cache_ttl,
        };
        let verifier = Arc::new(Verifier::new(
            &config,
            on_postgres,
            last_used.clone(),
            sqlite_lookup::file_of(&settings.database_url),
        ));
        let mut tasks = vec![
            tokio::spawn(tokens::sweep_every(
                settings.expiry_sweep_interval,
                db.clone(),
            )),
            tokio::spawn(throttle::prune_every(
                settings.expiry_sweep_interval,
                throttle,
            )),
            tokio::spawn(last_used::flush_every(
                settings.last_used_flush,
                last_used.clone(),
                db.clone(),
            )),
        ];
        if on_postgres && settings.verify_cache > 0 {
            tasks.push(tokio::spawn(verification::listen(
                settings.database_url.clone(),
                verifier.clone(),
            )));
        }
        Background {
            verifier,
            database_url: settings.database_url.clone(),
            tasks,
        }
    }

    async fn stop(self) {
        for task in &self.tasks {
            task.abort();
        }
        // Not through the pool: its PostgreSQL connections may belong to the HTTP workers'
        // runtimes, which have just shut down ("a Tokio context … is being shutdown").
        let written = match connect(&self.database_url).await {
            Ok(db) => {
                let written = self.verifier.last_used().flush(&db).await;
                db.close().await.ok();
                written
            }
            Err(e) => Err(e),
        };
        match written {
            Ok(written) => log::info!("stopped; last use written for {written} tokens"),
            Err(e) => log::error!("stopped; could not write the last use of tokens: {e}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("database: {0}")]
    Db(#[from] DbErr),
    #[error("login throttle: {0}")]
    Throttle(#[from] ThrottleError),
    #[error("creating the first admin: {0}")]
    Bootstrap(#[from] users::UserError),
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: String,
        source: std::io::Error,
    },
}

impl Application {
    /// Migrates, creates the first admin on an empty database, binds and builds the server.
    pub async fn build(settings: &Settings) -> Result<Application, StartupError> {
        let db = connect_and_migrate(&settings.database_url).await?;
        let policy = policy_from(settings);
        match users::ensure_bootstrap_admin(&db, &policy, settings.admin_password.clone()).await? {
            Bootstrap::NotNeeded => {}
            Bootstrap::CreatedWithConfiguredPassword => log::warn!(
                "created user '{}' with the password from MULTITOKEN_ADMIN_PASSWORD",
                users::BOOTSTRAP_ADMIN
            ),
            // Shown once, on the very first start, so a fresh install can be used at once.
            Bootstrap::CreatedWithRandomPassword(password) => log::warn!(
                "created user '{}' with password: {password}  (shown only this once; change it)",
                users::BOOTSTRAP_ADMIN
            ),
        }
        tokio::task::spawn_blocking(password::warm_up);
        let throttle = Arc::new(
            LoginThrottle::connect(
                throttle_config(settings),
                db.clone(),
                settings.redis_url.as_deref(),
                &settings.redis_prefix,
            )
            .await?,
        );
        let background = Background::start(settings, &db, throttle.clone());
        let state = web::Data::new(AppState {
            db,
            policy,
            secret_key: settings.secret_key_or_random(),
            cookie_secure: settings.cookie_secure,
            session_idle: settings.session_idle,
            verifier: background.verifier.clone(),
            throttle,
            trusted_proxies: settings.trusted_proxies.clone(),
        });
        let listener = TcpListener::bind(settings.bind).map_err(|source| StartupError::Bind {
            address: settings.bind.to_string(),
            source,
        })?;
        let port = listener
            .local_addr()
            .map_err(|source| StartupError::Bind {
                address: settings.bind.to_string(),
                source,
            })?
            .port();
        let server = run(listener, state, settings.workers.map(|w| w.get())).map_err(|source| {
            StartupError::Bind {
                address: settings.bind.to_string(),
                source,
            }
        })?;
        log::info!("listening on http://{}:{port}", settings.bind.ip());
        Ok(Application {
            port,
            server,
            background,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until stopped (SIGINT or SIGTERM stop it gracefully), then writes the last uses
    /// of tokens still held in memory.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.server.await;
        self.background.stop().await;
        served
    }

    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }
}

fn run(
    listener: TcpListener,
    state: web::Data<AppState>,
    workers: Option<usize>,
) -> std::io::Result<Server> {
    let mut server = HttpServer::new(move || {
        // Runs on each worker's own thread: revocations made by this worker invalidate this cache.
        verification::serve_on_this_thread(state.verifier.clone());
        let (app, api) = App::new()
            .into_utoipa_app()
            .openapi(routes::ApiDoc::openapi())
            .configure(routes::configure)
            .split_for_parts();
        let known_routes = web::Data::new(routes::KnownRoutes::from_openapi(&api));
        app.app_data(state.clone())
            .app_data(routes::path_config())
            .app_data(routes::query_config())
            .app_data(known_routes)
            .service(routes::openapi_document(api))
            .configure(|cfg| routes::pages::configure(cfg, &state))
            .default_service(web::to(routes::not_found))
            .wrap(from_fn(routes::security_headers))
            .wrap(NormalizePath::new(TrailingSlash::Trim))
            // Answers carry keys and account data: no cache may keep them. (Added only where a
            // handler set no Cache-Control of its own, so the stylesheet stays cacheable.)
            .wrap(DefaultHeaders::new().add((header::CACHE_CONTROL, "no-store")))
            // The path only: a query string could carry a secret someone put there by mistake,
            // and a key pasted into the path itself is cut out.
            .wrap(
                Logger::new(r#"%a "%{method}xi %{path}xi" %s %b %Dms"#)
                    .custom_request_replace("method", |req| req.method().to_string())
                    .custom_request_replace("path", |req| {
                        crate::auth::redact::redact_keys(req.path()).into_owned()
                    }),
            )
    })
    .shutdown_timeout(30);
    if let Some(workers) = workers {
        server = server.workers(workers);
    }
    Ok(server.listen(listener)?.run())
}
