//! The plugin's logic without FFI: options, the backend client, the cache, and the decisions.
//! Everything here is safe Rust and unit-tested; `lib.rs` only converts between C and this.
//!
//! Everything a client sends is bounded before it costs anything: a field over
//! [`MAX_FIELD`] bytes is refused without asking the backend or caching; the cache is keyed by a
//! SHA-256 digest of the question (not the 64 KiB strings a client may send) and holds at most
//! `cache_size` answers, least recently used first out; identical questions asked at the same
//! time go to the backend once.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vesper_core::acl::{self as rules, Access, Decision, Subject};
use vesper_core::clientid::{self, MAX_ACCOUNT_SUFFIX};
use vesper_core::goauth::{self, AuthParams};
use vesper_core::serial::SerialNumber;

use crate::cache::{Cache, Flight, Key, digest, lock};
use crate::feed;
use crate::logins::LoginPool;
use crate::options::{Method, Options};

/// Longest username, password, client id or topic the plugin will ask about, in bytes.
pub const MAX_FIELD: usize = 1024;

/// The answer to the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allow,
    Deny,
    /// The backend could not answer (down, timeout, 5xx): never cached; the broker refuses the
    /// login or drops the client.
    Error,
}

/// A name a client may carry: bounded, no MQTT wildcards, no NUL.
fn clean(name: &str) -> bool {
    name.len() <= MAX_FIELD && !name.contains(['+', '#', '\0'])
}

/// The backend's answer (or why there is none) as the broker's outcome.
fn answered(answer: Result<bool, String>) -> (Outcome, Option<String>) {
    match answer {
        Ok(granted) => (outcome(granted), None),
        Err(e) => (Outcome::Error, Some(e)),
    }
}

fn outcome(granted: bool) -> Outcome {
    if granted {
        Outcome::Allow
    } else {
        Outcome::Deny
    }
}

/// A kick/forget command the backend publishes on `$CONTROL/vesper/v1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Drop cached answers for the username and disconnect its clients.
    Kick(String),
    /// Drop cached answers for the username only.
    Forget(String),
}

impl Command {
    /// Reads `{"command":"kick"|"forget","username":"..."}`; anything else is `None`.
    pub fn parse(payload: &[u8]) -> Option<Command> {
        if payload.len() > 2 * MAX_FIELD {
            return None;
        }
        let wire: WireCommand = serde_json::from_slice(payload).ok()?;
        wire.command()
    }

    pub fn username(&self) -> &str {
        match self {
            Command::Kick(u) | Command::Forget(u) => u,
        }
    }
}

/// What the checker shares with its login workers and the control feed's reader.
pub(crate) struct Shared {
    options: Options,
    /// For questions asked on mosquitto's thread: none may hold it past the budget.
    agent: ureq::Agent,
    /// For the login workers, off mosquitto's thread: the whole `http_timeout`, so a slow
    /// backend's answer still arrives and is cached for the client's retry.
    login_agent: ureq::Agent,
    cache: Mutex<Cache>,
    flights: Mutex<HashMap<Key, Arc<Flight>>>,
    standing: Mutex<Standing>,
}

/// What the backend's control feed has said about devices' standing (see [`crate::feed`]).
#[derive(Default)]
struct Standing {
    /// When the newest feed answer was asked for: a device not kicked since was still allowed
    /// then.
    confirmed: Option<Instant>,
    /// Set when the feed had to start over (it no longer held the commands after our cursor):
    /// from then on a device is trusted on the feed's word only once the backend has confirmed
    /// it on its own, since a kick may have been missed.
    reset: Option<Instant>,
    /// Devices the backend confirmed on their own since the reset (digests of usernames).
    vetted: HashSet<Key>,
    /// Usernames the feed kicked, and when: refused at once, before mosquitto's thread
    /// disconnects them; forgotten after [`KICK_MEMORY`].
    cut_off: HashMap<String, Instant>,
    /// Kicks for mosquitto's thread to carry out (at its next tick).
    kicks: Vec<String>,
}

/// How long a kicked username is refused without asking (its clients are long gone by then,
/// and a new login asks the backend, which refuses a revoked device).
const KICK_MEMORY: Duration = Duration::from_secs(30);

impl Shared {
    /// Asks the backend one question on mosquitto's thread (bounded by the budget).
    fn ask(&self, uri: &str, params: &AuthParams) -> Result<bool, String> {
        self.ask_with(&self.agent, uri, params)
    }

