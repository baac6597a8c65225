//! The plugin's logic without FFI: options, the backend client, the cache, and the decisions.
//! Everything here is safe Rust and unit-tested; `lib.rs` only converts between C and this.
//!
//! Everything a client sends is bounded before it costs anything: a field over
//! [`MAX_FIELD`] bytes is refused without asking the backend or caching; the cache is keyed by a
//! SHA-256 digest of the question (not the 64 KiB strings a client may send) and holds at most
//! `cache_size` answers, least recently used first out; identical questions asked at the same
//! time go to the backend once.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use lru::LruCache;
use sha2::{Digest, Sha256};
use vesper_core::acl::{self as rules, Access, Decision, Subject, TopicTemplate, Topics};
use vesper_core::clientid::{self, MAX_ACCOUNT_SUFFIX};
use vesper_core::goauth::{self, AuthParams, ParamsMode, ResponseMode};
use vesper_core::serial::SerialNumber;

/// Longest username, password, client id or topic the plugin will ask about, in bytes.
pub const MAX_FIELD: usize = 1024;

/// Default number of cached answers (`plugin_opt_cache_size`).
pub const DEFAULT_CACHE_SIZE: usize = 100_000;

/// The answer to the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allow,
    Deny,
    /// The backend could not answer (down, timeout, 5xx): never cached; the broker refuses the
    /// login or drops the client.
    Error,
}

/// Plugin options, named as go-auth names them (`plugin_opt_http_host` in mosquitto.conf
/// arrives here as `http_host`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub host: String,
    pub port: u16,
    pub getuser_uri: String,
    pub aclcheck_uri: String,
    pub superuser_uri: Option<String>,
    pub params_mode: ParamsMode,
    pub response_mode: ResponseMode,
    pub method: Method,
    pub timeout: Duration,
    /// The longest one question may hold mosquitto's only thread (`plugin_opt_budget_seconds`,
    /// default 2): the HTTP timeout is the smaller of this and `http_timeout`.
    pub budget: Duration,
    pub auth_cache: Duration,
    pub acl_cache: Duration,
    /// Most answers kept (grants and denials together).
    pub cache_size: NonZeroUsize,
    /// Decide devices' and the service account's topic checks here, with the backend's own
    /// rules (`vesper_core::acl`), instead of asking (`plugin_opt_local_acl true`); see [`LocalAcl`].
    pub local_acl: Option<LocalAcl>,
}

/// The rules the plugin applies itself when `local_acl` is on: the same `vesper_core::acl::authorize`
/// the backend runs, with the same topic templates and service account name (they must equal
/// the backend's `[mqtt.topics]` and `serve.service_account`). Only devices and the service
/// account are decided here: their grants depend on nothing but the topic, once the login was
/// allowed by the backend (a revoked device is kicked, and its cached login dropped, at once).
/// Users' grants depend on the registry and are always asked.
///
/// A device's status is re-checked all the same: its topics are decided here, but only while
/// the backend has said within `status_cache` (at most [`MAX_STATUS_CACHE`]) that the device may
/// publish on its own data topic. So a revoked device is cut off within a few seconds even when
/// the backend's kick never arrives (no `[serve.broker]`, or a command lost); a kick or forget
/// drops that answer at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalAcl {
    pub topics: Topics,
    pub service_account: String,
    pub status_cache: Duration,
}

/// The longest a device's "still allowed" answer is trusted under `local_acl`.
pub const MAX_STATUS_CACHE: Duration = Duration::from_secs(5);

/// go-auth's `http_method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Post,
    Get,
    Put,
}

