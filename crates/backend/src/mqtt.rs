//! The broker's questions, in mosquitto-go-auth's HTTP protocol: may this client log in, is it a
//! superuser, may it read/write/subscribe this topic. Deny by default (403); 500 only when the
//! registry cannot be read. Passwords and tokens are never logged.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde::Deserialize;

use super::SharedState;
use vesper_core::acl::{self, Access, Decision, Subject};
use vesper_core::clientid;
use vesper_core::goauth::{self, AuthParams, ResponseMode, Verdict};
use vesper_core::serial::SerialNumber;
use vesper_store::{RegistryError, Status, Store, UserAccess};

/// Longest username, client id or password considered.
const MAX_FIELD: usize = 4096;

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/mqtt/auth/user", any(user))
        .route("/mqtt/auth/superuser", any(superuser))
        .route("/mqtt/auth/acl", any(acl_check))
        .route("/mqtt/control", get(super::control::feed))
        .route("/healthz", get(super::api::healthz))
        .route("/metrics", get(metrics))
}

/// The auth listener's routes in the OpenAPI document (served on the auth listener only).
#[derive(utoipa::OpenApi)]
#[openapi(paths(user, superuser, acl_check, metrics, super::control::feed))]
struct AuthDoc;

/// The OpenAPI description of the auth listener's routes.
pub fn document() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi as _;
    AuthDoc::openapi()
}

/// A go-auth route's answers, for the OpenAPI document.
struct GoAuthAnswers;

impl utoipa::IntoResponses for GoAuthAnswers {
    fn responses()
    -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::Response>> {
        use utoipa::openapi::{Content, Ref, RefOr, ResponseBuilder};
        [
            ("200", "Allow"),
            ("403", "Deny"),
            ("500", "Cannot decide: the broker drops the client"),
        ]
        .into_iter()
        .map(|(status, description)| {
            let content = Content::new(Some(Ref::from_schema_name("GoAuthAnswer")));
            let response = ResponseBuilder::new()
                .description(description)
                .content("application/json", content)
                .build();
            (status.to_owned(), RefOr::T(response))
        })
        .collect()
    }
}

/// `?response_mode=json|text|status` overrides the configured mode, so one backend can serve
/// brokers configured differently.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ModeQuery {
    /// Overrides the configured go-auth response mode: `status`, `json` or `text`.
    response_mode: Option<String>,
}

/// The override as it arrived; a malformed query string only loses the override.
type ModeOverride = Result<Query<ModeQuery>, axum::extract::rejection::QueryRejection>;

fn mode(state: &SharedState, query: &ModeOverride) -> ResponseMode {
    query
        .as_ref()
        .ok()
        .and_then(|q| q.response_mode.as_deref())
        .and_then(|m| m.parse().ok())
        .unwrap_or(state.config.serve.auth_response_mode)
}

fn respond(mode: ResponseMode, verdict: &Verdict) -> Response {
    let a = goauth::answer(mode, verdict);
    let status = StatusCode::from_u16(a.status).unwrap_or(StatusCode::FORBIDDEN);
    (status, [(header::CONTENT_TYPE, a.content_type)], a.body).into_response()
}

fn deny(reason: &str) -> Verdict {
    Verdict::Deny(reason.to_owned())
}

fn params(headers: &HeaderMap, body: &[u8]) -> Result<AuthParams, Verdict> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    goauth::parse_params(content_type, body).map_err(|e| Verdict::Deny(e.to_string()))
}

/// A name a client may use: non-empty, bounded, no NUL, no MQTT wildcards.
fn clean_name(value: Option<&str>) -> Option<&str> {
    value.filter(|v| !v.is_empty() && v.len() <= MAX_FIELD && !v.contains(['\0', '+', '#']))
}

fn registry_error(e: RegistryError) -> Verdict {
    tracing::error!(error = %e, "registry unreadable during an MQTT auth check");
    Verdict::Error("registry unavailable".into())
}

/// Counters in Prometheus' text format.
#[utoipa::path(get, path = "/metrics", tag = "mqtt-auth", security(()),
    responses((status = 200, description = "Counters of the broker's questions", content_type = "text/plain")))]
