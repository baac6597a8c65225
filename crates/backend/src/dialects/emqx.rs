//! EMQX 5's HTTP authentication (`/mqtt/emqx/authn`) and authorization (`/mqtt/emqx/authz`).
//!
//! From EMQX's documentation (docs.emqx.com, "Use HTTP Service" for authz and "HTTP
//! Authentication" for authn, 5.x): the request is the JSON body an operator's template renders,
//! so a `"${qos}"` placeholder arrives as the string `"1"`; the answer is read from status 200
//! with `{"result": "allow" | "deny" | "ignore"}` (204 means allow), and **any other status, or a
//! 200 without a readable result, means "ignore"**: the next authorizer decides, and with none
//! left EMQX's `no_match` default is allow. So every answer here is 200 with an explicit
//! `allow` or `deny`, also when the registry cannot be read, and authn never says
//! `is_superuser: true`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;

use vesper_core::acl::Access;
use vesper_core::goauth::Verdict;

use crate::SharedState;
use crate::decision::{self, LoginQuestion, TopicQuestion, deny};

/// A template value as EMQX renders it: a string (`"${qos}"`), or a bare number or boolean
/// when the operator's template leaves the placeholder unquoted.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Rendered {
    Text(String),
    Number(i64),
    Flag(bool),
}

impl Rendered {
    fn text(&self) -> String {
        match self {
            Rendered::Text(t) => t.clone(),
            Rendered::Number(n) => n.to_string(),
            Rendered::Flag(b) => b.to_string(),
        }
    }
}

/// The authentication request of the shipped template (`deploy/emqx/emqx.conf`).
#[derive(Debug, Deserialize)]
struct AuthnRequest {
    username: Option<String>,
    password: Option<String>,
    clientid: Option<String>,
}

/// The authorization request of the shipped template.
#[derive(Debug, Deserialize)]
struct AuthzRequest {
    username: Option<String>,
    clientid: Option<String>,
    topic: Option<String>,
    action: Option<String>,
    qos: Option<Rendered>,
    retain: Option<Rendered>,
}

/// What EMQX reads: the result, and for authn whether the client is a superuser (never).
#[derive(Debug, Serialize)]
struct Answer {
    result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    is_superuser: Option<bool>,
}

fn answer(check: &str, verdict: Verdict, authn: bool) -> Response {
    decision::log_verdict("emqx", check, &verdict);
    let result = if verdict == Verdict::Allow {
        "allow"
    } else {
        "deny"
    };
    let is_superuser = authn.then_some(false);
    Json(Answer {
        result,
        is_superuser,
    })
    .into_response()
}

/// May this client connect?
pub async fn authn(State(state): State<SharedState>, body: Bytes) -> Response {
    state.metrics.user.fetch_add(1, Ordering::Relaxed);
    let verdict = match serde_json::from_slice::<AuthnRequest>(&body) {
        Ok(r) => {
            let question = LoginQuestion {
                username: r.username.as_deref(),
                password: r.password.as_deref(),
                client_id: r.clientid.as_deref(),
            };
            decision::login(&state, question).await
        }
        Err(_) => deny("malformed request"),
    };
    answer("authn", verdict, true)
}

/// May this client publish or subscribe to this topic?
pub async fn authz(State(state): State<SharedState>, body: Bytes) -> Response {
    state.metrics.acl.fetch_add(1, Ordering::Relaxed);
    let verdict = match serde_json::from_slice::<AuthzRequest>(&body) {
        Ok(r) => authz_verdict(&state, &r).await,
        Err(_) => deny("malformed request"),
    };
    answer("authz", verdict, false)
}

async fn authz_verdict(state: &SharedState, r: &AuthzRequest) -> Verdict {
    let access = match r.action.as_deref() {
        Some("publish") => Access::Write,
        Some("subscribe") => Access::Subscribe,
        _ => return deny("action must be publish or subscribe"),
    };
    if r.qos
        .as_ref()
        .is_some_and(|q| !matches!(q.text().as_str(), "0" | "1" | "2"))
    {
        return deny("qos must be 0, 1 or 2");
    }
    if r.retain
        .as_ref()
        .is_some_and(|f| !matches!(f.text().as_str(), "true" | "false"))
    {
        return deny("retain must be true or false");
    }
    let question = TopicQuestion {
        username: r.username.as_deref(),
        client_id: r.clientid.as_deref(),
        topic: r.topic.as_deref(),
        access,
    };
    decision::topic(state, question).await
}