impl Options {
    /// Reads options; unknown keys are ignored (they may belong to another plugin), bad values
    /// of known keys are errors that stop the broker from starting with a wrong setup.
    pub fn parse<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, String> {
        let mut o = Options {
            host: String::new(),
            port: 0,
            getuser_uri: "/mqtt/auth/user".into(),
            aclcheck_uri: "/mqtt/auth/acl".into(),
            superuser_uri: None,
            params_mode: ParamsMode::Json,
            response_mode: ResponseMode::Status,
            method: Method::Post,
            timeout: Duration::from_secs(5),
            budget: Duration::from_secs(2),
            auth_cache: Duration::from_secs(30),
            acl_cache: Duration::from_secs(30),
            cache_size: NonZeroUsize::new(DEFAULT_CACHE_SIZE).expect("non-zero"),
            local_acl: None,
        };
        let mut local = false;
        let mut topics = Topics::default();
        let mut status_cache = Duration::from_secs(3);
        let mut service_account = "vesper-backend".to_owned();
        let template = |key: &str, v: &str| {
            TopicTemplate::try_from(v.trim().to_owned()).map_err(|e| format!("{key}: {e}"))
        };
        let seconds = |key: &str, v: &str| {
            v.trim()
                .parse::<u64>()
                .map(Duration::from_secs)
                .map_err(|_| format!("{key}: `{v}` is not a number of seconds"))
        };
        for (key, value) in pairs {
            match key {
                "http_host" => o.host = value.trim().to_owned(),
                "http_port" => o.port = value.trim().parse().map_err(|_| format!("http_port: `{value}` is not a port"))?,
                "http_getuser_uri" => o.getuser_uri = value.to_owned(),
                "http_aclcheck_uri" => o.aclcheck_uri = value.to_owned(),
                "http_superuser_uri" => o.superuser_uri = Some(value.to_owned()).filter(|v| !v.is_empty()),
                "http_params_mode" => {
                    o.params_mode = match value {
                        "json" => ParamsMode::Json,
                        "form" => ParamsMode::Form,
                        other => return Err(format!("http_params_mode: `{other}` is not json or form")),
                    }
                }
                "http_response_mode" => o.response_mode = value.parse().map_err(|e| format!("http_response_mode: {e}"))?,
                "http_method" => {
                    o.method = match value {
                        "POST" => Method::Post,
                        "GET" => Method::Get,
                        "PUT" => Method::Put,
                        other => return Err(format!("http_method: `{other}` is not POST, GET or PUT")),
                    }
                }
                "http_timeout" => o.timeout = seconds(key, value)?,
                "budget_seconds" => o.budget = seconds(key, value)?,
                "auth_cache_seconds" => o.auth_cache = seconds(key, value)?,
                "acl_cache_seconds" => o.acl_cache = seconds(key, value)?,
                "local_acl" => local = match value.trim() {
                    "true" => true,
                    "false" => false,
                    other => return Err(format!("local_acl: `{other}` is not true or false")),
                },
                "service_account" => service_account = value.trim().to_owned(),
                "status_cache_seconds" => status_cache = seconds(key, value)?,
                "topic_data" => topics.data = template(key, value)?,
                "topic_status" => topics.status = template(key, value)?,
                "topic_control" => topics.control = template(key, value)?,
                "cache_size" => o.cache_size = value.trim().parse().map_err(|_| format!("cache_size: `{value}` is not a number of entries above 0"))?,
                "http_with_tls" if value == "true" => return Err("http_with_tls: TLS to the backend is not supported; keep the backend on loopback".into()),
                _ => {}
            }
        }
        if o.host.is_empty() {
            return Err("http_host is required (e.g. plugin_opt_http_host 127.0.0.1)".into());
        }
        if o.port == 0 {
            return Err("http_port is required (e.g. plugin_opt_http_port 8081)".into());
        }
        for uri in [&o.getuser_uri, &o.aclcheck_uri]
            .into_iter()
            .chain(o.superuser_uri.as_ref())
        {
            if !uri.starts_with('/') {
                return Err(format!("`{uri}`: URIs must start with /"));
            }
        }
        if o.params_mode == ParamsMode::Form && o.method == Method::Get {
            return Err(
                "http_params_mode form needs http_method POST or PUT (as in go-auth)".into(),
            );
        }
        if local {
            topics.validate().map_err(|e| e.to_string())?;
            if service_account.is_empty() {
                return Err("service_account must not be empty".into());
            }
            if status_cache > MAX_STATUS_CACHE {
                return Err(format!(
                    "status_cache_seconds: at most {} (a revoked device keeps its access that long)",
                    MAX_STATUS_CACHE.as_secs()
                ));
            }
            o.local_acl = Some(LocalAcl {
                topics,
                service_account,
                status_cache,
            });
        }
        if o.timeout.is_zero() {
            return Err("http_timeout must be at least 1 second".into());
        }
        if o.budget.is_zero() {
            return Err("budget_seconds must be at least 1 second".into());
        }
        Ok(o)
    }
}

