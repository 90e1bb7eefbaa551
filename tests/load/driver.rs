//! The load: concurrent clients that log in, create, verify, list and delete tokens, recording
//! every answer and what each acknowledged; then the check that every acknowledged creation is
//! in the database and every acknowledged deletion is not.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fmt::Write as _,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use futures_util::{StreamExt, stream};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{
    database::{TestDatabase, digest_of},
    server::{ADMIN_PASSWORD, Server},
};

/// Concurrent clients, each a loop of one request at a time.
pub const CLIENTS: usize = 200;
/// Clients sharing one user (and its token table rows, and its limit).
pub const CLIENTS_PER_USER: usize = 4;
/// Logins in flight at once, at most. The server hashes two at a time, at low priority; left
/// unbounded, a saturated server would see clients pile up waiting for logins (for tens of
/// seconds) and the run would measure little else.
const LOGINS_IN_FLIGHT: usize = 8;

/// How long the load runs: 60 s, or `MULTITOKEN_LOAD_SECONDS` for a quick local run.
pub fn load_duration() -> Duration {
    let seconds = match std::env::var("MULTITOKEN_LOAD_SECONDS") {
        Ok(value) => value
            .parse()
            .unwrap_or_else(|_| panic!("MULTITOKEN_LOAD_SECONDS={value:?} is not a number")),
        Err(_) => 60,
    };
    Duration::from_secs(seconds)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    /// `POST /api/token/`
    Login,
    /// `POST /api/tokens/`
    Create,
    /// `GET /api/me/` with a live key
    Me,
    /// `GET /auth/verify` with a live key
    Verify,
    /// `GET /api/tokens/`
    List,
    /// `DELETE /api/tokens/{id}/`
    Delete,
    /// `GET /api/me/` with a deleted key
    DeletedKey,
}

impl Op {
    /// The one answer each request may get: anything else is a failure.
    fn expected(self) -> StatusCode {
        match self {
            Op::Login | Op::Me | Op::Verify | Op::List => StatusCode::OK,
            Op::Create => StatusCode::CREATED,
            Op::Delete => StatusCode::NO_CONTENT,
            Op::DeletedKey => StatusCode::UNAUTHORIZED,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Op::Login => "login POST /api/token/",
            Op::Create => "create POST /api/tokens/",
            Op::Me => "verify GET /api/me/",
            Op::Verify => "verify GET /auth/verify",
            Op::List => "list GET /api/tokens/",
            Op::Delete => "delete DELETE /api/tokens/{id}/",
            Op::DeletedKey => "deleted key GET /api/me/",
        }
    }
}

#[derive(Clone, Debug)]
pub struct User {
    pub name: String,
    pub password: String,
    /// A session from set-up, shared by the user's clients until they log in themselves.
    pub session: Token,
}

/// A key the server acknowledged handing out.
#[derive(Clone, Debug)]
pub struct Token {
    pub key: String,
    /// Known for device tokens (the creation answers it), not for logins.
    pub id: Option<String>,
    /// Index into the users.
    pub user: usize,
}

/// Everything the clients saw.
#[derive(Default)]
pub struct Run {
    pub users: Vec<User>,
    pub elapsed: Duration,
    /// Answers per request kind and status (or "connection error").
    pub counts: BTreeMap<(Op, String), u64>,
    /// Time to the whole answer, per request kind.
    pub latencies: BTreeMap<Op, Vec<Duration>>,
    pub failures: u64,
    /// The first few failures, described.
    pub failure_samples: Vec<String>,
    /// Requests whose outcome cannot be known: cut off by the kill.
    pub unknown: u64,
    /// Acknowledged creations (and set-up sessions) not acknowledged deleted since.
    pub live: Vec<Token>,
    /// Acknowledged deletions.
    pub deleted: Vec<Token>,
}

impl Run {
    pub fn requests(&self) -> u64 {
        self.counts.values().sum()
    }