    /// Asks the backend one question with `agent`.
    fn ask_with(
        &self,
        agent: &ureq::Agent,
        uri: &str,
        params: &AuthParams,
    ) -> Result<bool, String> {
        let url = format!("http://{}:{}{}", self.options.host, self.options.port, uri);
        let (content_type, body) = goauth::encode_params(self.options.params_mode, params);
        let sent = match self.options.method {
            Method::Post => agent
                .post(&url)
                .header("content-type", content_type)
                .send(&body[..]),
            Method::Put => agent
                .put(&url)
                .header("content-type", content_type)
                .send(&body[..]),
            Method::Get => agent
                .get(&url)
                .header("content-type", content_type)
                .force_send_body()
                .send(&body[..]),
        };
        let mut response = sent.map_err(|e| format!("{url}: {e}"))?;
        let status = response.status().as_u16();
        let answer = response
            .body_mut()
            .with_config()
            .limit(64 * 1024)
            .read_to_vec()
            .map_err(|e| format!("{url}: {e}"))?;
        goauth::interpret(self.options.response_mode, status, &answer)
    }

    /// The question in flight under `key`, and whether the caller is the first to ask it (and
    /// must see that it is asked).
    fn board(&self, key: Key) -> (Arc<Flight>, bool) {
        let mut flights = lock(&self.flights);
        match flights.get(&key) {
            Some(f) => (f.clone(), false),
            None => {
                let f = Arc::new(Flight::default());
                flights.insert(key, f.clone());
                (f, true)
            }
        }
    }

    /// A question's answer arrived: cached (errors never), given to everyone waiting.
    fn settle(
        &self,
        key: Key,
        username: &str,
        ttl: Duration,
        flight: &Flight,
        answer: Result<bool, String>,
    ) {
        if let Ok(granted) = answer {
            lock(&self.cache).put(key, digest(&[username.as_bytes()]), granted, ttl);
        }
        lock(&self.flights).remove(&key);
        flight.land(answer);
    }

    fn forget(&self, username: &str) -> usize {
        lock(&self.cache).forget(&digest(&[username.as_bytes()]))
    }

    /// The backend allowed this login: a kick the feed reported before no longer applies.
    fn cleared(&self, username: &str) {
        lock(&self.standing).cut_off.remove(username);
    }

    /// A command read from the control feed: the username's cached answers are dropped; a kick
    /// also refuses it at once and disconnects its clients at mosquitto's next tick. Returns
    /// how many answers were dropped.
    pub(crate) fn carry_out(&self, command: &Command) -> usize {
        let forgotten = self.forget(command.username());
        if let Command::Kick(username) = command {
            let mut standing = lock(&self.standing);
            standing.cut_off.retain(|_, at| at.elapsed() < KICK_MEMORY);
            standing.cut_off.insert(username.clone(), Instant::now());
            standing.kicks.push(username.clone());
        }
        forgotten
    }

    /// The feed answered a read sent at `asked_at`: every device not kicked was still allowed
    /// then. `started_over`: the feed no longer held every command after our cursor, so every
    /// cached answer is dropped and devices must be confirmed on their own again.
    pub(crate) fn confirm(&self, asked_at: Instant, started_over: bool) {
        if started_over {
            lock(&self.cache).clear();
        }
        let mut standing = lock(&self.standing);
        if started_over {
            standing.reset = Some(asked_at);
            standing.vetted.clear();
        }
        standing.confirmed = Some(asked_at);
    }

    pub(crate) fn options(&self) -> &Options {
        &self.options
    }
}

/// A command as the backend writes it, on `$CONTROL/vesper/v1` and in its control feed.
#[derive(Debug, Clone, serde::Deserialize)]
pub(crate) struct WireCommand {
    command: String,
    username: String,
}

impl WireCommand {
    /// The command, if it is one the plugin knows, about a name a client may carry.
    pub(crate) fn command(self) -> Option<Command> {
        if self.username.is_empty() || !clean(&self.username) {
            return None;
        }
        match self.command.as_str() {
            "kick" => Some(Command::Kick(self.username)),
            "forget" => Some(Command::Forget(self.username)),
            _ => None,
        }
    }
}

/// The decisions, with the backend behind them.
pub struct Checker {
    shared: Arc<Shared>,
    logins: LoginPool,
}

impl Checker {
    /// A checker; with a control feed configured, its reader starts on a thread of its own.
    pub fn new(options: Options) -> Self {
        let agent_for = |timeout: Duration, connections: usize| -> ureq::Agent {
            ureq::Agent::config_builder()
                .timeout_global(Some(timeout))
                .http_status_as_error(false)
                .max_idle_connections_per_host(connections)
                .build()
                .into()
        };
        let agent = agent_for(options.timeout.min(options.budget), 2);
        let login_agent = agent_for(options.timeout, options.logins.workers);
        let logins = LoginPool::new(options.logins);
        let shared = Arc::new(Shared {
            cache: Mutex::new(Cache::new(options.cache_size)),
            options,
            agent,
            login_agent,
            flights: Mutex::new(HashMap::new()),
            standing: Mutex::default(),
        });
        if let Some(control) = shared.options.control.clone() {
            feed::start(Arc::downgrade(&shared), control, shared.options.timeout);
        }
        Self { shared, logins }
    }