/// The digest a question is cached under.
type Key = [u8; 32];

/// A digest of the parts of a question, each length-prefixed so that no two questions share one.
fn digest(parts: &[&[u8]]) -> Key {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part);
    }
    hash.finalize().into()
}

/// One cached answer: the grant, when it expires, and whose it is (for [`Cache::forget`]).
struct Entry {
    granted: bool,
    until: Instant,
    user: Key,
}

/// Grants and denials with their expiry, at most `capacity` of them (least recently used out).
/// Errors are never stored.
struct Cache {
    entries: LruCache<Key, Entry>,
}

impl Cache {
    fn new(capacity: NonZeroUsize) -> Self {
        Self {
            entries: LruCache::new(capacity),
        }
    }

    fn get(&mut self, key: &Key) -> Option<bool> {
        match self.entries.get(key) {
            Some(entry) if entry.until > Instant::now() => Some(entry.granted),
            Some(_) => {
                self.entries.pop(key);
                None
            }
            None => None,
        }
    }

    fn put(&mut self, key: Key, user: Key, granted: bool, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        let until = Instant::now() + ttl;
        self.entries.put(
            key,
            Entry {
                granted,
                until,
                user,
            },
        );
    }

    /// Drops every answer about one username; returns how many.
    fn forget(&mut self, user: &Key) -> usize {
        let keys: Vec<Key> = self
            .entries
            .iter()
            .filter(|(_, e)| &e.user == user)
            .map(|(k, _)| *k)
            .collect();
        for key in &keys {
            self.entries.pop(key);
        }
        keys.len()
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// A question on its way to the backend; later askers of the same question wait for its answer.
#[derive(Default)]
struct Flight {
    answer: Mutex<Option<Result<bool, String>>>,
    done: Condvar,
}

/// A name a client may carry: bounded, no MQTT wildcards, no NUL.
fn clean(name: &str) -> bool {
    name.len() <= MAX_FIELD && !name.contains(['+', '#', '\0'])
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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
        #[derive(serde::Deserialize)]
        struct Wire {
            command: String,
            username: String,
        }
        let wire: Wire = serde_json::from_slice(payload).ok()?;
        if wire.username.is_empty() || !clean(&wire.username) {
            return None;
        }
        match wire.command.as_str() {
            "kick" => Some(Command::Kick(wire.username)),
            "forget" => Some(Command::Forget(wire.username)),
            _ => None,
        }
    }

    pub fn username(&self) -> &str {
        match self {
            Command::Kick(u) | Command::Forget(u) => u,
        }
    }
}

/// The decisions, with the backend behind them.
pub struct Checker {
    options: Options,
    agent: ureq::Agent,
    cache: Mutex<Cache>,
    flights: Mutex<HashMap<Key, Arc<Flight>>>,
}

impl Checker {
    pub fn new(options: Options) -> Self {
        // Every question is asked on mosquitto's only thread: none may hold it past the budget.
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(options.timeout.min(options.budget)))
            .http_status_as_error(false)
            .max_idle_connections_per_host(4)
            .build()
            .into();
        Self {
            cache: Mutex::new(Cache::new(options.cache_size)),
            options,
            agent,
            flights: Mutex::new(HashMap::new()),
        }
    }

    pub fn options(&self) -> &Options {
        &self.options
    }

    /// How many answers are cached now.
    pub fn cached_answers(&self) -> usize {
        lock(&self.cache).len()
    }

