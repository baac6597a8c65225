//! VerneMQ's webhooks (`/mqtt/vernemq`, one URL for every hook, dispatched on the
//! `vernemq-hook` header): `auth_on_register`, `auth_on_publish` and `auth_on_subscribe`.
//!
//! From VerneMQ's documentation (docs.vernemq.com, "Webhooks"): every hook is a JSON POST and
//! every answer is status 200 with `{"result": "ok"}` to allow or `{"result": {"error": ...}}` to
//! refuse (`"next"` would hand the question to the next plugin, which we never do). A subscribe
//! carries several topics; the answer allows it with a `topics` list where a refused filter has
//! QoS 128 (MQTT's SUBACK failure code), so one forbidden filter does not refuse the others.
//! The publish payload (base64) is never decoded: the decision does not depend on it.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::atomic::Ordering;

use vesper_core::acl::Access;
use vesper_core::goauth::Verdict;

use crate::SharedState;
use crate::decision::{self, LoginQuestion, TopicQuestion, deny};

/// Most topic filters one subscribe may carry here.
const MAX_FILTERS: usize = 64;
/// The QoS VerneMQ reads as "this filter is refused" in a subscribe answer.
const REFUSED: u8 = 128;

#[derive(Debug, Deserialize)]
struct Register {
    username: Option<String>,
    password: Option<String>,
    client_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Publish {
    username: Option<String>,
    client_id: Option<String>,
    topic: Option<String>,
    qos: Option<u8>,
}

#[derive(Debug, Deserialize)]
struct Subscribe {
    username: Option<String>,
    client_id: Option<String>,
    topics: Vec<Filter>,
}

#[derive(Debug, Deserialize)]
struct Filter {
    topic: String,
    qos: u8,
}

fn ok() -> Value {
    json!({ "result": "ok" })
}

fn refused() -> Value {
    json!({ "result": { "error": "not_allowed" } })
}

/// The answer to a hook with one verdict.
fn answer(check: &str, verdict: &Verdict) -> Value {
    decision::log_verdict("vernemq", check, verdict);
    if *verdict == Verdict::Allow {
        ok()
    } else {
        refused()
    }
}

/// One webhook; the hook's name is in the `vernemq-hook` header.
pub async fn hook(State(state): State<SharedState>, headers: HeaderMap, body: Bytes) -> Response {
    let hook = headers
        .get("vernemq-hook")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let answer = match hook {
        "auth_on_register" => register(&state, &body).await,
        "auth_on_publish" => publish(&state, &body).await,
        "auth_on_subscribe" => subscribe(&state, &body).await,
        _ => answer("hook", &deny("unknown hook")),
    };
    Json(answer).into_response()
}

async fn register(state: &SharedState, body: &[u8]) -> Value {
    state.metrics.user.fetch_add(1, Ordering::Relaxed);
    let verdict = match serde_json::from_slice::<Register>(body) {
        Ok(r) => {
            let question = LoginQuestion {
                username: r.username.as_deref(),
                password: r.password.as_deref(),
                client_id: r.client_id.as_deref(),
            };
            decision::login(state, question).await
        }
        Err(_) => deny("malformed request"),
    };
    answer("auth_on_register", &verdict)
}

async fn publish(state: &SharedState, body: &[u8]) -> Value {
    state.metrics.acl.fetch_add(1, Ordering::Relaxed);
    let verdict = match serde_json::from_slice::<Publish>(body) {
        Ok(p) if p.qos.is_some_and(|q| q > 2) => deny("qos must be 0, 1 or 2"),
        Ok(p) => {
            let question = TopicQuestion {
                username: p.username.as_deref(),
                client_id: p.client_id.as_deref(),
                topic: p.topic.as_deref(),
                access: Access::Write,
            };
            decision::topic(state, question).await
        }
        Err(_) => deny("malformed request"),
    };
    answer("auth_on_publish", &verdict)
}

/// Each filter judged on its own; refused ones answered with QoS 128.
async fn subscribe(state: &SharedState, body: &[u8]) -> Value {
    state.metrics.acl.fetch_add(1, Ordering::Relaxed);
    let request = match serde_json::from_slice::<Subscribe>(body) {
        Ok(s) if !s.topics.is_empty() && s.topics.len() <= MAX_FILTERS => s,
        Ok(_) => return answer("auth_on_subscribe", &deny("no filters, or too many")),
        Err(_) => return answer("auth_on_subscribe", &deny("malformed request")),
    };
    let mut topics = Vec::with_capacity(request.topics.len());
    for filter in &request.topics {
        let question = TopicQuestion {
            username: request.username.as_deref(),
            client_id: request.client_id.as_deref(),
            topic: Some(&filter.topic),
            access: Access::Subscribe,
        };
        let verdict = if filter.qos > 2 {
            deny("qos must be 0, 1 or 2")
        } else {
            decision::topic(state, question).await
        };
        decision::log_verdict("vernemq", "auth_on_subscribe", &verdict);
        let qos = if verdict == Verdict::Allow {
            filter.qos
        } else {
            REFUSED
        };
        topics.push(json!({ "topic": filter.topic, "qos": qos }));
    }
    json!({ "result": "ok", "topics": topics })
}