async fn metrics(State(state): State<SharedState>) -> Response {
    use std::sync::atomic::Ordering::Relaxed;
    let m = &state.metrics;
    let body = format!(
        "# HELP vesper_auth_requests_total Questions the broker asked, by route.\n# TYPE vesper_auth_requests_total counter\n\
         vesper_auth_requests_total{{route=\"user\"}} {}\nvesper_auth_requests_total{{route=\"acl\"}} {}\nvesper_auth_requests_total{{route=\"superuser\"}} {}\n\
         # HELP vesper_device_messages_total Device data and status messages this instance handled.\n# TYPE vesper_device_messages_total counter\n\
         vesper_device_messages_total {}\n\
         # HELP vesper_broker_commands_waiting Kick and forget commands queued for the broker, not yet handed to its connection.\n# TYPE vesper_broker_commands_waiting gauge\n\
         vesper_broker_commands_waiting {}\n\
         # HELP vesper_broker_commands_unsent_total Commands with no broker connection to go to (no [serve.broker]).\n# TYPE vesper_broker_commands_unsent_total counter\n\
         vesper_broker_commands_unsent_total {}\n",
        m.user.load(Relaxed),
        m.acl.load(Relaxed),
        m.superuser.load(Relaxed),
        m.device_messages.load(Relaxed),
        state.broker_control.counts().waiting(),
        state.broker_control.counts().unsent()
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// What every go-auth route does around its decision: count the question, read its parameters
/// (json or form), let `decide` judge them, log the verdict and answer in the broker's mode.
async fn answer<F: Future<Output = Verdict>>(
    state: &SharedState,
    route: &'static str,
    counter: &AtomicU64,
    (query, headers, body): (&ModeOverride, &HeaderMap, &[u8]),
    decide: impl FnOnce(AuthParams) -> F,
) -> Response {
    counter.fetch_add(1, Ordering::Relaxed);
    let verdict = match params(headers, body) {
        Ok(p) => decide(p).await,
        Err(v) => v,
    };
    log_verdict(route, &verdict);
    respond(mode(state, query), &verdict)
}

/// May this client log in? (mosquitto-go-auth HTTP backend protocol; auth listener only; GET and PUT too)
#[utoipa::path(post, path = "/mqtt/auth/user", tag = "mqtt-auth", security(()), params(ModeQuery),
    request_body(content((vesper_core::goauth::AuthParams = "application/json"), (vesper_core::goauth::AuthParams = "application/x-www-form-urlencoded"))),
    responses(GoAuthAnswers))]
async fn user(
    State(state): State<SharedState>,
    query: ModeOverride,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let question = (&query, &headers, &body[..]);
    answer(&state, "user", &state.metrics.user, question, |p| {
        login(&state, p)
    })
    .await
}

async fn login(state: &SharedState, p: AuthParams) -> Verdict {
    let Some(username) = clean_name(p.username.as_deref()).map(str::to_owned) else {
        return deny("bad username");
    };
    let Some(password) = p
        .password
        .filter(|pw| !pw.is_empty() && pw.len() <= MAX_FIELD)
    else {
        return deny("empty password");
    };
    let client_id = p.clientid.unwrap_or_default();
    let service = state.config.serve.service_account.as_str();
    let device = username.parse::<SerialNumber>().ok();
    let who = match (&device, username == service) {
        (_, true) => clientid::Login::Service(service),
        (Some(sn), false) => clientid::Login::Device(sn),
        (None, false) => clientid::Login::User(&username),
    };
    if let Err(e) = clientid::check(who, &client_id, service) {
        return Verdict::Deny(format!("client id refused: {e}"));
    }
    if username == service {
        let expected = state.secret.service_password(&username);
        return if expected.matches(&password) {
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
            Ok(Some(_)) if state.secret.device_password(&sn).matches(&password) => Verdict::Allow,
            Ok(Some(_)) => deny("bad credentials"),
        };
    }
    match &state.users {
        None => deny("user logins are not configured"),
        Some(users) => match users.verify(&username, &password).await {
            Ok(()) => Verdict::Allow,
            Err(e) => Verdict::Deny(format!("user token: {e}")),
        },
    }
}