    /// Drops every cached answer about `username` (a revoked device, a user removed from a
    /// device); returns how many were dropped.
    pub fn forget(&self, username: &str) -> usize {
        lock(&self.cache).forget(&digest(&[username.as_bytes()]))
    }

    /// Asks the backend one question.
    fn ask(&self, uri: &str, params: &AuthParams) -> Result<bool, String> {
        let url = format!("http://{}:{}{}", self.options.host, self.options.port, uri);
        let (content_type, body) = goauth::encode_params(self.options.params_mode, params);
        let sent = match self.options.method {
            Method::Post => self
                .agent
                .post(&url)
                .header("content-type", content_type)
                .send(&body[..]),
            Method::Put => self
                .agent
                .put(&url)
                .header("content-type", content_type)
                .send(&body[..]),
            Method::Get => self
                .agent
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

    /// Under `local_acl`, whether a device the local rules allow is still allowed by the registry
    /// (not revoked, still there): the backend's answer for its own data topic, trusted for
    /// `status_cache`. The service account is not a device and needs no such answer.
    fn device_still_allowed(&self, username: &str, client_id: &str) -> (Outcome, Option<String>) {
        let (Some(local), Ok(sn)) = (&self.options.local_acl, username.parse::<SerialNumber>())
        else {
            return (Outcome::Allow, None);
        };
        let key = digest(&[b"status", username.as_bytes(), client_id.as_bytes()]);
        let params = AuthParams {
            username: Some(username.into()),
            clientid: Some(client_id.into()),
            topic: Some(local.topics.data.for_device(&sn)),
            acc: Some(2),
            ..Default::default()
        };
        match self.cached(key, username, local.status_cache, || {
            self.ask(&self.options.aclcheck_uri, &params)
        }) {
            (Outcome::Deny, _) => (
                Outcome::Deny,
                Some("the device is no longer allowed (revoked or removed)".into()),
            ),
            other => other,
        }
    }

    /// With `local_acl`, a device's or the service account's topic check, decided here;
    /// `None`: ask the backend (users, or local rules off).
    fn decide_locally(&self, username: &str, topic: &str, access: i32) -> Option<Decision> {
        let local = self.options.local_acl.as_ref()?;
        let access = Access::from_acc(i64::from(access))?;
        let device = username.parse::<SerialNumber>().ok();
        let subject = match &device {
            Some(sn) => Subject::Device(sn),
            None if username == local.service_account => Subject::Service,
            None => return None,
        };
        Some(rules::authorize(&local.topics, &subject, topic, access))
    }

    /// A cached question about `username`: the cache answers first; identical questions in
    /// flight are asked once; the backend's errors are never cached.
    fn cached(
        &self,
        key: Key,
        username: &str,
        ttl: Duration,
        ask: impl FnOnce() -> Result<bool, String>,
    ) -> (Outcome, Option<String>) {
        if let Some(granted) = lock(&self.cache).get(&key) {
            return (outcome(granted), None);
        }
        let (flight, leader) = {
            let mut flights = lock(&self.flights);
            match flights.get(&key) {
                Some(f) => (f.clone(), false),
                None => {
                    let f = Arc::new(Flight::default());
                    flights.insert(key, f.clone());
                    (f, true)
                }
            }
        };
        let answer = if leader {
            let answer = ask();
            if let Ok(granted) = answer {
                lock(&self.cache).put(key, digest(&[username.as_bytes()]), granted, ttl);
            }
            *lock(&flight.answer) = Some(answer.clone());
            lock(&self.flights).remove(&key);
            flight.done.notify_all();
            answer
        } else {
            let mut slot = lock(&flight.answer);
            while slot.is_none() {
                slot = flight.done.wait(slot).unwrap_or_else(|e| e.into_inner());
            }
            slot.clone().expect("answered")
        };
        match answer {
            Ok(granted) => (outcome(granted), None),
            Err(e) => (Outcome::Error, Some(e)),
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
        self.cached(key, username, self.options.auth_cache, || {
            self.ask(&self.options.getuser_uri, &params)
        })
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
        if let Some(uri) = &self.options.superuser_uri {
            let params = AuthParams {
                username: Some(username.into()),
                ..Default::default()
            };
            let key = digest(&[b"s", username.as_bytes()]);
            match self.cached(key, username, self.options.acl_cache, || {
                self.ask(uri, &params)
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
        self.cached(key, username, self.options.acl_cache, || {
            self.ask(&self.options.aclcheck_uri, &params)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_like_go_auth() {
        let o = Options::parse([
            ("http_host", "127.0.0.1"),
            ("http_port", "8081"),
            ("http_response_mode", "json"),
            ("http_params_mode", "form"),
            ("http_superuser_uri", "/mqtt/auth/superuser"),
            ("auth_cache_seconds", "60"),
            ("something_else", "x"),
        ])
        .unwrap();
        assert_eq!(
            (o.port, o.response_mode, o.params_mode),
            (8081, ResponseMode::Json, ParamsMode::Form)
        );
        assert_eq!(o.auth_cache, Duration::from_secs(60));
        assert_eq!(o.superuser_uri.as_deref(), Some("/mqtt/auth/superuser"));
        for bad in [
            vec![("http_port", "8081")],
            vec![("http_host", "h")],
            vec![("http_host", "h"), ("http_port", "x")],
            vec![
                ("http_host", "h"),
                ("http_port", "1"),
                ("http_response_mode", "xml"),
            ],
            vec![
                ("http_host", "h"),
                ("http_port", "1"),
                ("http_params_mode", "form"),
                ("http_method", "GET"),
            ],
            vec![
                ("http_host", "h"),
                ("http_port", "1"),
                ("http_getuser_uri", "user"),
            ],
            vec![
                ("http_host", "h"),
                ("http_port", "1"),
                ("http_with_tls", "true"),
            ],
            vec![
                ("http_host", "h"),
                ("http_port", "1"),
                ("http_timeout", "0"),
            ],
        ] {
            assert!(Options::parse(bad.clone()).is_err(), "{bad:?}");
        }
    }

    fn checker_without_backend() -> Checker {
        // Port 9 (discard) on loopback: nothing listens, every question is an error.
        Checker::new(
            Options::parse([
                ("http_host", "127.0.0.1"),
                ("http_port", "9"),
                ("http_timeout", "1"),
            ])
            .unwrap(),
        )
    }

    #[test]
    fn bad_clients_are_denied_without_asking() {
        // Any question that reached the (absent) backend would be an error, not a denial.
        let c = checker_without_backend();
        let long = "x".repeat(MAX_FIELD + 1);
        for (u, p, id) in [
            (None, Some("p"), Some("c")),
            (Some("u"), None, Some("u")),
            (Some(""), Some("p"), None),
            (Some("u"), Some(""), Some("u")),
            (Some("u+"), Some("p"), Some("u+")),
            (Some("u"), Some("p"), Some("u-#")),
            (Some("u"), Some(long.as_str()), Some("u")),
            (Some(long.as_str()), Some("p"), Some(long.as_str())),
            // client ids that are not the username's own
            (Some("u"), Some("p"), None),
            (Some("u"), Some("p"), Some("")),
            (Some("u"), Some("p"), Some("c")),
            (Some("u"), Some("p"), Some("PV-26A18-BC02R-X7KQA")),
            (Some("u"), Some("p"), Some("u-a/b")),
            (
                Some("u"),
                Some("p"),
                Some(&*format!("u-{}", "x".repeat(41))),
            ),
        ] {
            assert_eq!(c.login(u, p, id).0, Outcome::Deny, "{u:?} {p:?} {id:?}");
        }
        assert_eq!(c.acl(None, Some("c"), "t", 2).0, Outcome::Deny);
        assert_eq!(c.acl(Some("u"), Some("u"), &long, 2).0, Outcome::Deny);
        assert_eq!(
            c.acl(Some("u"), None, "t", 8).0,
            Outcome::Allow,
            "unsubscribe is never refused"
        );
        assert_eq!(c.cached_answers(), 0);
    }

    #[test]
    fn a_backend_that_is_down_is_an_error_and_is_not_cached() {
        let c = checker_without_backend();
        assert_eq!(c.login(Some("u"), Some("p"), Some("u")).0, Outcome::Error);
        assert_eq!(c.acl(Some("u"), Some("u"), "t", 2).0, Outcome::Error);
        assert_eq!(c.cached_answers(), 0);
    }

    #[test]
    fn local_rules_decide_topics_and_the_registry_still_decides_a_device_every_few_seconds() {
        use std::sync::atomic::Ordering::SeqCst;
        let backend = FakeBackend::start(200, Duration::ZERO);
        let c = backend.checker(&[("local_acl", "true"), ("service_account", "svc")]);
        let a = "PV-26A18-BC02R-X7KQA";
        let b = "PV-26L31-BP01R-ZZ234";
        let own = format!("vesper/{a}/data");
        assert_eq!(c.acl(Some(a), Some(a), &own, 2).0, Outcome::Allow);
        assert_eq!(
            c.acl(Some(a), Some(a), &format!("vesper/{b}/data"), 2).0,
            Outcome::Deny
        );
        assert_eq!(
            c.acl(Some(a), Some(a), &format!("vesper/{a}/control"), 4).0,
            Outcome::Allow
        );
        assert_eq!(c.acl(Some(a), Some(a), "vesper/+/data", 4).0, Outcome::Deny);
        // The topics were decided here; the device's standing was asked once, then cached.
        assert_eq!(backend.asked.load(SeqCst), 1);
        assert_eq!(c.acl(Some("svc"), Some("svc"), &own, 1).0, Outcome::Allow);
        assert_eq!(
            c.acl(Some("svc"), Some("svc"), "$CONTROL/vesper/v1", 2).0,
            Outcome::Allow
        );
        assert_eq!(
            c.acl(Some("svc"), Some("svc"), &format!("vesper/{a}/control"), 2)
                .0,
            Outcome::Deny
        );
        assert_eq!(
            backend.asked.load(SeqCst),
            1,
            "the service account is not a device"
        );
        // Users depend on the registry: asked.
        assert_eq!(
            c.acl(Some("uid-1"), Some("uid-1"), &own, 4).0,
            Outcome::Allow
        );
        assert_eq!(backend.asked.load(SeqCst), 2);
        // A kick or forget drops the device's standing: asked again at its next message.
        c.forget(a);
        assert_eq!(c.acl(Some(a), Some(a), &own, 2).0, Outcome::Allow);
        assert_eq!(backend.asked.load(SeqCst), 3);

        // The registry says no (revoked): the device's own topics are refused, whatever the
        // local rules allow (issue 25, finding 1: the kick may never have arrived).
        let revoked = FakeBackend::start(403, Duration::ZERO);
        let c = revoked.checker(&[("local_acl", "true"), ("service_account", "svc")]);
        let (outcome, why) = c.acl(Some(a), Some(a), &own, 2);
        assert_eq!(outcome, Outcome::Deny);
        assert!(why.unwrap().contains("no longer allowed"));
        assert_eq!(c.acl(Some("svc"), Some("svc"), &own, 1).0, Outcome::Allow);
        // The answer is trusted a few seconds at most.
        for (seconds, ok) in [("5", true), ("6", false)] {
            let parsed = Options::parse([
                ("http_host", "h"),
                ("http_port", "1"),
                ("local_acl", "true"),
                ("status_cache_seconds", seconds),
            ]);
            assert_eq!(parsed.is_ok(), ok, "{seconds}");
        }
        // Templates are options, checked like the backend's.
        let seed = Options::parse([
            ("http_host", "h"),
            ("http_port", "1"),
            ("local_acl", "true"),
            ("topic_data", "/vesper/{sn}/data"),
        ])
        .unwrap();
        assert_eq!(
            seed.local_acl.unwrap().topics.data.to_string(),
            "/vesper/{sn}/data"
        );
        for bad in [("topic_data", "vesper/data"), ("local_acl", "yes")] {
            assert!(
                Options::parse([
                    ("http_host", "h"),
                    ("http_port", "1"),
                    ("local_acl", "true"),
                    bad
                ])
                .is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn cache_expires() {
        let mut cache = Cache::new(NonZeroUsize::new(10).unwrap());
        let (k, zero, user) = (digest(&[b"k"]), digest(&[b"zero"]), digest(&[b"u"]));
        cache.put(k, user, true, Duration::from_millis(30));
        cache.put(zero, user, true, Duration::ZERO);
        assert_eq!(cache.get(&k), Some(true));
        assert_eq!(cache.get(&zero), None);
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(cache.get(&k), None);
    }

    #[test]
    fn digests_keep_fields_apart() {
        assert_ne!(digest(&[b"ab", b"c"]), digest(&[b"a", b"bc"]));
        assert_ne!(digest(&[b"a", b""]), digest(&[b"a"]));
    }

    #[test]
    fn control_commands() {
        assert_eq!(
            Command::parse(br#"{"command":"kick","username":"PV-26A18-BC02R-X7KQA"}"#),
            Some(Command::Kick("PV-26A18-BC02R-X7KQA".into()))
        );
        assert_eq!(
            Command::parse(br#"{"command":"forget","username":"uid-1"}"#),
            Some(Command::Forget("uid-1".into()))
        );
        for bad in [
            &br#"{"command":"reboot","username":"u"}"#[..],
            br#"{"command":"kick","username":""}"#,
            br#"{"command":"kick","username":"a+b"}"#,
            br#"{"command":"kick"}"#,
            b"kick u",
            b"",
        ] {
            assert_eq!(Command::parse(bad), None, "{bad:?}");
        }
        let huge = format!(
            r#"{{"command":"kick","username":"{}"}}"#,
            "u".repeat(4 * MAX_FIELD)
        );
        assert_eq!(Command::parse(huge.as_bytes()), None);
    }

    /// A tiny HTTP/1.1 backend on loopback (keep-alive) that answers every question with
    /// `status` after `delay`, and counts the questions.
    struct FakeBackend {
        port: u16,
        asked: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl FakeBackend {
        fn start(status: u16, delay: Duration) -> FakeBackend {
            use std::io::{BufRead, BufReader, Read, Write};
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let counter = asked.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { return };
                    let counter = counter.clone();
                    std::thread::spawn(move || {
                        let mut writer = stream.try_clone().unwrap();
                        let mut reader = BufReader::new(stream);
                        loop {
                            let mut length = 0usize;
                            let mut line = String::new();
                            loop {
                                line.clear();
                                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                                    return;
                                }
                                let lower = line.to_ascii_lowercase();
                                if let Some(v) = lower.strip_prefix("content-length:") {
                                    length = v.trim().parse().unwrap_or(0);
                                }
                                if line == "\r\n" {
                                    break;
                                }
                            }
                            let mut body = vec![0; length];
                            if reader.read_exact(&mut body).is_err() {
                                return;
                            }
                            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            std::thread::sleep(delay);
                            let answer =
                                format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n");
                            if writer.write_all(answer.as_bytes()).is_err() {
                                return;
                            }
                        }
                    });
                }
            });
            FakeBackend { port, asked }
        }

        fn checker(&self, extra: &[(&str, &str)]) -> Checker {
            let port = self.port.to_string();
            let mut options = vec![("http_host", "127.0.0.1"), ("http_port", port.as_str())];
            options.extend_from_slice(extra);
            Checker::new(Options::parse(options).unwrap())
        }

        fn asked(&self) -> usize {
            self.asked.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    #[test]
    fn a_flood_of_distinct_bad_logins_leaves_the_cache_at_its_budget() {
        let backend = FakeBackend::start(403, Duration::ZERO);
        let c = Arc::new(backend.checker(&[("cache_size", "1000")]));
        assert_eq!(c.options().cache_size.get(), 1000);
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for i in 0..1000 {
                        let user = format!("user-{t}-{i}");
                        assert_eq!(
                            c.login(Some(&user), Some("wrong"), Some(&user)).0,
                            Outcome::Deny
                        );
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(backend.asked(), 4000);
        assert_eq!(c.cached_answers(), 1000, "the cache stays at its budget");
        // The newest answers are the ones kept.
        assert_eq!(
            c.login(Some("user-0-999"), Some("wrong"), Some("user-0-999"))
                .0,
            Outcome::Deny
        );
        assert!(backend.asked() <= 4001);
    }

    #[test]
    fn the_default_budget_holds_under_200000_distinct_bad_logins() {
        let backend = FakeBackend::start(403, Duration::ZERO);
        let c = Arc::new(backend.checker(&[]));
        assert_eq!(c.options().cache_size.get(), DEFAULT_CACHE_SIZE);
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for i in 0..50_000 {
                        let user = format!("flood-{t}-{i}");
                        c.login(Some(&user), Some("wrong"), Some(&user));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(backend.asked(), 200_000);
        assert_eq!(c.cached_answers(), DEFAULT_CACHE_SIZE);
    }

    /// Issue 25, finding 11: a slow backend holds mosquitto's thread at most the budget
    /// (default 2 s, even with a longer `http_timeout`), then the login is an error (not cached:
    /// asked again at the client's retry).
    #[test]
    fn a_slow_backend_holds_the_broker_at_most_the_budget_per_question() {
        let backend = FakeBackend::start(200, Duration::from_secs(4));
        let c = backend.checker(&[("http_timeout", "10")]);
        assert_eq!(c.options().budget, Duration::from_secs(2));
        let started = std::time::Instant::now();
        assert_eq!(
            c.login(Some("dev"), Some("pw"), Some("dev")).0,
            Outcome::Error
        );
        let held = started.elapsed();
        assert!(
            held >= Duration::from_millis(1900) && held < Duration::from_millis(2900),
            "{held:?}"
        );
        assert_eq!(c.cached_answers(), 0);
        let c = backend.checker(&[("http_timeout", "10"), ("budget_seconds", "1")]);
        let started = std::time::Instant::now();
        assert_eq!(
            c.login(Some("dev"), Some("pw"), Some("dev")).0,
            Outcome::Error
        );
        assert!(
            started.elapsed() < Duration::from_millis(1900),
            "{:?}",
            started.elapsed()
        );
        assert!(
            Options::parse([
                ("http_host", "h"),
                ("http_port", "1"),
                ("budget_seconds", "0")
            ])
            .is_err()
        );
    }

    #[test]
    fn a_stampede_of_identical_questions_is_asked_once() {
        let backend = FakeBackend::start(200, Duration::from_millis(300));
        let c = Arc::new(backend.checker(&[]));
        let barrier = Arc::new(std::sync::Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (c, barrier) = (c.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    c.login(Some("dev"), Some("secret"), Some("dev")).0
                })
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap(), Outcome::Allow);
        }
        assert_eq!(backend.asked(), 1, "one question reached the backend");
    }

    #[test]
    fn forgetting_a_username_drops_only_its_answers() {
        let backend = FakeBackend::start(200, Duration::ZERO);
        let c = backend.checker(&[]);
        for user in ["a", "b"] {
            assert_eq!(c.login(Some(user), Some("p"), Some(user)).0, Outcome::Allow);
            assert_eq!(c.acl(Some(user), Some(user), "t/1", 2).0, Outcome::Allow);
        }
        assert_eq!((c.cached_answers(), backend.asked()), (4, 4));
        assert_eq!(c.forget("a"), 2);
        assert_eq!(c.cached_answers(), 2);
        c.login(Some("a"), Some("p"), Some("a"));
        c.login(Some("b"), Some("p"), Some("b"));
        assert_eq!(backend.asked(), 5, "a is asked again, b still cached");
    }
}
