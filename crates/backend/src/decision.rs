//! The one MQTT decision (DESIGN.md section 3): may this login connect with this client id, may
//! this login use this topic. Every broker dialect (go-auth, RabbitMQ, EMQX, VerneMQ) parses its
//! own request into these questions and renders the [`Verdict`] its own way; none has an ACL of
//! its own. Deny by default; [`Verdict::Error`] only when the registry cannot be read.

use std::cell::RefCell;

use vesper_core::acl::{self, Access, Decision, Subject};
use vesper_core::clientid;
use vesper_core::goauth::Verdict;
use vesper_core::serial::SerialNumber;
use vesper_store::{RegistryError, Status, Store, UserAccess};

use super::SharedState;

/// Longest username, client id or password considered.
pub const MAX_FIELD: usize = 4096;

/// A broker asks whether a client may connect.
#[derive(Debug, Clone, Copy)]
pub struct LoginQuestion<'a> {
    pub username: Option<&'a str>,
    pub password: Option<&'a str>,
    pub client_id: Option<&'a str>,
}

/// A broker asks whether a connected client may use a topic. The client id, when the broker
/// sends one, must be one the login may use (the binding of DESIGN.md section 3 holds on every
/// question that carries it, not only at login).
#[derive(Debug, Clone, Copy)]
pub struct TopicQuestion<'a> {
    pub username: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub topic: Option<&'a str>,
    pub access: Access,
}

pub(crate) fn deny(reason: &str) -> Verdict {
    Verdict::Deny(reason.to_owned())
}

/// A name a client may use: non-empty, bounded, no NUL, no MQTT wildcards.
fn clean_name(value: Option<&str>) -> Option<&str> {
    value.filter(|v| !v.is_empty() && v.len() <= MAX_FIELD && !v.contains(['\0', '+', '#']))
}

fn registry_error(e: RegistryError) -> Verdict {
    tracing::error!(error = %e, "registry unreadable during an MQTT auth check");
    Verdict::Error("registry unavailable".into())
}

/// Who `username` is, as the client-id rules see it.
fn who<'a>(
    username: &'a str,
    device: Option<&'a SerialNumber>,
    service: &'a str,
) -> clientid::Login<'a> {
    match (device, username == service) {
        (_, true) => clientid::Login::Service(service),
        (Some(sn), false) => clientid::Login::Device(sn),
        (None, false) => clientid::Login::User(username),
    }
}

/// Why `username` (a device when `device` is its parsed serial number) may not use
/// `client_id`, or `None` when it may: the binding of DESIGN.md section 3, for every dialect.
pub fn client_id_refusal(
    username: &str,
    device: Option<&SerialNumber>,
    client_id: &str,
    service: &str,
) -> Option<Verdict> {
    clientid::check(who(username, device, service), client_id, service)
        .err()
        .map(|e| Verdict::Deny(format!("client id refused: {e}")))
}

/// May this client log in?
pub async fn login(state: &SharedState, q: LoginQuestion<'_>) -> Verdict {
    let Some(username) = clean_name(q.username) else {
        return deny("bad username");
    };
    let Some(password) = q
        .password
        .filter(|pw| !pw.is_empty() && pw.len() <= MAX_FIELD)
    else {
        return deny("empty password");
    };
    let service = state.config.serve.service_account.as_str();
    let device = username.parse::<SerialNumber>().ok();
    let client_id = q.client_id.unwrap_or_default();
    if let Some(refused) = client_id_refusal(username, device.as_ref(), client_id, service) {
        return refused;
    }
    if username == service {
        let expected = state.secret.service_password(username);
        return if expected.matches(password) {
            Verdict::Allow
        } else {
            deny("bad credentials")
        };
    }
    if let Some(sn) = device {
        return match state.store.device_status(sn.as_str()).await {
            Err(e) => registry_error(e),
            Ok(None) => deny("unknown device"),
            Ok(Some(Status::Revoked)) => deny("device revoked"),
            Ok(Some(_)) if state.secret.device_password(&sn).matches(password) => Verdict::Allow,
            Ok(Some(_)) => deny("bad credentials"),
        };
    }
    match &state.users {
        None => deny("user logins are not configured"),
        Some(users) => match users.verify(username, password).await {
            Ok(()) => Verdict::Allow,
            Err(e) => Verdict::Deny(format!("user token: {e}")),
        },
    }
}