/// Is this user a superuser? (only `serve.superusers`; auth listener only)
#[utoipa::path(post, path = "/mqtt/auth/superuser", tag = "mqtt-auth", security(()), params(ModeQuery),
    request_body(content((vesper_core::goauth::AuthParams = "application/json"), (vesper_core::goauth::AuthParams = "application/x-www-form-urlencoded"))),
    responses(GoAuthAnswers))]
async fn superuser(
    State(state): State<SharedState>,
    query: ModeOverride,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let superusers = &state.config.serve.superusers;
    let question = (&query, &headers, &body[..]);
    answer(
        &state,
        "superuser",
        &state.metrics.superuser,
        question,
        |p| {
            // Nobody is a superuser unless the operator names them: a superuser skips every ACL.
            let named = p
                .username
                .as_deref()
                .is_some_and(|u| superusers.iter().any(|s| s == u));
            std::future::ready(if named {
                Verdict::Allow
            } else {
                deny("not a superuser")
            })
        },
    )
    .await
}

/// May this user read, write or subscribe to this topic? (auth listener only)
#[utoipa::path(post, path = "/mqtt/auth/acl", tag = "mqtt-auth", security(()), params(ModeQuery),
    request_body(content((vesper_core::goauth::AuthParams = "application/json"), (vesper_core::goauth::AuthParams = "application/x-www-form-urlencoded"))),
    responses(GoAuthAnswers))]
async fn acl_check(
    State(state): State<SharedState>,
    query: ModeOverride,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let question = (&query, &headers, &body[..]);
    answer(&state, "acl", &state.metrics.acl, question, |p| {
        acl_verdict(&state, p)
    })
    .await
}

async fn acl_verdict(state: &SharedState, p: AuthParams) -> Verdict {
    let Some(username) = clean_name(p.username.as_deref()).map(str::to_owned) else {
        return deny("bad username");
    };
    let Some(topic) = p
        .topic
        .filter(|t| !t.is_empty() && t.len() <= acl::MAX_TOPIC_LEN)
    else {
        return deny("bad topic");
    };
    let Some(access) = p.acc.and_then(Access::from_acc) else {
        return deny("acc must be 1, 2 or 4");
    };
    let (service, topics) = (
        &state.config.serve.service_account,
        &state.config.mqtt.topics,
    );
    decide_acl(
        state.store.as_ref(),
        topics,
        service,
        &username,
        &topic,
        access,
    )
    .await
}

/// The ACL decision with registry lookups.
async fn decide_acl(
    store: &dyn Store,
    topics: &acl::Topics,
    service: &str,
    username: &str,
    topic: &str,
    access: Access,
) -> Verdict {
    let device = username.parse::<SerialNumber>().ok();
    let decision = if username == service {
        acl::authorize(topics, &Subject::Service, topic, access)
    } else if let Some(sn) = &device {
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

fn log_verdict(check: &str, verdict: &Verdict) {
    match verdict {
        Verdict::Allow => tracing::debug!(check, "allow"),
        Verdict::Deny(reason) => tracing::info!(check, reason = %reason, "deny"),
        Verdict::Error(reason) => tracing::warn!(check, reason = %reason, "error"),
    }
}

/// The backend's answers for the embedded broker of `vesper demo`: the same login and ACL code
/// the HTTP routes run for mosquitto.
pub struct BackendGate(pub SharedState);

impl BackendGate {
    /// Whether `username` may connect with `password` as `client_id`.
    pub async fn login(&self, username: &str, password: &str, client_id: &str) -> bool {
        let params = AuthParams {
            username: Some(username.to_owned()),
            password: Some(password.to_owned()),
            clientid: Some(client_id.to_owned()),
            topic: None,
            acc: None,
        };
        let verdict = login(&self.0, params).await;
        log_verdict("user", &verdict);
        verdict == Verdict::Allow
    }

    /// Whether `username` may use `topic` for `access`.
    pub async fn allow(&self, username: &str, topic: &str, access: Access) -> bool {
        let params = AuthParams {
            username: Some(username.to_owned()),
            password: None,
            clientid: None,
            topic: Some(topic.to_owned()),
            acc: Some(access as i64),
        };
        let verdict = acl_verdict(&self.0, params).await;
        log_verdict("acl", &verdict);
        verdict == Verdict::Allow
    }
}
