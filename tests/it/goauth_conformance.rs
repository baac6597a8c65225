//! mosquitto-go-auth's HTTP protocol, judged as go-auth judges it (DESIGN.md section 3), not by
//! the project's own `goauth` module: a fixture table of requests as go-auth sends them (method,
//! content type, body in each params mode) goes as raw HTTP to `vesper serve`'s auth listener,
//! and each answer is read the way go-auth reads it in each response mode.

use reqwest::Method;

use crate::backend_support::{App, SECRET};
use crate::goauth_wire::{Reading, body, go_auth_reads};
use crate::support::expected_password;

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

/// What a real go-auth deployment uses: the response mode set in configuration
/// (`serve.auth_response_mode`, no `?response_mode=` override), each with each params mode,
/// read as go-auth reads it, and through a real mosquitto whose plugin is configured the same
/// way (`plugin_opt_http_response_mode`, `plugin_opt_http_params_mode`): the device logs in, a
/// wrong password does not, another device's topic is refused.
#[tokio::test(flavor = "multi_thread")]
async fn the_configured_response_mode_is_what_the_broker_reads() {
    use crate::broker::{Mosquitto, connect, current_user, free_port, plugin, publish};
    use rumqttc::v5::mqttbytes::v5::PubAckReason;
    for response_mode in ["status", "json", "text"] {
        let app =
            App::start_with_serve(&format!("auth_response_mode = \"{response_mode}\"\n")).await;
        let (_, sns) = app.batch(2).await;
        let (sn, other) = (&sns[0], &sns[1]);
        let pass = expected_password(SECRET, sn);
        for params_mode in ["json", "form"] {
            for (fields, expected) in [
                (
                    vec![
                        ("username", sn.as_str()),
                        ("password", pass.as_str()),
                        ("clientid", sn.as_str()),
                    ],
                    Reading::Pass,
                ),
                (
                    vec![
                        ("username", sn.as_str()),
                        ("password", "wrong"),
                        ("clientid", sn.as_str()),
                    ],
                    Reading::Deny,
                ),
            ] {
                let fields: Vec<(String, String)> = fields
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect();
                let (content_type, text) = body(params_mode, &fields);
                let answer = app
                    .client
                    .post(format!("{}/mqtt/auth/user", app.auth))
                    .header("content-type", content_type)
                    .body(text)
                    .send()
                    .await
                    .unwrap();
                let status = answer.status().as_u16();
                let reply = answer.text().await.unwrap();
                assert_eq!(
                    go_auth_reads(response_mode, status, &reply),
                    expected,
                    "configured {response_mode}, {params_mode} params: {status} {reply:?}"
                );
            }

            let port = free_port();
            let _broker = Mosquitto::with_config(
                port,
                &format!(
                    "listener {port} 127.0.0.1\nallow_anonymous false\npersistence false\nuser {}\n\
                     plugin {}\nplugin_opt_http_host 127.0.0.1\nplugin_opt_http_port {}\n\
                     plugin_opt_http_response_mode {response_mode}\nplugin_opt_http_params_mode {params_mode}\n\
                     plugin_opt_auth_cache_seconds 0\nplugin_opt_acl_cache_seconds 0\n\
                     log_dest stderr\nlog_type all\n",
                    current_user(),
                    plugin().display(),
                    app.auth_port()
                ),
            );
            let (client, mut events) = connect(port, sn, sn, &pass).await.unwrap_or_else(|e| {
                panic!("{response_mode}/{params_mode}: the device logs in: {e}")
            });
            assert!(
                connect(port, sn, sn, "wrong").await.is_err(),
                "{response_mode}/{params_mode}: a wrong password is refused"
            );
            let own = publish(&client, &mut events, &format!("vesper/{sn}/data"), "{}").await;
            assert!(
                matches!(
                    own,
                    PubAckReason::Success | PubAckReason::NoMatchingSubscribers
                ),
                "{response_mode}/{params_mode}: {own:?}"
            );
            let theirs = publish(&client, &mut events, &format!("vesper/{other}/data"), "{}").await;
            assert_eq!(
                theirs,
                PubAckReason::NotAuthorized,
                "{response_mode}/{params_mode}"
            );
        }
        app.stop().await;
    }
}
