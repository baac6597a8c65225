//! mosquitto-go-auth's HTTP protocol, judged as go-auth judges it (DESIGN.md section 3), not by
//! the project's own `goauth` module: a fixture table of requests as go-auth sends them (method,
//! content type, body in each params mode) goes as raw HTTP to `vesper serve`'s auth listener,
//! and each answer is read the way go-auth reads it in each response mode.

use reqwest::Method;
use serde_json::json;

use crate::backend_support::{App, SECRET};
use crate::support::expected_password;

/// How go-auth takes an answer: 2xx passes (then the body is read by response mode), any other
/// status below 500 denies, 500 and above is an error (mosquitto drops the client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    Pass,
    Deny,
    Error,
}

/// go-auth's `http_response_mode`, and how it reads a 2xx body in it.
fn go_auth_reads(mode: &str, status: u16, body: &str) -> Reading {
    match status {
        200..=299 => {
            let pass = match mode {
                "status" => true,
                "json" => serde_json::from_str::<serde_json::Value>(body)
                    .ok()
                    .and_then(|v| v["ok"].as_bool())
                    .unwrap_or(false),
                "text" => body == "ok",
                other => panic!("no response mode {other}"),
            };
            if pass { Reading::Pass } else { Reading::Deny }
        }
        500.. => Reading::Error,
        _ => Reading::Deny,
    }
}

/// Who asks, and about what. `{sn}` is a device of the test's batch, `{other}` another one,
/// `{pass}` the device's password (computed here from the design's formula).
struct Question {
    route: &'static str,
    fields: &'static [(&'static str, &'static str)],
    expected: Reading,
}

#[rustfmt::skip]
const QUESTIONS: &[Question] = &[
    q("user", &[("username", "{sn}"), ("password", "{pass}"), ("clientid", "{sn}")], Reading::Pass),
    q("user", &[("username", "{sn}"), ("password", "wrong"), ("clientid", "{sn}")], Reading::Deny),
    q("user", &[("username", "{sn}"), ("password", "{pass}"), ("clientid", "{other}")], Reading::Deny),
    q("acl", &[("username", "{sn}"), ("clientid", "{sn}"), ("topic", "vesper/{sn}/data"), ("acc", "2")], Reading::Pass),
    q("acl", &[("username", "{sn}"), ("clientid", "{sn}"), ("topic", "vesper/{other}/data"), ("acc", "2")], Reading::Deny),
    q("acl", &[("username", "{sn}"), ("clientid", "{sn}"), ("topic", "vesper/{sn}/control"), ("acc", "4")], Reading::Pass),
    q("acl", &[("username", "{sn}"), ("clientid", "{sn}"), ("topic", "#"), ("acc", "4")], Reading::Deny),
    q("superuser", &[("username", "{sn}")], Reading::Deny),
];

const fn q(
    route: &'static str,
    fields: &'static [(&'static str, &'static str)],
    expected: Reading,
) -> Question {
    Question {
        route,
        fields,
        expected,
    }
}

/// The body go-auth sends in `params_mode`: JSON with `acc` a number, or a form with every
/// field text; and its content type.
fn body(params_mode: &str, fields: &[(String, String)]) -> (&'static str, String) {
    match params_mode {
        "json" => {
            let mut map = serde_json::Map::new();
            for (k, v) in fields {
                let value = if k == "acc" {
                    json!(v.parse::<i64>().unwrap())
                } else {
                    json!(v)
                };
                map.insert(k.clone(), value);
            }
            (
                "application/json",
                serde_json::Value::Object(map).to_string(),
            )
        }
        "form" => {
            let text = fields
                .iter()
                .map(|(k, v)| format!("{k}={}", form_escape(v)))
                .collect::<Vec<_>>()
                .join("&");
            ("application/x-www-form-urlencoded", text)
        }
        other => panic!("no params mode {other}"),
    }
}

/// `application/x-www-form-urlencoded` escaping, as Go's `url.Values.Encode` does it.
fn form_escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".into(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_method_params_mode_and_response_mode_reads_as_go_auth_reads_it() {
    let app = App::start().await;
    let (_, sns) = app.batch(2).await;
    let (sn, other) = (&sns[0], &sns[1]);
    let pass = expected_password(SECRET, sn);
    let mut asked = 0;
    for question in QUESTIONS {
        let fields: Vec<(String, String)> = question
            .fields
            .iter()
            .map(|(k, v)| {
                let v = v
                    .replace("{sn}", sn)
                    .replace("{other}", other)
                    .replace("{pass}", &pass);
                (k.to_string(), v)
            })
            .collect();
        for method in [Method::POST, Method::GET, Method::PUT] {
            for params_mode in ["json", "form"] {
                for response_mode in ["status", "json", "text"] {
                    let (content_type, text) = body(params_mode, &fields);
                    let url = format!(
                        "{}/mqtt/auth/{}?response_mode={response_mode}",
                        app.auth, question.route
                    );
                    let answer = app
                        .client
                        .request(method.clone(), &url)
                        .header("content-type", content_type)
                        .body(text.clone())
                        .send()
                        .await
                        .unwrap();
                    let status = answer.status().as_u16();
                    let reply = answer.text().await.unwrap();
                    let reading = go_auth_reads(response_mode, status, &reply);
                    assert_eq!(
                        reading, question.expected,
                        "{method} /mqtt/auth/{} ({params_mode} params, {response_mode} answers) {text}: {status} {reply:?}",
                        question.route
                    );
                    // A denial is never a 5xx (that would drop the client from the broker).
                    assert!(status < 500, "{method} {url}: {status}");
                    if response_mode == "json" {
                        let v: serde_json::Value = serde_json::from_str(&reply).unwrap();
                        assert!(v["ok"].is_boolean() && v["error"].is_string(), "{reply}");
                    }
                    asked += 1;
                }
            }
        }
    }
    assert_eq!(asked, QUESTIONS.len() * 3 * 2 * 3);
    app.stop().await;
}
