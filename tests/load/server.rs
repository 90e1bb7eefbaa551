//! `multitoken serve` as a child process on a free port, its log in a file beside the database.

use std::{
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

pub const ADMIN_PASSWORD: &str = "admin-password-for-load-tests";

pub struct Server {
    child: Child,
    pub port: u16,
    log_path: PathBuf,
}

impl Server {
    /// Starts the server on `database_url` and waits until it listens. `name` names its log file
    /// in `dir`; `env` adds to (or overrides) the settings every load test uses.
    pub fn start(
        database_url: &str,
        dir: &std::path::Path,
        name: &str,
        env: &[(&str, &str)],
    ) -> Server {
        let log_path = dir.join(format!("{name}.log"));
        let log = std::fs::File::create(&log_path).expect("create the server's log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_multitoken"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", database_url)
            .env("MULTITOKEN_BIND", "127.0.0.1:0")
            .env("MULTITOKEN_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("MULTITOKEN_SECRET_KEY", "k".repeat(64))
            // No eviction of acknowledged sessions, no 403 for device tokens: every creation the
            // clients see acknowledged must stay.
            .env("MULTITOKEN_MAX_TOKENS_PER_USER", "100000")
            // Login throttling (per username, per client address) must not answer the load's
            // logins, all of them correct, with 429. Each client sends its own X-Forwarded-For.
            .env("MULTITOKEN_LOGIN_MAX_FAILURES", "1000")
            .env("MULTITOKEN_LOGIN_MAX_FAILURES_PER_ADDRESS", "1000")
            .env("MULTITOKEN_TRUSTED_PROXIES", "127.0.0.1")
            .envs(env.iter().copied())
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("the binary starts");
        let deadline = Instant::now() + Duration::from_secs(60);
        let port = loop {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            if let Some(port) = log
                .lines()
                .find_map(|line| line.split("listening on http://127.0.0.1:").nth(1))
            {
                break port.trim().parse().expect("a port number");
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the server exited at start-up ({status}):\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "the server did not listen within a minute:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        Server {
            child,
            port,
            log_path,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn pid(&self) -> libc::pid_t {
        libc::pid_t::try_from(self.child.id()).expect("a pid")
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL the server");
        self.child.wait().expect("reap the server");
    }

    /// SIGTERM: a graceful stop.
    pub fn terminate(&self) {
        self.signal(libc::SIGTERM);
    }

    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: a plain syscall on the pid of our own child, which is not yet reaped (so the
        // pid cannot have been reused).
        let sent = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(sent, 0, "signal {signal} sent");
    }

    /// The exit status, if the process exits within `bound`.
    pub fn wait_for_exit(&mut self, bound: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + bound;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the server") {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Logged errors and panics: each is a fault, whether or not a client saw it (a revocation
    /// not announced, a last use not written).
    pub fn errors(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|line| line.contains(" ERROR ") || line.contains("panicked"))
            .map(str::to_owned)
            .collect()
    }

    /// Logged errors, warnings and panics, for failure messages: 5xx are logged with their cause.
    pub fn problems(&self) -> String {
        let problems: Vec<String> = self
            .log()
            .lines()
            .filter(|line| {
                line.contains(" ERROR ") || line.contains(" WARN ") || line.contains("panicked")
            })
            // The configured admin password is announced with a warning at the first start.
            .filter(|line| !line.contains("MULTITOKEN_ADMIN_PASSWORD"))
            .take(30)
            .map(str::to_owned)
            .collect();
        if problems.is_empty() {
            "(no errors or warnings in the server's log)".to_owned()
        } else {
            format!("server log:\n{}", problems.join("\n"))
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.child.kill().ok();
            self.child.wait().ok();
        }
    }
}