    pub fn summary(&self, title: &str) -> String {
        let seconds = self.elapsed.as_secs_f64();
        let mut text = format!(
            "{title}: {CLIENTS} clients, {} users, {seconds:.1} s, {} requests, {:.0} rps; \
             {} failures, {} cut off by the kill; {} tokens acknowledged live, {} acknowledged deleted\n",
            self.users.len(),
            self.requests(),
            self.requests() as f64 / seconds,
            self.failures,
            self.unknown,
            self.live.len(),
            self.deleted.len(),
        );
        for ((op, outcome), count) in &self.counts {
            writeln!(text, "  {:<34} {outcome:<18} {count:>8}", op.label()).unwrap();
        }
        for (op, latencies) in &self.latencies {
            let mut sorted = latencies.clone();
            sorted.sort_unstable();
            let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
            writeln!(
                text,
                "  {:<34} p50 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms",
                op.label(),
                at(0.5),
                at(0.99),
                at(1.0)
            )
            .unwrap();
        }
        for sample in &self.failure_samples {
            writeln!(text, "  failure: {sample}").unwrap();
        }
        text
    }

    fn merge(&mut self, tally: Tally) {
        for (key, count) in tally.counts {
            *self.counts.entry(key).or_default() += count;
        }
        for (op, latencies) in tally.latencies {
            self.latencies.entry(op).or_default().extend(latencies);
        }
        self.failures += tally.failures;
        self.unknown += tally.unknown;
        for sample in tally.failure_samples {
            if self.failure_samples.len() < 20 {
                self.failure_samples.push(sample);
            }
        }
    }
}

#[derive(Default)]
struct Tally {
    counts: HashMap<(Op, String), u64>,
    latencies: HashMap<Op, Vec<Duration>>,
    failures: u64,
    failure_samples: Vec<String>,
    unknown: u64,
}

impl Tally {
    fn fail(&mut self, what: String) {
        self.failures += 1;
        if self.failure_samples.len() < 5 {
            self.failure_samples.push(what);
        }
    }
}

/// A distinct client address per client, for per-address login throttling behind the (trusted)
/// loopback proxy.
fn forwarded_for(client: usize) -> String {
    format!(
        "10.{}.{}.{}",
        (client >> 16) & 0xff,
        (client >> 8) & 0xff,
        client & 0xff
    )
}

/// The address set-up and checks come from, apart from every client's.
const SETUP_ADDRESS: &str = "10.255.0.1";

pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        // A hung server fails the run instead of hanging it.
        .timeout(Duration::from_secs(60))
        // Shorter than the server's keep-alive (5 s): a connection the server is closing just
        // as a request goes out on it fails that request, and the client cannot tell whether
        // the server saw it.
        .pool_idle_timeout(Duration::from_secs(2))
        .build()
        .unwrap()
}

