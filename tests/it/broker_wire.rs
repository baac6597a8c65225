//! The clustered brokers' auth protocols as each broker itself speaks them, for the tests to
//! judge the backend with (never the product's own adapters): the request bytes each sends and
//! how each reads an answer.
//!
//! - RabbitMQ 3.10 (`rabbitmq_auth_backend_http`, rabbitmq-server
//!   `deps/rabbitmq_auth_backend_http/src/rabbit_auth_backend_http.erl`): form-encoded parameters
//!   (`http_method = post`; `q/1` + `rabbit_http_util:quote_plus`), a context map flattened as
//!   `variable_map.KEY`; only status 200 and 201 are answers; the stripped body `deny` or
//!   `deny REASON` refuses, `allow` (with tags on the user path) allows, anything else is an
//!   error. MQTT topics become routing keys (`deps/rabbitmq_mqtt/src/rabbit_mqtt_util.erl`,
//!   `to_amqp`: `/` to `.`, `+` to `*`).
//! - EMQX 5 (docs.emqx.com, access-control/authn/http and authz/http): a JSON body rendered from
//!   the operator's template, placeholders in quotes arrive as strings; 204 allows; 200 is read
//!   by its `result` (`allow`, `deny`, `ignore`; anything else is `ignore`); any other status is
//!   `ignore`, and with no other authorizer EMQX's `no_match` default allows.
//! - VerneMQ (docs.vernemq.com, plugin development, webhooks): a JSON POST with the hook's name in
//!   the `vernemq-hook` header; 200 with `{"result":"ok"}` allows, `{"result":{"error":...}}`
//!   refuses, `{"result":"next"}` hands over to the next plugin; a subscribe answer lists the
//!   filters with QoS 128 for each refused one.

use serde_json::{Value, json};

/// How a broker took an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    Allow,
    Deny,
    /// EMQX's "ignore" or VerneMQ's "next": another authorizer (or the default) decides.
    NoOpinion,
    /// RabbitMQ: not an answer (bad status or body); the client is refused with an error.
    Error,
}

/// `rabbit_http_util:quote_plus`: unreserved characters (`A-Z a-z 0-9 . - ~ _`) as they are,
/// space as `+`, the rest `%XX` in upper-case hex: the same set and form as Go's
/// `url.QueryEscape`, so go-auth's escaping serves both.
pub fn quote_plus(text: &str) -> String {
    crate::goauth_wire::form_escape(text)
}

