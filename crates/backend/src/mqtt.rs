//! The broker's questions, in mosquitto-go-auth's HTTP protocol: may this client log in, is it a
//! superuser, may it read/write/subscribe this topic. Deny by default (403); 500 only when the
//! registry cannot be read. Passwords and tokens are never logged.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde::Deserialize;

use super::SharedState;
use super::decision::{self, LoginQuestion, TopicQuestion, deny};
use vesper_core::acl::Access;
use vesper_core::goauth::{self, AuthParams, ResponseMode, Verdict};

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

fn params(headers: &HeaderMap, body: &[u8]) -> Result<AuthParams, Verdict> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    goauth::parse_params(content_type, body).map_err(|e| Verdict::Deny(e.to_string()))
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
         # HELP vesper_broker_commands_unsent_total Commands with no broker connection to go to (no [serve.broker], or one over AMQP).\n# TYPE vesper_broker_commands_unsent_total counter\n\
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
    decision::log_verdict("go-auth", route, &verdict);
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
    let question = LoginQuestion {
        username: p.username.as_deref(),
        password: p.password.as_deref(),
        client_id: p.clientid.as_deref(),
    };
    decision::login(state, question).await
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
    let question = (&query, &headers, &body[..]);
    answer(
        &state,
        "superuser",
        &state.metrics.superuser,
        question,
        |p| std::future::ready(decision::superuser(&state, p.username.as_deref())),
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
    let Some(access) = p.acc.and_then(Access::from_acc) else {
        return deny("acc must be 1, 2 or 4");
    };
    let question = TopicQuestion {
        username: p.username.as_deref(),
        client_id: p.clientid.as_deref(),
        topic: p.topic.as_deref(),
        access,
    };
    decision::topic(state, question).await
}

/// The backend's answers for the embedded broker of `vesper demo`: the same login and ACL code
/// the HTTP routes run for mosquitto.
pub struct BackendGate(pub SharedState);

impl BackendGate {
    /// Whether `username` may connect with `password` as `client_id`.
    pub async fn login(&self, username: &str, password: &str, client_id: &str) -> bool {
        let question = LoginQuestion {
            username: Some(username),
            password: Some(password),
            client_id: Some(client_id),
        };
        let verdict = decision::login(&self.0, question).await;
        decision::log_verdict("embedded", "user", &verdict);
        verdict == Verdict::Allow
    }

    /// Whether `username` may use `topic` for `access`.
    pub async fn allow(&self, username: &str, topic: &str, access: Access) -> bool {
        let question = TopicQuestion {
            username: Some(username),
            client_id: None,
            topic: Some(topic),
            access,
        };
        let verdict = decision::topic(&self.0, question).await;
        decision::log_verdict("embedded", "acl", &verdict);
        verdict == Verdict::Allow
    }
}