/// `POST /api/token/` for `username`, from `address`; the status and body.
pub async fn login(
    http: &reqwest::Client,
    server: &Server,
    username: &str,
    password: &str,
    address: &str,
) -> (StatusCode, Value) {
    let response = http
        .post(server.url("/api/token/"))
        .header("X-Forwarded-For", address)
        .json(&json!({ "username": username, "password": password }))
        .send()
        .await
        .expect("login request sent");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Creates the users the clients share (through the admin API) and logs each in once.
pub async fn create_users(server: &Server, count: usize) -> Vec<User> {
    let http = http_client();
    let (status, body) = login(&http, server, "admin", ADMIN_PASSWORD, SETUP_ADDRESS).await;
    assert_eq!(status, StatusCode::OK, "admin login: {body}");
    let admin = body["id_token"].as_str().unwrap().to_owned();
    stream::iter(0..count)
        .map(|index| {
            let (http, admin) = (&http, &admin);
            async move {
                let name = format!("load-{index}");
                let password = format!("password of load user {index}");
                let response = http
                    .post(server.url("/api/admin/users/"))
                    .bearer_auth(admin)
                    .header("X-Forwarded-For", SETUP_ADDRESS)
                    .json(&json!({ "username": name, "password": password, "is_admin": false }))
                    .send()
                    .await
                    .expect("create-user request sent");
                assert_eq!(response.status(), StatusCode::CREATED, "create user {name}");
                let (status, body) = login(http, server, &name, &password, SETUP_ADDRESS).await;
                assert_eq!(status, StatusCode::OK, "first login of {name}: {body}");
                let key = body["id_token"].as_str().unwrap().to_owned();
                User {
                    name,
                    password,
                    session: Token {
                        key,
                        id: None,
                        user: index,
                    },
                }
            }
        })
        .buffered(4)
        .collect()
        .await
}

/// Runs `CLIENTS` clients against `server` for `duration`. With `kill_after`, SIGKILLs the server
/// then and stops the clients; requests cut off by the kill count as of unknown outcome.
pub async fn run(
    server: &mut Server,
    users: Vec<User>,
    duration: Duration,
    kill_after: Option<Duration>,
) -> Run {
    let http = http_client();
    let killed = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let deadline = started + duration;
    let logins = Arc::new(tokio::sync::Semaphore::new(LOGINS_IN_FLIGHT));
    let mut clients = tokio::task::JoinSet::new();
    for index in 0..CLIENTS {
        let user_index = index / CLIENTS_PER_USER % users.len();
        let client = Client {
            index,
            user_index,
            user: users[user_index].clone(),
            base: server.url(""),
            http: http.clone(),
            address: forwarded_for(index + 1),
            auth: users[user_index].session.key.clone(),
            logins: logins.clone(),
            devices: Vec::new(),
            sessions: Vec::new(),
            deleted: Vec::new(),
            created: 0,
            dice: Dice::new(index as u64),
            tally: Tally::default(),
        };
        clients.spawn(client.run(deadline, killed.clone()));
    }
    if let Some(after) = kill_after {
        tokio::time::sleep(after).await;
        // Set before the kill: every error after this point may be the kill's doing.
        killed.store(true, Ordering::SeqCst);
        server.kill();
    }
    let mut run = Run {
        live: users.iter().map(|u| u.session.clone()).collect(),
        users,
        ..Run::default()
    };
    while let Some(client) = clients.join_next().await {
        let client = client.expect("a client task panicked");
        run.live.extend(client.devices);
        run.live.extend(client.sessions);
        run.deleted.extend(client.deleted);
        run.merge(client.tally);
    }
    run.elapsed = started.elapsed();
    run
}

/// xorshift64*: enough to pick requests, and `Send`.
struct Dice(u64);

impl Dice {
    fn new(seed: u64) -> Dice {
        Dice(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as usize % n
    }
}

struct Client {
    index: usize,
    user_index: usize,
    user: User,
    base: String,
    http: reqwest::Client,
    address: String,
    /// The key this client manages its tokens with: the shared set-up session, then its own
    /// latest login.
    auth: String,
    /// Turns to log in (see `LOGINS_IN_FLIGHT`).
    logins: Arc<tokio::sync::Semaphore>,
    /// Its live device tokens (only this client deletes them).
    devices: Vec<Token>,
    /// Sessions from its own logins.
    sessions: Vec<Token>,
    deleted: Vec<Token>,
    created: u64,
    dice: Dice,
    tally: Tally,
}

/// What a request came to.
enum Answer {
    Status(StatusCode, reqwest::header::HeaderMap, Vec<u8>),
    /// No answer, or a broken one: the connection failed.
    Broken(reqwest::Error),
}

impl Client {
    async fn run(mut self, deadline: Instant, killed: Arc<AtomicBool>) -> Client {
        while Instant::now() < deadline && !killed.load(Ordering::SeqCst) {
            let mut op = self.choose();
            let turn = match op {
                Op::Login => self.logins.clone().try_acquire_owned().ok(),
                _ => None,
            };
            if op == Op::Login && turn.is_none() {
                op = Op::Me;
            }
            let go_on = self.step(op, &killed).await;
            drop(turn);
            if !go_on {
                break;
            }
        }
        self
    }

    /// Login is a small share: argon2 is slow on purpose, and the run should measure the rest.
    /// Deletes balance creates, so each client keeps a handful of device tokens.
    fn choose(&mut self) -> Op {
        if self.devices.len() < 2 {
            return Op::Create;
        }
        if self.devices.len() > 12 {
            return Op::Delete;
        }
        match self.dice.below(100) {
            0..2 => Op::Login,
            2..20 => Op::Create,
            20..38 => Op::Delete,
            38..60 => Op::Me,
            60..80 => Op::Verify,
            80..92 => Op::List,
            _ if self.deleted.is_empty() => Op::Me,
            _ => Op::DeletedKey,
        }
    }

    /// A live key of this client's, a device's or a session's.
    fn some_live_key(&mut self) -> String {
        let pick = self.dice.below(self.devices.len() + 1);
        match self.devices.get(pick) {
            Some(token) => token.key.clone(),
            None => self.auth.clone(),
        }
    }

    async fn send(&self, method: Method, path: &str, key: &str, body: Option<Value>) -> Answer {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("X-Forwarded-For", &self.address);
        if !key.is_empty() {
            request = request.header("Authorization", format!("Token {key}"));
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        match request.send().await {
            Err(e) => Answer::Broken(e),
            Ok(response) => {
                let status = response.status();
                let headers = response.headers().clone();
                match response.bytes().await {
                    Ok(body) => Answer::Status(status, headers, body.to_vec()),
                    Err(e) => Answer::Broken(e),
                }
            }
        }
    }

    /// One request and its bookkeeping; false when the client should stop (the server was
    /// killed).
    async fn step(&mut self, op: Op, killed: &AtomicBool) -> bool {
        // Taken out before the request: a deletion whose outcome is unknown leaves the token in
        // neither list.
        let target = match op {
            Op::Delete => {
                let pick = self.dice.below(self.devices.len());
                Some(self.devices.swap_remove(pick))
            }
            Op::DeletedKey => {
                let pick = self.dice.below(self.deleted.len());
                Some(self.deleted[pick].clone())
            }
            _ => None,
        };
        let sent = Instant::now();
        let answer = match op {
            Op::Login => {
                let body = json!({ "username": self.user.name, "password": self.user.password });
                self.send(Method::POST, "/api/token/", "", Some(body)).await
            }
            Op::Create => {
                self.created += 1;
                let name = format!("client {} token {}", self.index, self.created);
                let auth = self.auth.clone();
                self.send(
                    Method::POST,
                    "/api/tokens/",
                    &auth,
                    Some(json!({ "name": name })),
                )
                .await
            }
            Op::Me | Op::Verify => {
                let key = self.some_live_key();
                let path = if op == Op::Me {
                    "/api/me/"
                } else {
                    "/auth/verify"
                };
                self.send(Method::GET, path, &key, None).await
            }
            Op::List => {
                self.send(Method::GET, "/api/tokens/", &self.auth, None)
                    .await
            }
            Op::Delete => {
                let id = target.as_ref().and_then(|t| t.id.clone()).unwrap();
                let path = format!("/api/tokens/{id}/");
                self.send(Method::DELETE, &path, &self.auth, None).await
            }
            Op::DeletedKey => {
                let key = target.as_ref().unwrap().key.clone();
                self.send(Method::GET, "/api/me/", &key, None).await
            }
        };
        let (status, headers, body) = match answer {
            Answer::Broken(error) => {
                *self
                    .tally
                    .counts
                    .entry((op, "connection error".to_owned()))
                    .or_default() += 1;
                if killed.load(Ordering::SeqCst) {
                    self.tally.unknown += 1;
                    return false;
                }
                self.tally.fail(format!("{}: {error:?}", op.label()));
                return true;
            }
            Answer::Status(status, headers, body) => (status, headers, body),
        };
        self.tally
            .latencies
            .entry(op)
            .or_default()
            .push(sent.elapsed());
        *self
            .tally
            .counts
            .entry((op, status.as_u16().to_string()))
            .or_default() += 1;
        let text = String::from_utf8_lossy(&body);
        if status != op.expected() {
            self.tally.fail(format!(
                "{} (client {}) answered {status}: {text}",
                op.label(),
                self.index
            ));
            return true;
        }
        let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let wrong = match op {
            Op::Login => match json["id_token"].as_str() {
                Some(key) if json["user"] == self.user.name.as_str() => {
                    self.auth = key.to_owned();
                    self.sessions.push(Token {
                        key: key.to_owned(),
                        id: None,
                        user: self.user_index,
                    });
                    None
                }
                _ => Some(format!("no key for {}", self.user.name)),
            },
            Op::Create => match (json["id"].as_str(), json["id_token"].as_str()) {
                (Some(id), Some(key)) => {
                    self.devices.push(Token {
                        key: key.to_owned(),
                        id: Some(id.to_owned()),
                        user: self.user_index,
                    });
                    None
                }
                _ => Some("no id and key".to_owned()),
            },
            Op::Me => (json["user"] != self.user.name.as_str())
                .then(|| format!("the key answered for another user, not {}", self.user.name)),
            Op::Verify => (headers.get("x-auth-user").and_then(|v| v.to_str().ok())
                != Some(self.user.name.as_str()))
            .then(|| format!("X-Auth-User is not {}", self.user.name)),
            Op::List => self.stale_listing(&json),
            Op::Delete => {
                self.deleted.push(target.unwrap());
                None
            }
            Op::DeletedKey => None,
        };
        if let Some(wrong) = wrong {
            self.tally.fail(format!(
                "{} (client {}) answered {status} but {wrong}: {text}",
                op.label(),
                self.index
            ));
        }
        true
    }

    /// A listing must show this client's own acknowledged writes: no other client touches them.
    fn stale_listing(&self, listed: &Value) -> Option<String> {
        let Some(listed) = listed.as_array() else {
            return Some("not a list".to_owned());
        };
        let ids: HashSet<&str> = listed.iter().filter_map(|t| t["id"].as_str()).collect();
        let missing = self
            .devices
            .iter()
            .filter(|t| !ids.contains(t.id.as_deref().unwrap()))
            .count();
        let resurrected = self
            .deleted
            .iter()
            .filter(|t| ids.contains(t.id.as_deref().unwrap()))
            .count();
        (missing + resurrected > 0).then(|| {
            format!("{missing} acknowledged creations missing, {resurrected} acknowledged deletions listed")
        })
    }
}

/// Checks, over HTTP and in the database, that every acknowledged creation of `run` is there
/// and every acknowledged deletion is not. Returns what is wrong, empty when all holds.
pub async fn lost_writes(server: &Server, database: &TestDatabase, run: &Run) -> Vec<String> {
    let mut problems = Vec::new();
    let mut note = |problem: String| {
        if problems.len() < 20 {
            problems.push(problem);
        }
    };
    let http = http_client();

    // Over HTTP: each key, uncached after a restart.
    let keys = run
        .live
        .iter()
        .map(|t| (t, StatusCode::OK))
        .chain(run.deleted.iter().map(|t| (t, StatusCode::UNAUTHORIZED)));
    let answers: Vec<(&Token, StatusCode, Result<StatusCode, reqwest::Error>)> = stream::iter(keys)
        .map(|(token, expected)| {
            let http = &http;
            async move {
                let answer = http
                    .get(server.url("/api/me/"))
                    .header("Authorization", format!("Token {}", token.key))
                    .header("X-Forwarded-For", SETUP_ADDRESS)
                    .send()
                    .await
                    .map(|r| r.status());
                (token, expected, answer)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    for (token, expected, answer) in answers {
        if answer.as_ref().ok() != Some(&expected) {
            let what = if expected == StatusCode::OK {
                "acknowledged creation"
            } else {
                "acknowledged deletion"
            };
            note(format!(
                "{what} {:?} of {}: GET /api/me/ answered {answer:?}, not {expected}",
                token.id, run.users[token.user].name
            ));
        }
    }

    // Each owner's listing, with the set-up session (live, never deleted).
    for (index, user) in run.users.iter().enumerate() {
        let listed: Value = http
            .get(server.url("/api/tokens/"))
            .header("Authorization", format!("Token {}", user.session.key))
            .header("X-Forwarded-For", SETUP_ADDRESS)
            .send()
            .await
            .expect("list request sent")
            .json()
            .await
            .unwrap_or(Value::Null);
        let ids: HashSet<&str> = listed
            .as_array()
            .map(|l| l.iter().filter_map(|t| t["id"].as_str()).collect())
            .unwrap_or_default();
        for token in run.live.iter().filter(|t| t.user == index) {
            if let Some(id) = &token.id
                && !ids.contains(id.as_str())
            {
                note(format!(
                    "acknowledged creation {id} missing from {}'s list",
                    user.name
                ));
            }
        }
        for token in run.deleted.iter().filter(|t| t.user == index) {
            if let Some(id) = &token.id
                && ids.contains(id.as_str())
            {
                note(format!(
                    "acknowledged deletion {id} still in {}'s list",
                    user.name
                ));
            }
        }
    }

    // In the database itself.
    let rows = database.tokens_by_digest().await;
    for token in &run.live {
        match rows.get(&digest_of(&token.key)) {
            None => note(format!("acknowledged creation {:?} has no row", token.id)),
            Some(row)
                if token
                    .id
                    .as_ref()
                    .is_some_and(|id| *id != row.id.to_string()) =>
            {
                note(format!(
                    "the key of {:?} is stored under {}",
                    token.id, row.id
                ))
            }
            Some(_) => {}
        }
    }
    for token in &run.deleted {
        if rows.contains_key(&digest_of(&token.key)) {
            note(format!(
                "acknowledged deletion {:?} still has a row",
                token.id
            ));
        }
    }
    problems
}
