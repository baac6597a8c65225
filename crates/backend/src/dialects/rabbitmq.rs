//! RabbitMQ's HTTP auth backend (`rabbitmq_auth_backend_http`), as its MQTT plugin uses it.
//!
//! Follows rabbitmq-server's `deps/rabbitmq_auth_backend_http/src/rabbit_auth_backend_http.erl`:
//! the parameters come as a query string (`http_method = get`) or a form body (`post`), a context
//! map flattened as `variable_map.client_id=...`; the answer must be status 200 or 201 with the
//! body `allow` (optionally followed by tags) or `deny` (optionally `deny REASON`); any other
//! status is an error, which refuses the client too. MQTT topics arrive as AMQP routing keys on
//! the `amq.topic` exchange (`deps/rabbitmq_mqtt/src/rabbit_mqtt_util.erl`, `to_amqp`: `/` becomes
//! `.` and `+` becomes `*`), and are turned back (`to_mqtt`) before the ACL judges them.
//!
//! Where the client id binding holds: everywhere. RabbitMQ 3.10's MQTT plugin sends `client_id`
//! with the login and with every vhost and resource check, and `variable_map.client_id` with
//! every topic check (seen on Debian's 3.10.8: `tests/it/rabbitmq_cluster.rs` runs it); each is
//! checked. A queue is allowed only when its name is the MQTT plugin's subscription queue of a
//! client id the login may use (`mqtt-subscription-ID` + `qos0` or `qos1`), or the service
//! account's own (`NAME` or `NAME.` + anything, for the backend's consumers over AMQP). The
//! service account may log in without a client id (AMQP has none); devices and users may not.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::sync::atomic::Ordering;

use vesper_core::acl::Access;
use vesper_core::goauth::Verdict;
use vesper_core::serial::SerialNumber;

use crate::SharedState;
use crate::decision::{self, LoginQuestion, TopicQuestion, deny};

/// The only virtual host the MQTT plugin is expected on (its default, `mqtt.vhost`).
const VHOST: &str = "/";
/// The exchange the MQTT plugin publishes to and binds subscriptions on.
pub const MQTT_EXCHANGE: &str = "amq.topic";
/// The MQTT plugin's subscription queues: `mqtt-subscription-` + client id + `qos0`/`qos1`.
const SUBSCRIPTION_QUEUE: &str = "mqtt-subscription-";

/// Every parameter RabbitMQ sends to any of the four paths (unknown ones are ignored).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Params {
    username: Option<String>,
    password: Option<String>,
    client_id: Option<String>,
    vhost: Option<String>,
    resource: Option<String>,
    name: Option<String>,
    permission: Option<String>,
    routing_key: Option<String>,
    #[serde(rename = "variable_map.client_id")]
    variable_client_id: Option<String>,
}

/// The parameters: the form body of a POST (`http_method = post`), else the query string
/// (`get`); malformed ones deny.
fn params(method: &Method, query: Option<&str>, body: &[u8]) -> Option<Params> {
    let text = if *method == Method::POST {
        body
    } else {
        query.unwrap_or_default().as_bytes()
    };
    serde_urlencoded::from_bytes(text).ok()
}

/// The body RabbitMQ reads: `allow`, or `deny` (a status other than 200/201 is an error there).
fn answer(check: &str, verdict: Verdict) -> Response {
    decision::log_verdict("rabbitmq", check, &verdict);
    let (status, body) = match verdict {
        Verdict::Allow => (StatusCode::OK, "allow"),
        Verdict::Deny(_) => (StatusCode::OK, "deny"),
        Verdict::Error(_) => (StatusCode::SERVICE_UNAVAILABLE, "error"),
    };
    (status, [(header::CONTENT_TYPE, "text/plain")], body).into_response()
}

/// `user_path`: may this client log in?
pub async fn user(
    State(state): State<SharedState>,
    method: Method,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    state.metrics.user.fetch_add(1, Ordering::Relaxed);
    let Some(p) = params(&method, query.as_deref(), &body) else {
        return answer("user", deny("malformed parameters"));
    };
    let service = state.config.serve.service_account.as_str();
    // An AMQP login (the backend's own consumer) has no client id: the service account is
    // then asked for with its own id, as on the go-auth route.
    let amqp_service = p.username.as_deref() == Some(service);
    let question = LoginQuestion {
        username: p.username.as_deref(),
        password: p.password.as_deref(),
        client_id: p.client_id.as_deref().or(amqp_service.then_some(service)),
    };
    let verdict = decision::login(&state, question).await;
    answer("user", verdict)
}

/// `vhost_path`: the MQTT plugin's virtual host only.
pub async fn vhost(
    State(state): State<SharedState>,
    method: Method,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let service = state.config.serve.service_account.as_str();
    let verdict = match params(&method, query.as_deref(), &body) {
        Some(p) if p.vhost.as_deref() != Some(VHOST) => deny("not the MQTT virtual host"),
        Some(p) => bound(&p, service).unwrap_or(Verdict::Allow),
        None => deny("malformed parameters"),
    };
    answer("vhost", verdict)
}

