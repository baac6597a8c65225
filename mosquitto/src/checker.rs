//! The plugin's logic without FFI: options, the backend client, the cache, and the decisions.
//! Everything here is safe Rust and unit-tested; `lib.rs` only converts between C and this.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use vesper::goauth::{self, AuthParams, ParamsMode, ResponseMode};

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
    pub auth_cache: Duration,
    pub acl_cache: Duration,
}

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
            auth_cache: Duration::from_secs(30),
            acl_cache: Duration::from_secs(30),
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
                "auth_cache_seconds" => o.auth_cache = seconds(key, value)?,
                "acl_cache_seconds" => o.acl_cache = seconds(key, value)?,
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
        if o.timeout.is_zero() {
            return Err("http_timeout must be at least 1 second".into());
        }
        Ok(o)
    }
}

/// Grants and denials with their expiry. Errors are never stored.
#[derive(Default)]
struct Cache {
    entries: HashMap<String, (bool, Instant)>,
}

impl Cache {
    fn get(&mut self, key: &str) -> Option<bool> {
        match self.entries.get(key) {
            Some((granted, until)) if *until > Instant::now() => Some(*granted),
            Some(_) => {
                self.entries.remove(key);
                None
            }
            None => None,
        }
    }

    fn put(&mut self, key: String, granted: bool, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        if self.entries.len() > 100_000 {
            let now = Instant::now();
            self.entries.retain(|_, (_, until)| *until > now);
        }
        self.entries.insert(key, (granted, Instant::now() + ttl));
    }
}

/// A name a client may carry: no MQTT wildcards, no NUL.
fn clean(name: &str) -> bool {
    !name.contains(['+', '#', '\0'])
}

/// The decisions, with the backend behind them.
pub struct Checker {
    options: Options,
    agent: ureq::Agent,
    cache: Mutex<Cache>,
}

impl Checker {
    pub fn new(options: Options) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(options.timeout))
            .http_status_as_error(false)
            .max_idle_connections_per_host(4)
            .build()
            .into();
        Self {
            options,
            agent,
            cache: Mutex::new(Cache::default()),
        }
    }

    pub fn options(&self) -> &Options {
        &self.options
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

    /// A cached question: the cache answers first; the backend's errors are never cached.
    fn cached(
        &self,
        key: String,
        ttl: Duration,
        ask: impl FnOnce() -> Result<bool, String>,
    ) -> (Outcome, Option<String>) {
        if let Some(granted) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return (
                if granted {
                    Outcome::Allow
                } else {
                    Outcome::Deny
                },
                None,
            );
        }
        match ask() {
            Ok(granted) => {
                self.cache
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .put(key, granted, ttl);
                (
                    if granted {
                        Outcome::Allow
                    } else {
                        Outcome::Deny
                    },
                    None,
                )
            }
            Err(e) => (Outcome::Error, Some(e)),
        }
    }

    /// A login. Anonymous clients, empty passwords and names with wildcards are denied without
    /// asking. Returns the outcome and, for errors, what went wrong (for the broker's log).
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
        if username.is_empty() || password.is_empty() || !clean(username) || !clean(client_id) {
            return (
                Outcome::Deny,
                Some("empty credentials or wildcards in the username or client id".into()),
            );
        }
        let key = format!("u\0{username}\0{password}\0{client_id}");
        let params = AuthParams {
            username: Some(username.into()),
            password: Some(password.into()),
            clientid: Some(client_id.into()),
            ..Default::default()
        };
        self.cached(key, self.options.auth_cache, || {
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
        if let Some(uri) = &self.options.superuser_uri {
            let params = AuthParams {
                username: Some(username.into()),
                ..Default::default()
            };
            match self.cached(format!("s\0{username}"), self.options.acl_cache, || {
                self.ask(uri, &params)
            }) {
                (Outcome::Allow, _) => return (Outcome::Allow, None),
                (Outcome::Error, e) => return (Outcome::Error, e),
                (Outcome::Deny, _) => {}
            }
        }
        let key = format!("a\0{username}\0{client_id}\0{topic}\0{access}");
        let params = AuthParams {
            username: Some(username.into()),
            clientid: Some(client_id.into()),
            topic: Some(topic.into()),
            acc: Some(i64::from(access)),
            ..Default::default()
        };
        self.cached(key, self.options.acl_cache, || {
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
        let c = checker_without_backend();
        for (u, p, id) in [
            (None, Some("p"), Some("c")),
            (Some("u"), None, Some("c")),
            (Some(""), Some("p"), None),
            (Some("u"), Some(""), None),
            (Some("u+"), Some("p"), None),
            (Some("u"), Some("p"), Some("c#")),
        ] {
            assert_eq!(c.login(u, p, id).0, Outcome::Deny, "{u:?} {p:?} {id:?}");
        }
        assert_eq!(c.acl(None, Some("c"), "t", 2).0, Outcome::Deny);
        assert_eq!(
            c.acl(Some("u"), None, "t", 8).0,
            Outcome::Allow,
            "unsubscribe is never refused"
        );
    }

    #[test]
    fn a_backend_that_is_down_is_an_error_and_is_not_cached() {
        let c = checker_without_backend();
        assert_eq!(c.login(Some("u"), Some("p"), Some("c")).0, Outcome::Error);
        assert_eq!(c.acl(Some("u"), Some("c"), "t", 2).0, Outcome::Error);
        assert!(c.cache.lock().unwrap().entries.is_empty());
    }

    #[test]
    fn cache_expires() {
        let mut cache = Cache::default();
        cache.put("k".into(), true, Duration::from_millis(30));
        cache.put("zero".into(), true, Duration::ZERO);
        assert_eq!(cache.get("k"), Some(true));
        assert_eq!(cache.get("zero"), None);
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(cache.get("k"), None);
    }
}
