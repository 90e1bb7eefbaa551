//! Building the application: database, first admin, background tasks, HTTP server.

use std::{net::TcpListener, sync::Arc, time::Duration};

use actix_web::{
    App, HttpServer,
    dev::{Server, ServerHandle},
    middleware::Condition,
    web,
};
use sea_orm::{DatabaseConnection, DbErr};

use utoipa::OpenApi;
use utoipa_actix_web::AppExt;

use crate::{
    auth::password,
    config::Settings,
    db::{connect, connect_and_migrate},
    metrics::Metrics,
    routes::{self, in_flight::InFlight},
    services::{
        audit, pairing, repeat_every,
        throttle::{self, LoginThrottle, ThrottleError},
        tokens,
        users::{self, Bootstrap},
    },
    state::{AppState, pairing_config, policy_from, throttle_config},
    verify::{
        Revocations, Verifier, VerifierConfig, last_used, lookup::Lookup, rate_limit::SharedLimits,
        refusals, revocations,
    },
};

pub struct Application {
    port: u16,
    server: Server,
    background: Background,
    in_flight: InFlight,
}

/// The tasks that run beside the server: the writer of last uses and usage counts, the sweepers
/// and pruners, the refusals' audit writer, and the revocation listener of a shared database.
struct Background {
    verifier: Arc<Verifier>,
    /// Announces to `verifier`; the sweeper and every handler finish their changes through it.
    revocations: Revocations,
    database_url: String,
    /// The writer of last uses and usage counts, stopped between flushes (see `stop`).
    flusher: tokio::task::JoinHandle<()>,
    stop_flushing: tokio::sync::watch::Sender<bool>,
    /// The other tasks, aborted at a stop.
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// How long a stop waits for a flush under way (normally milliseconds) before cutting it off.
const FLUSH_BOUND: Duration = Duration::from_secs(2);

impl Background {
    fn start(
        settings: &Settings,
        db: &DatabaseConnection,
        throttle: Arc<LoginThrottle>,
        shared_limits: Option<SharedLimits>,
        metrics: Arc<Metrics>,
    ) -> Background {
        // Other instances may share a PostgreSQL or MariaDB database: the cache is trusted only
        // while their revocations can reach this one.
        let backend = db.get_database_backend();
        let shared = matches!(
            backend,
            sea_orm::DbBackend::Postgres | sea_orm::DbBackend::MySql
        ) && settings.verify_cache > 0;
        let config = VerifierConfig {
            capacity: settings.verify_cache,
            ttl: settings.verify_cache_ttl,
        };
        let lookup = Lookup::new(db.clone(), &settings.database_url, metrics.clone());
        let mut verifier = Verifier::new(&config, shared, lookup).counting_into(metrics);
        if let Some(shared) = shared_limits {
            verifier = verifier.sharing_rate_limits(shared);
        }
        let verifier = Arc::new(verifier);
        let revocations = Revocations::announcing_to(verifier.clone());
        let mut tasks = vec![
            tokio::spawn(tokens::sweep_every(
                settings.expiry_sweep_interval,
                db.clone(),
                revocations.clone(),
            )),
            tokio::spawn(repeat_every(
                settings.expiry_sweep_interval,
                "audit events past their retention",
                {
                    let (db, retention) = (db.clone(), settings.audit_retention);
                    move || {
                        let db = db.clone();
                        async move { audit::prune(&db, retention).await }
                    }
                },
            )),
            tokio::spawn(repeat_every(
                settings.expiry_sweep_interval,
                "pairings expired a day ago",
                {
                    let db = db.clone();
                    move || {
                        let db = db.clone();
                        async move { pairing::prune(&db).await }
                    }
                },
            )),
            tokio::spawn(repeat_every(
                settings.expiry_sweep_interval,
                "usage history past its retention",
                {
                    let (db, retention) = (db.clone(), settings.usage_retention);
                    move || {
                        let db = db.clone();
                        async move { tokens::usage::prune(&db, retention).await }
                    }
                },
            )),
            tokio::spawn(throttle::prune_every(
                settings.expiry_sweep_interval,
                throttle,
            )),
            tokio::spawn(refusals::write_every(
                settings.last_used_flush,
                verifier.refusals().clone(),
                db.clone(),
            )),
        ];
        if shared && backend == sea_orm::DbBackend::Postgres {
            tasks.push(tokio::spawn(revocations::listen(
                settings.database_url.clone(),
                verifier.clone(),
            )));
        }
        if shared && backend == sea_orm::DbBackend::MySql {
            tasks.push(tokio::spawn(revocations::poll(
                db.clone(),
                verifier.clone(),
            )));
        }
        let (stop_flushing, stopped) = tokio::sync::watch::channel(false);
        let flusher = tokio::spawn(last_used::flush_every(
            settings.last_used_flush,
            verifier.last_used().clone(),
            db.clone(),
            stopped,
        ));
        Background {
            verifier,
            revocations,
            database_url: settings.database_url.clone(),
            flusher,
            stop_flushing,
            tasks,
        }
    }