/// A denial when the check carries a client id the login may not use (or no username).
fn bound(p: &Params, service: &str) -> Option<Verdict> {
    let Some(username) = p.username.as_deref().filter(|u| !u.is_empty()) else {
        return Some(deny("no username"));
    };
    let client_id = p.client_id.as_deref()?;
    let device = username.parse::<SerialNumber>().ok();
    decision::client_id_refusal(username, device.as_ref(), client_id, service)
}

/// `resource_path`: exchanges and queues. The topic checks carry the ACL; here only what the
/// MQTT plugin itself declares and uses.
pub async fn resource(
    State(state): State<SharedState>,
    method: Method,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let Some(p) = params(&method, query.as_deref(), &body) else {
        return answer("resource", deny("malformed parameters"));
    };
    let service = state.config.serve.service_account.as_str();
    let verdict = resource_verdict(&p, service);
    answer("resource", verdict)
}

fn resource_verdict(p: &Params, service: &str) -> Verdict {
    let (Some(username), Some(name)) = (p.username.as_deref(), p.name.as_deref()) else {
        return deny("missing username or name");
    };
    if p.vhost.as_deref() != Some(VHOST) {
        return deny("not the MQTT virtual host");
    }
    if let Some(refused) = bound(p, service) {
        return refused;
    }
    let permission = p.permission.as_deref().unwrap_or_default();
    match p.resource.as_deref() {
        // Publishing to and binding from amq.topic; declaring or deleting it is not for clients.
        Some("exchange") if name == MQTT_EXCHANGE && matches!(permission, "read" | "write") => {
            Verdict::Allow
        }
        Some("queue") if owns_queue(username, name, service) => Verdict::Allow,
        _ => deny("not a resource of this login"),
    }
}

/// Whether `name` is a queue of `username`: the MQTT plugin's subscription queue of a client id
/// the login may use, or for the service account its own named queues.
fn owns_queue(username: &str, name: &str, service: &str) -> bool {
    let own_named = username == service
        && (name == service
            || name
                .strip_prefix(service)
                .is_some_and(|r| r.starts_with('.')));
    let device = username.parse::<SerialNumber>().ok();
    own_named
        || subscription_client_id(name).is_some_and(|id| {
            decision::client_id_refusal(username, device.as_ref(), id, service).is_none()
        })
}

/// The client id in `mqtt-subscription-IDqos0` or `...qos1`.
fn subscription_client_id(queue: &str) -> Option<&str> {
    let rest = queue.strip_prefix(SUBSCRIPTION_QUEUE)?;
    rest.strip_suffix("qos0")
        .or_else(|| rest.strip_suffix("qos1"))
}

/// `topic_path`: publish (`write`) and subscribe (`read`) on `amq.topic`, judged as MQTT topics.
pub async fn topic(
    State(state): State<SharedState>,
    method: Method,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    state.metrics.acl.fetch_add(1, Ordering::Relaxed);
    let Some(p) = params(&method, query.as_deref(), &body) else {
        return answer("topic", deny("malformed parameters"));
    };
    let verdict = topic_verdict(&state, &p).await;
    answer("topic", verdict)
}

async fn topic_verdict(state: &SharedState, p: &Params) -> Verdict {
    if p.vhost.as_deref() != Some(VHOST) || p.name.as_deref() != Some(MQTT_EXCHANGE) {
        return deny("not an MQTT topic");
    }
    let access = match p.permission.as_deref() {
        Some("write") => Access::Write,
        Some("read") => Access::Subscribe,
        _ => return deny("permission must be read or write"),
    };
    let Some(topic) = p.routing_key.as_deref().map(mqtt_topic) else {
        return deny("no routing key");
    };
    let question = TopicQuestion {
        username: p.username.as_deref(),
        client_id: p.variable_client_id.as_deref(),
        topic: Some(&topic),
        access,
    };
    decision::topic(state, question).await
}

/// An AMQP routing key back to the MQTT topic it came from (`rabbit_mqtt_util:to_mqtt`: `*`
/// becomes `+`, `.` becomes `/`).
pub fn mqtt_topic(routing_key: &str) -> String {
    routing_key.replace('*', "+").replace('.', "/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_keys_turn_back_into_mqtt_topics() {
        assert_eq!(mqtt_topic("vesper.PV-1.data"), "vesper/PV-1/data");
        assert_eq!(mqtt_topic("vesper.*.status"), "vesper/+/status");
        assert_eq!(mqtt_topic("vesper.#"), "vesper/#");
    }

    #[test]
    fn subscription_queues_name_their_client_id() {
        assert_eq!(
            subscription_client_id("mqtt-subscription-abcqos1"),
            Some("abc")
        );
        assert_eq!(
            subscription_client_id("mqtt-subscription-abcqos0"),
            Some("abc")
        );
        assert_eq!(subscription_client_id("mqtt-subscription-abc"), None);
        assert_eq!(subscription_client_id("amq.gen-1"), None);
    }
}