/// RabbitMQ's form body for the given parameters, in order.
pub fn rabbitmq_form(params: &[(&str, &str)]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{k}={}", quote_plus(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `rabbit_mqtt_util:to_amqp`: an MQTT topic as the routing key RabbitMQ checks.
pub fn routing_key(topic: &str) -> String {
    topic.replace('/', ".").replace('+', "*")
}

/// The MQTT plugin's topic check (publish = `write`, subscribe = `read`) as a form body.
pub fn rabbitmq_topic_check(username: &str, client_id: &str, topic: &str, write: bool) -> String {
    let key = routing_key(topic);
    rabbitmq_form(&[
        ("username", username),
        ("vhost", "/"),
        ("resource", "topic"),
        ("name", "amq.topic"),
        ("permission", if write { "write" } else { "read" }),
        ("tags", ""),
        ("routing_key", &key),
        ("variable_map.client_id", client_id),
        ("variable_map.username", username),
        ("variable_map.vhost", "/"),
    ])
}

/// The MQTT plugin's login as a form body (the fields and their order as Debian's 3.10.8 sends
/// them, seen in `tests/it/rabbitmq_cluster.rs`'s cluster).
pub fn rabbitmq_login(username: &str, password: &str, client_id: &str) -> String {
    rabbitmq_form(&[
        ("username", username),
        ("password", password),
        ("vhost", "/"),
        ("client_id", client_id),
    ])
}

/// A resource check (exchange or queue) as a form body: the MQTT plugin's (3.10.8 adds the
/// session's client id as a context parameter) or an AMQP client's (`client_id` `None`).
pub fn rabbitmq_resource(
    username: &str,
    kind: &str,
    name: &str,
    permission: &str,
    client_id: Option<&str>,
) -> String {
    let mut params = vec![
        ("username", username),
        ("vhost", "/"),
        ("resource", kind),
        ("name", name),
        ("permission", permission),
        ("tags", ""),
    ];
    params.extend(client_id.map(|id| ("client_id", id)));
    rabbitmq_form(&params)
}

/// How `rabbit_auth_backend_http` reads an answer (`user_login_authentication/2` and `req/2`).
pub fn rabbitmq_reads(status: u16, body: &str) -> Reading {
    if status != 200 && status != 201 {
        return Reading::Error;
    }
    let body = body.trim();
    if body.starts_with("deny ") {
        return Reading::Deny;
    }
    match body.to_lowercase().as_str() {
        "deny" => Reading::Deny,
        "allow" => Reading::Allow,
        _ => Reading::Error,
    }
}

/// EMQX's authentication body from the shipped template (`deploy/emqx/emqx.conf`).
pub fn emqx_authn(username: &str, password: &str, client_id: &str) -> Value {
    json!({ "username": username, "password": password, "clientid": client_id })
}

/// EMQX's authorization body from the shipped template: `"${qos}"` and `"${retain}"` are
/// quoted there, so they arrive as strings.
pub fn emqx_authz(username: &str, client_id: &str, topic: &str, publish: bool) -> Value {
    json!({
        "username": username,
        "clientid": client_id,
        "topic": topic,
        "action": if publish { "publish" } else { "subscribe" },
        "qos": "1",
        "retain": "false",
    })
}

/// How EMQX reads an HTTP authn/authz answer.
pub fn emqx_reads(status: u16, body: &str) -> Reading {
    match status {
        204 => Reading::Allow,
        200 => match serde_json::from_str::<Value>(body)
            .ok()
            .and_then(|v| v["result"].as_str().map(str::to_owned))
            .as_deref()
        {
            Some("allow") => Reading::Allow,
            Some("deny") => Reading::Deny,
            _ => Reading::NoOpinion,
        },
        _ => Reading::NoOpinion,
    }
}

/// VerneMQ's `auth_on_register` body.
pub fn vernemq_register(username: &str, password: &str, client_id: &str) -> Value {
    json!({
        "peer_addr": "127.0.0.1",
        "peer_port": 50000,
        "username": username,
        "password": password,
        "mountpoint": "",
        "client_id": client_id,
        "clean_session": true,
    })
}

/// VerneMQ's `auth_on_publish` body (the payload base64-encoded).
pub fn vernemq_publish(username: &str, client_id: &str, topic: &str) -> Value {
    json!({
        "username": username,
        "client_id": client_id,
        "mountpoint": "",
        "qos": 1,
        "topic": topic,
        "payload": "eyJ0eXBlIjoiaGVhcnRiZWF0In0=",
        "retain": false,
    })
}

/// VerneMQ's `auth_on_subscribe` body.
pub fn vernemq_subscribe(username: &str, client_id: &str, filters: &[&str]) -> Value {
    let topics: Vec<Value> = filters
        .iter()
        .map(|t| json!({ "topic": t, "qos": 1 }))
        .collect();
    json!({ "username": username, "client_id": client_id, "mountpoint": "", "topics": topics })
}

/// How VerneMQ reads a hook's answer (anything but 200 is the hook failing: no decision).
pub fn vernemq_reads(status: u16, body: &str) -> Reading {
    if status != 200 {
        return Reading::NoOpinion;
    }
    let Ok(v) = serde_json::from_str::<Value>(body) else {
        return Reading::NoOpinion;
    };
    match &v["result"] {
        Value::String(s) if s == "ok" => Reading::Allow,
        Value::Object(o) if o.contains_key("error") => Reading::Deny,
        _ => Reading::NoOpinion,
    }
}

/// The QoS VerneMQ grants each filter of a subscribe answer it took as `ok` (128 = refused);
/// the requested QoS when the answer lists no topics.
pub fn vernemq_granted(body: &str, requested: &[&str]) -> Vec<u8> {
    let v: Value = serde_json::from_str(body).unwrap();
    match v["topics"].as_array() {
        None => vec![1; requested.len()],
        Some(topics) => topics
            .iter()
            .map(|t| t["qos"].as_u64().unwrap() as u8)
            .collect(),
    }
}
