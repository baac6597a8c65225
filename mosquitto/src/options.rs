//! The plugin's options, read from `plugin_opt_*` lines of mosquitto.conf, named as go-auth
//! names them, with the plugin's own additions (local rules, login workers, the control feed).

use std::num::NonZeroUsize;
use std::time::Duration;

use vesper_core::acl::{TopicTemplate, Topics};
use vesper_core::goauth::{ParamsMode, ResponseMode};

/// Default number of cached answers (`plugin_opt_cache_size`).
pub const DEFAULT_CACHE_SIZE: usize = 100_000;

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
    /// default 2): the HTTP timeout of a question asked there (a topic check) is the smaller of
    /// this and `http_timeout`. Logins and the control feed are asked off that thread, with the
    /// whole `http_timeout`.
    pub budget: Duration,
    pub auth_cache: Duration,
    pub acl_cache: Duration,
    /// Most answers kept (grants and denials together).
    pub cache_size: NonZeroUsize,
    /// Logins are asked by `workers` background threads (`plugin_opt_login_workers`, default 4)
    /// from a queue of at most `queue` questions (`plugin_opt_login_queue`, default 1000);
    /// mosquitto's thread waits for an answer at most `wait` (`plugin_opt_login_wait_ms`,
    /// default 50), and not at all while an older question is still unanswered: see
    /// [`crate::logins`].
    pub logins: LoginOptions,
    /// Where the backend's durable kick/forget feed is read (`plugin_opt_http_control_uri`,
    /// default `/mqtt/control`; empty turns it off) and how often (`plugin_opt_control_poll_ms`,
    /// default 500): see [`crate::feed`].
    pub control: Option<ControlOptions>,
    /// Decide devices' and the service account's topic checks here, with the backend's own
    /// rules (`vesper_core::acl`), instead of asking (`plugin_opt_local_acl true`); see [`LocalAcl`].
    pub local_acl: Option<LocalAcl>,
}

/// How logins are asked off mosquitto's thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginOptions {
    pub workers: usize,
    pub queue: usize,
    pub wait: Duration,
}

/// The backend's control feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlOptions {
    pub uri: String,
    pub poll: Duration,
    /// How long one answer of the feed vouches for every device it did not kick
    /// (`plugin_opt_control_trust_seconds`, default and most [`MAX_STATUS_CACHE`]): kicks are
    /// never lost on the feed, only late, so a backend that takes 2 s to answer still keeps it
    /// fresh.
    pub trust: Duration,
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
            logins: LoginOptions {
                workers: 4,
                queue: 1000,
                wait: Duration::from_millis(50),
            },
            control: None,
        };
        let mut local = false;
        let mut topics = Topics::default();
        let mut status_cache = Duration::from_secs(3);
        let mut control_uri = "/mqtt/control".to_owned();
        let mut control_poll = Duration::from_millis(500);
        let mut control_trust = MAX_STATUS_CACHE;
        let count = |key: &str, v: &str, range: std::ops::RangeInclusive<usize>| {
            v.trim()
                .parse::<usize>()
                .ok()
                .filter(|n| range.contains(n))
                .ok_or_else(|| {
                    format!(
                        "{key}: `{v}` is not a number from {} to {}",
                        range.start(),
                        range.end()
                    )
                })
        };
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
                "login_workers" => o.logins.workers = count(key, value, 1..=64)?,
                "login_queue" => o.logins.queue = count(key, value, 1..=100_000)?,
                "login_wait_ms" => o.logins.wait = Duration::from_millis(count(key, value, 0..=60_000)? as u64),
                "http_control_uri" => control_uri = value.trim().to_owned(),
                "control_trust_seconds" => control_trust = seconds(key, value)?,
                "control_poll_ms" => control_poll = Duration::from_millis(count(key, value, 50..=60_000)? as u64),
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
        if o.logins.wait > o.budget {
            return Err("login_wait_ms must not exceed budget_seconds".into());
        }
        if control_trust > MAX_STATUS_CACHE || control_trust.is_zero() {
            return Err(format!(
                "control_trust_seconds: from 1 to {} (a revoked device keeps its access that long)",
                MAX_STATUS_CACHE.as_secs()
            ));
        }
        o.control = if control_uri.is_empty() {
            None
        } else if !control_uri.starts_with('/') {
            return Err(format!("`{control_uri}`: URIs must start with /"));
        } else {
            Some(ControlOptions {
                uri: control_uri,
                poll: control_poll,
                trust: control_trust,
            })
        };
        Ok(o)
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
}