    pub fn options(&self) -> &Options {
        &self.shared.options
    }

    /// How many answers are cached now.
    pub fn cached_answers(&self) -> usize {
        lock(&self.shared.cache).len()
    }

    /// Drops every cached answer about `username` (a revoked device, a user removed from a
    /// device); returns how many were dropped.
    pub fn forget(&self, username: &str) -> usize {
        self.shared.forget(username)
    }

    /// The kicks the control feed asked for since the last call, for mosquitto's thread.
    pub fn take_kicks(&self) -> Vec<String> {
        std::mem::take(&mut lock(&self.shared.standing).kicks)
    }

    /// Under `local_acl`, whether a device the local rules allow is still allowed by the registry
    /// (not revoked, still there). The control feed answers when it is fresh (read within its
    /// trust time, the device not kicked since); otherwise the backend's own answer for
    /// the device's data topic, trusted for `status_cache`. The service account is not a device
    /// and needs no such answer.
    fn device_still_allowed(&self, username: &str, client_id: &str) -> (Outcome, Option<String>) {
        let (Some(local), Ok(sn)) = (
            &self.shared.options.local_acl,
            username.parse::<SerialNumber>(),
        ) else {
            return (Outcome::Allow, None);
        };
        let no_longer = || {
            (
                Outcome::Deny,
                Some("the device is no longer allowed (revoked or removed)".to_owned()),
            )
        };
        let user = digest(&[username.as_bytes()]);
        {
            let standing = lock(&self.shared.standing);
            if standing.cut_off.contains_key(username) {
                return no_longer();
            }
            let trust = self.shared.options.control.as_ref().map(|c| c.trust);
            let fresh = standing
                .confirmed
                .zip(trust)
                .is_some_and(|(at, trust)| at.elapsed() <= trust);
            if fresh && (standing.reset.is_none() || standing.vetted.contains(&user)) {
                return (Outcome::Allow, None);
            }
        }
        let key = digest(&[b"status", username.as_bytes(), client_id.as_bytes()]);
        let params = AuthParams {
            username: Some(username.into()),
            clientid: Some(client_id.into()),
            topic: Some(local.topics.data.for_device(&sn)),
            acc: Some(2),
            ..Default::default()
        };
        match self.cached(key, username, local.status_cache, || {
            self.shared.ask(&self.shared.options.aclcheck_uri, &params)
        }) {
            (Outcome::Deny, _) => no_longer(),
            (Outcome::Allow, _) => {
                let mut standing = lock(&self.shared.standing);
                if standing.reset.is_some() {
                    standing.vetted.insert(user);
                }
                (Outcome::Allow, None)
            }
            other => other,
        }
    }

    /// With `local_acl`, a device's or the service account's topic check, decided here;
    /// `None`: ask the backend (users, or local rules off).
    fn decide_locally(&self, username: &str, topic: &str, access: i32) -> Option<Decision> {
        let local = self.shared.options.local_acl.as_ref()?;
        let access = Access::from_acc(i64::from(access))?;
        let device = username.parse::<SerialNumber>().ok();
        let subject = match &device {
            Some(sn) => Subject::Device(sn),
            None if username == local.service_account => Subject::Service,
            None => return None,
        };
        Some(rules::authorize(&local.topics, &subject, topic, access))
    }

    /// A cached question about `username`, asked on the caller's thread: the cache answers
    /// first; identical questions in flight are asked once; the backend's errors are never
    /// cached.
    fn cached(
        &self,
        key: Key,
        username: &str,
        ttl: Duration,
        ask: impl FnOnce() -> Result<bool, String>,
    ) -> (Outcome, Option<String>) {
        if let Some(granted) = lock(&self.shared.cache).get(&key) {
            return (outcome(granted), None);
        }
        let (flight, leader) = self.shared.board(key);
        let answer = if leader {
            let answer = ask();
            self.shared
                .settle(key, username, ttl, &flight, answer.clone());
            answer
        } else {
            flight
                .wait(self.shared.options.budget)
                .unwrap_or_else(|| Err("no answer within the budget".into()))
        };
        answered(answer)
    }