/// Is this login a superuser? Only the names `serve.superusers` lists: a superuser skips every
/// ACL, so nobody is one unless the operator says so.
pub fn superuser(state: &SharedState, username: Option<&str>) -> Verdict {
    let named = username.is_some_and(|u| state.config.serve.superusers.iter().any(|s| s == u));
    if named {
        Verdict::Allow
    } else {
        deny("not a superuser")
    }
}

/// May this login use this topic (publish, subscribe, or receive)?
pub async fn topic(state: &SharedState, q: TopicQuestion<'_>) -> Verdict {
    let Some(username) = clean_name(q.username) else {
        return deny("bad username");
    };
    let Some(topic) = q
        .topic
        .filter(|t| !t.is_empty() && t.len() <= acl::MAX_TOPIC_LEN)
    else {
        return deny("bad topic");
    };
    let service = state.config.serve.service_account.as_str();
    let device = username.parse::<SerialNumber>().ok();
    if let Some(refused) = q
        .client_id
        .and_then(|id| client_id_refusal(username, device.as_ref(), id, service))
    {
        return refused;
    }
    let topics = &state.config.mqtt.topics;
    decide_acl(
        state.store.as_ref(),
        topics,
        service,
        username,
        device.as_ref(),
        topic,
        q.access,
    )
    .await
}

/// The ACL decision with registry lookups.
async fn decide_acl(
    store: &dyn Store,
    topics: &acl::Topics,
    service: &str,
    username: &str,
    device: Option<&SerialNumber>,
    topic: &str,
    access: Access,
) -> Verdict {
    let decision = if username == service {
        acl::authorize(topics, &Subject::Service, topic, access)
    } else if let Some(sn) = device {
        match store.device_status(sn.as_str()).await {
            Err(e) => return registry_error(e),
            Ok(None) => return deny("unknown device"),
            Ok(Some(Status::Revoked)) => return deny("device revoked"),
            Ok(Some(_)) => acl::authorize(topics, &Subject::Device(sn), topic, access),
        }
    } else {
        // The ACL asks about the devices the topic names; ask the registry about those
        // first, then decide with the answers.
        let asked = {
            let asked: RefCell<Vec<SerialNumber>> = RefCell::new(Vec::new());
            let record = |sn: &SerialNumber| {
                asked.borrow_mut().push(sn.clone());
                true
            };
            if acl::authorize(topics, &Subject::User { may_use: &record }, topic, access)
                == Decision::Deny
            {
                return deny("not allowed");
            }
            asked.take()
        };
        let mut allowed = Vec::new();
        for sn in asked {
            match store.user_access(username, sn.as_str()).await {
                Ok(UserAccess::Allowed) => allowed.push(sn),
                Ok(_) => {}
                Err(e) => return registry_error(e),
            }
        }
        let may_use = |sn: &SerialNumber| allowed.contains(sn);
        acl::authorize(topics, &Subject::User { may_use: &may_use }, topic, access)
    };
    match decision {
        Decision::Allow => Verdict::Allow,
        Decision::Deny => deny("not allowed"),
    }
}

/// One line per verdict: allows at debug, denials at info, errors at warn (never a secret).
pub fn log_verdict(dialect: &str, check: &str, verdict: &Verdict) {
    match verdict {
        Verdict::Allow => tracing::debug!(dialect, check, "allow"),
        Verdict::Deny(reason) => tracing::info!(dialect, check, reason = %reason, "deny"),
        Verdict::Error(reason) => tracing::warn!(dialect, check, reason = %reason, "error"),
    }
}