    async fn stop(self) {
        // A flush under way finishes: cut off during its commit, it would put back counts the
        // database may have taken, and the last flush below would add them twice.
        self.stop_flushing.send_replace(true);
        let mut flusher = self.flusher;
        match tokio::time::timeout(FLUSH_BOUND, &mut flusher).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => log::error!("the last-use flusher had failed: {e}"),
            Err(_) => {
                log::warn!("stopping; the last-use flush under way is cut off");
                flusher.abort();
                // Aborting only asks; wait until it is gone, so that the flush cut off has put
                // its batch back (`last_used::Taken`) before the last flush below takes it.
                flusher.await.ok();
            }
        }
        for task in &self.tasks {
            task.abort();
        }
        for task in self.tasks {
            task.await.ok();
        }
        // Not through the pool: its PostgreSQL connections may belong to the HTTP workers'
        // runtimes, which have just shut down ("a Tokio context … is being shutdown").
        let written = match connect(&self.database_url).await {
            Ok(db) => {
                let written = self.verifier.last_used().flush(&db).await;
                if let Err(e) = self.verifier.refusals().write(&db).await {
                    log::warn!("stopped; could not record refused token uses: {e}");
                }
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
    #[error("rate limits store (Redis): {0}")]
    RateLimits(#[from] redis::RedisError),
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
        match users::ensure_bootstrap_admin(
            &db,
            &Revocations::none(),
            &policy,
            settings.admin_password.clone(),
        )
        .await?
        {
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
        let shared_limits = match &settings.redis_url {
            Some(url) => Some(SharedLimits::connect(url, &settings.redis_prefix).await?),
            None => None,
        };
        let metrics = Arc::new(Metrics::default());
        let background = Background::start(
            settings,
            &db,
            throttle.clone(),
            shared_limits,
            metrics.clone(),
        );
        let state = web::Data::new(AppState {
            db,
            policy,
            secret_key: settings.secret_key_or_random(),
            cookie_secure: settings.cookie_secure,
            session_idle: settings.session_idle,
            verifier: background.verifier.clone(),
            revocations: background.revocations.clone(),
            throttle,
            trusted_proxies: settings.trusted_proxies.clone(),
            pairing: pairing_config(settings),
            public_url: settings.public_url.clone(),
            metrics,
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
        let in_flight = InFlight::default();
        let workers = settings.workers.map(|w| w.get());
        let server = run(listener, state, workers, in_flight.clone()).map_err(|source| {
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
            in_flight,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until stopped, then writes the last uses of tokens still held in memory. SIGTERM
    /// or SIGINT stop it gracefully: no new connections, requests in flight on every worker
    /// finish (each answer closing its connection) before any worker stops, within
    /// [`DRAIN_BOUND`] and [`CLOSE_BOUND`]; a second signal while they finish, or SIGQUIT, stops
    /// it at once.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let handle = self.server.handle();
        // The server is polled throughout: it carries out the stop's commands, and it ends when
        // they (or a `ServerHandle` elsewhere, as in the tests) stop it.
        let stopping = async {
            match stop_signal().await {
                Stop::Graceful => drain_then_stop(&handle, &self.in_flight).await,
                Stop::Immediate => handle.stop(false).await,
            }
            std::future::pending::<()>().await
        };
        let served = tokio::select! {
            served = self.server => served,
            () = stopping => unreachable!("pends once the server is told to stop"),
        };
        self.background.stop().await;
        served
    }

    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }
}

/// How long a graceful stop lets requests in flight run before it gives up on them.
const DRAIN_BOUND: Duration = Duration::from_secs(25);
/// How long the workers then have to close their connections (actix-web's shutdown timeout).
const CLOSE_BOUND: Duration = Duration::from_secs(5);

fn run(
    listener: TcpListener,
    state: web::Data<AppState>,
    workers: Option<usize>,
    in_flight: InFlight,
) -> std::io::Result<Server> {
    let access_log = routes::access_log::turned_on();
    let mut server = HttpServer::new(move || {
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
            .wrap(routes::middleware::Essentials {
                https_only: state.cookie_secure,
                metrics: state.metrics.clone(),
                in_flight: in_flight.clone(),
            })
            // The access log, when its level is on; off, it is left out of the stack.
            .wrap(Condition::new(access_log, routes::access_log::AccessLog))
    })
    // Signals are ours (`run_until_stopped`): actix-web would stop each worker as soon as its
    // own connections were done, see `routes::in_flight`.
    .disable_signals()
    .shutdown_timeout(CLOSE_BOUND.as_secs());
    if let Some(workers) = workers {
        server = server.workers(workers);
    }
    Ok(server.listen(listener)?.run())
}

/// How a signal asks the server to stop.
enum Stop {
    /// SIGTERM, SIGINT (Ctrl-C): let the requests in flight finish.
    Graceful,
    /// SIGQUIT: stop serving at once (the last uses are still written).
    Immediate,
}

async fn stop_signal() -> Stop {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (signal(SignalKind::terminate()), signal(SignalKind::quit())) {
            (Ok(mut terminate), Ok(mut quit)) => {
                return tokio::select! {
                    _ = terminate.recv() => {
                        log::info!("SIGTERM received: stopping gracefully");
                        Stop::Graceful
                    }
                    _ = tokio::signal::ctrl_c() => {
                        log::info!("SIGINT received: stopping gracefully");
                        Stop::Graceful
                    }
                    _ = quit.recv() => {
                        log::info!("SIGQUIT received: stopping at once");
                        Stop::Immediate
                    }
                };
            }
            (Err(e), _) | (_, Err(e)) => {
                log::warn!(
                    "cannot listen for SIGTERM and SIGQUIT ({e}); Ctrl-C still stops the server"
                )
            }
        }
    }
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
    log::info!("SIGINT received: stopping gracefully");
    Stop::Graceful
}

/// Stops accepting, lets every request in flight finish while all workers still run, closes
/// (see `routes::in_flight`), then stops the workers. A second signal, or requests still
/// running after `DRAIN_BOUND`, stop them at once.
async fn drain_then_stop(handle: &ServerHandle, in_flight: &InFlight) {
    handle.pause().await;
    in_flight.start_draining();
    let drained = tokio::select! {
        drained = in_flight.drain(DRAIN_BOUND) => drained,
        _ = stop_signal() => false,
    };
    if !drained {
        log::warn!(
            "stopping with {} requests still in flight",
            in_flight.count()
        );
    }
    handle.stop(drained).await;
}