    /// A login question the cache cannot answer goes to the login workers; mosquitto's thread
    /// waits for it at most the pool's patience (see [`crate::logins`]).
    fn asked_off_thread(
        &self,
        key: Key,
        username: &str,
        params: AuthParams,
    ) -> (Outcome, Option<String>) {
        if let Some(granted) = lock(&self.shared.cache).get(&key) {
            return (outcome(granted), None);
        }
        let (flight, leader) = self.shared.board(key);
        if leader {
            let (shared, landing, owner) =
                (self.shared.clone(), flight.clone(), username.to_owned());
            let asked = self.logins.submit(move || {
                let answer =
                    shared.ask_with(&shared.login_agent, &shared.options.getuser_uri, &params);
                if answer == Ok(true) {
                    shared.cleared(&owner);
                }
                shared.settle(key, &owner, shared.options.auth_cache, &landing, answer);
            });
            if asked.is_err() {
                let busy = Err(format!(
                    "{} logins already wait for the backend; refused unasked",
                    self.logins.unanswered()
                ));
                self.shared
                    .settle(key, username, Duration::ZERO, &flight, busy.clone());
                return answered(busy);
            }
        }
        let patience = self.logins.patience();
        match flight.wait(patience) {
            Some(answer) => answered(answer),
            None => (
                Outcome::Error,
                Some(format!(
                    "the backend has not answered within {} ms; its answer is kept for the client's retry",
                    patience.as_millis()
                )),
            ),
        }
    }

    /// A login. Anonymous clients, empty passwords, fields over [`MAX_FIELD`] bytes, names
    /// with wildcards and client ids that are not the username's own (DESIGN.md section 3) are
    /// denied without asking or caching. Returns the outcome and, for denials and errors, why
    /// (for the broker's log).
    pub fn login(
        &self,
        username: Option<&str>,
        password: Option<&str>,
        client_id: Option<&str>,
    ) -> (Outcome, Option<String>) {
        let (Some(username), Some(password)) = (username, password) else {
            return (
                Outcome::Deny,
                Some("anonymous or password-less client".into()),
            );
        };
        let client_id = client_id.unwrap_or("");
        if username.is_empty() || password.is_empty() {
            return (Outcome::Deny, Some("empty username or password".into()));
        }
        if password.len() > MAX_FIELD || !clean(username) || !clean(client_id) {
            return (
                Outcome::Deny,
                Some(format!(
                    "a field over {MAX_FIELD} bytes, or wildcards in the username or client id"
                )),
            );
        }
        // The longest suffix any login may use; the backend applies the exact rule per login.
        if let Err(e) = clientid::check_shape(username, client_id, MAX_ACCOUNT_SUFFIX) {
            return (Outcome::Deny, Some(format!("client id refused: {e}")));
        }
        let key = digest(&[
            b"u",
            username.as_bytes(),
            password.as_bytes(),
            client_id.as_bytes(),
        ]);
        let params = AuthParams {
            username: Some(username.into()),
            password: Some(password.into()),
            clientid: Some(client_id.into()),
            ..Default::default()
        };
        self.asked_off_thread(key, username, params)
    }

    /// An ACL check (`access`: 1 read, 2 write, 4 subscribe, 8 unsubscribe). Superusers pass
    /// every check, as in go-auth; unsubscribing is always allowed.
    pub fn acl(
        &self,
        username: Option<&str>,
        client_id: Option<&str>,
        topic: &str,
        access: i32,
    ) -> (Outcome, Option<String>) {
        if access == 8 {
            return (Outcome::Allow, None);
        }
        let Some(username) = username.filter(|u| !u.is_empty() && clean(u)) else {
            return (Outcome::Deny, Some("no username".into()));
        };
        let client_id = client_id.unwrap_or("");
        if topic.len() > MAX_FIELD || client_id.len() > MAX_FIELD {
            return (
                Outcome::Deny,
                Some(format!("topic or client id over {MAX_FIELD} bytes")),
            );
        }
        if let Some(decision) = self.decide_locally(username, topic, access) {
            return match decision {
                Decision::Allow => self.device_still_allowed(username, client_id),
                Decision::Deny => (Outcome::Deny, Some("not allowed (local rules)".into())),
            };
        }
        if let Some(uri) = &self.shared.options.superuser_uri {
            let params = AuthParams {
                username: Some(username.into()),
                ..Default::default()
            };
            let key = digest(&[b"s", username.as_bytes()]);
            match self.cached(key, username, self.shared.options.acl_cache, || {
                self.shared.ask(uri, &params)
            }) {
                (Outcome::Allow, _) => return (Outcome::Allow, None),
                (Outcome::Error, e) => return (Outcome::Error, e),
                (Outcome::Deny, _) => {}
            }
        }
        let key = digest(&[
            b"a",
            username.as_bytes(),
            client_id.as_bytes(),
            topic.as_bytes(),
            &access.to_le_bytes(),
        ]);
        let params = AuthParams {
            username: Some(username.into()),
            clientid: Some(client_id.into()),
            topic: Some(topic.into()),
            acc: Some(i64::from(access)),
            ..Default::default()
        };
        self.cached(key, username, self.shared.options.acl_cache, || {
            self.shared.ask(&self.shared.options.aclcheck_uri, &params)
        })
    }
}

#[cfg(test)]
mod tests;
