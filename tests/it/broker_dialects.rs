//! The clustered brokers' dialects (RabbitMQ, EMQX 5, VerneMQ) over real HTTP against `vesper
//! serve`: each request sent and each answer read as that broker does (`crate::broker_wire`,
//! written from the brokers' sources and documentation, never the product's adapters), and the
//! four dialects (with go-auth) agreeing on 10,000 random questions.

use futures_util::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::backend_mqtt::{Fleet, fleet};
use crate::backend_support::{App, SERVICE, device_password, service_password, user_token};
use crate::broker_wire::{self as wire, Reading};
use crate::goauth_wire;

/// The password each login would give: a device's derived one, a user's ID token, the service
/// account's.
fn password(username: &str) -> String {
    if username == SERVICE {
        service_password()
    } else if username.starts_with("PV-") && username.len() == 20 {
        device_password(username)
    } else {
        user_token(username, "test-key", json!({}))
    }
}

/// One question, asked of one broker's dialect as that broker asks it.
struct Ask<'a> {
    app: &'a App,
}

impl Ask<'_> {
    async fn post(&self, path: &str, content_type: &str, body: String) -> (u16, String) {
        self.post_with(path, content_type, body, None).await
    }

    async fn post_with(
        &self,
        path: &str,
        content_type: &str,
        body: String,
        hook: Option<&str>,
    ) -> (u16, String) {
        let mut request = self
            .app
            .client
            .post(format!("{}{path}", self.app.auth))
            .header("content-type", content_type)
            .body(body);
        if let Some(hook) = hook {
            request = request.header("vernemq-hook", hook);
        }
        let r = request.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.text().await.unwrap())
    }

    async fn goauth(&self, route: &str, fields: &[(&str, &str)]) -> Reading {
        let fields: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let (content_type, body) = goauth_wire::body("json", &fields);
        let (status, text) = self
            .post(
                &format!("/mqtt/auth/{route}?response_mode=json"),
                content_type,
                body,
            )
            .await;
        match goauth_wire::go_auth_reads("json", status, &text) {
            goauth_wire::Reading::Pass => Reading::Allow,
            goauth_wire::Reading::Deny => Reading::Deny,
            goauth_wire::Reading::Error => Reading::Error,
        }
    }

    async fn rabbitmq(&self, path: &str, body: String) -> Reading {
        let (status, text) = self
            .post(path, "application/x-www-form-urlencoded", body)
            .await;
        wire::rabbitmq_reads(status, &text)
    }

    async fn emqx(&self, path: &str, body: Value) -> Reading {
        let (status, text) = self.post(path, "application/json", body.to_string()).await;
        wire::emqx_reads(status, &text)
    }

    async fn vernemq(&self, hook: &str, body: Value) -> (Reading, String) {
        let (status, text) = self
            .post_with(
                "/mqtt/vernemq",
                "application/json",
                body.to_string(),
                Some(hook),
            )
            .await;
        (wire::vernemq_reads(status, &text), text)
    }

    /// A login in every dialect: go-auth, RabbitMQ, EMQX, VerneMQ.
    async fn login(&self, username: &str, password: &str, client_id: &str) -> [Reading; 4] {
        [
            self.goauth(
                "user",
                &[
                    ("username", username),
                    ("password", password),
                    ("clientid", client_id),
                ],
            )
            .await,
            self.rabbitmq(
                "/mqtt/rabbitmq/user",
                wire::rabbitmq_login(username, password, client_id),
            )
            .await,
            self.emqx(
                "/mqtt/emqx/authn",
                wire::emqx_authn(username, password, client_id),
            )
            .await,
            self.vernemq(
                "auth_on_register",
                wire::vernemq_register(username, password, client_id),
            )
            .await
            .0,
        ]
    }

    /// A publish (or subscribe) in every dialect.
    async fn topic(
        &self,
        username: &str,
        client_id: &str,
        topic: &str,
        publish: bool,
    ) -> [Reading; 4] {
        let acc = if publish { "2" } else { "4" };
        let goauth = self
            .goauth(
                "acl",
                &[
                    ("username", username),
                    ("clientid", client_id),
                    ("topic", topic),
                    ("acc", acc),
                ],
            )
            .await;
        let rabbitmq = self
            .rabbitmq(
                "/mqtt/rabbitmq/topic",
                wire::rabbitmq_topic_check(username, client_id, topic, publish),
            )
            .await;
        let emqx = self
            .emqx(
                "/mqtt/emqx/authz",
                wire::emqx_authz(username, client_id, topic, publish),
            )
            .await;
        let vernemq = if publish {
            self.vernemq(
                "auth_on_publish",
                wire::vernemq_publish(username, client_id, topic),
            )
            .await
            .0
        } else {
            let (reading, body) = self
                .vernemq(
                    "auth_on_subscribe",
                    wire::vernemq_subscribe(username, client_id, &[topic]),
                )
                .await;
            match reading {
                Reading::Allow if wire::vernemq_granted(&body, &[topic]) == [128] => Reading::Deny,
                other => other,
            }
        };
        [goauth, rabbitmq, emqx, vernemq]
    }
}

const DIALECTS: [&str; 4] = ["go-auth", "rabbitmq", "emqx", "vernemq"];

/// Fails with every wrong answer listed.
fn assert_none_wrong(wrong: &[String]) {
    assert!(
        wrong.is_empty(),
        "{} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// Every dialect read `expected`; the wrong ones named.
fn all_read(readings: [Reading; 4], expected: Reading, case: &str, wrong: &mut Vec<String>) {
    for (dialect, reading) in DIALECTS.iter().zip(readings) {
        if reading != expected {
            wrong.push(format!(
                "{dialect}: {case}: {reading:?}, expected {expected:?}"
            ));
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_dialect_logs_in_what_the_registry_allows_and_nothing_else() {
    let app = App::start().await;
    let f = fleet(&app).await;
    let ask = Ask { app: &app };
    let mut wrong = Vec::new();
    let (allow, deny) = (Reading::Allow, Reading::Deny);
    let owner = password("uid-owner");
    let cases: Vec<(String, [Reading; 4], Reading)> = vec![
        (
            "device A, own id".into(),
            ask.login(&f.a, &password(&f.a), &f.a).await,
            allow,
        ),
        (
            "device A, own id with suffix".into(),
            ask.login(&f.a, &password(&f.a), &format!("{}-ota", f.a))
                .await,
            allow,
        ),
        (
            "device A, B's id".into(),
            ask.login(&f.a, &password(&f.a), &f.b).await,
            deny,
        ),
        (
            "device A, empty id".into(),
            ask.login(&f.a, &password(&f.a), "").await,
            deny,
        ),
        (
            "device A, B's password".into(),
            ask.login(&f.a, &password(&f.b), &f.a).await,
            deny,
        ),
        (
            "revoked C".into(),
            ask.login(&f.c, &password(&f.c), &f.c).await,
            deny,
        ),
        (
            "unknown D".into(),
            ask.login(&f.d, &password(&f.d), &f.d).await,
            deny,
        ),
        (
            "user, own id".into(),
            ask.login("uid-owner", &owner, "uid-owner-phone").await,
            allow,
        ),
        (
            "user, a device's id".into(),
            ask.login("uid-owner", &owner, &f.a).await,
            deny,
        ),
        (
            "user, the service account's id".into(),
            ask.login("uid-owner", &owner, SERVICE).await,
            deny,
        ),
        (
            "service account".into(),
            ask.login(SERVICE, &password(SERVICE), SERVICE).await,
            allow,
        ),
        (
            "service account, wrong password".into(),
            ask.login(SERVICE, "wrong", SERVICE).await,
            deny,
        ),
        ("empty username".into(), ask.login("", "x", "x").await, deny),
        (
            "wildcard username".into(),
            ask.login("a#", "x", "a#").await,
            deny,
        ),
    ];
    for (case, readings, expected) in cases {
        all_read(readings, expected, &case, &mut wrong);
    }
    assert_none_wrong(&wrong);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_dialect_grants_the_acl_of_design_section_3() {
    let app = App::start().await;
    let f = fleet(&app).await;
    let ask = Ask { app: &app };
    let mut wrong = Vec::new();
    let (allow, deny) = (Reading::Allow, Reading::Deny);
    let (a, b) = (f.a.as_str(), f.b.as_str());
    let cases: Vec<(&str, &str, String, bool, Reading)> = vec![
        (a, a, format!("vesper/{a}/data"), true, allow),
        (a, a, format!("vesper/{a}/status"), true, allow),
        (a, a, format!("vesper/{a}/control"), false, allow),
        (a, a, format!("vesper/{b}/data"), true, deny),
        (a, a, format!("vesper/{a}/control"), true, deny),
        (a, a, format!("vesper/{b}/control"), false, deny),
        (a, a, "vesper/+/data".into(), false, deny),
        (a, a, "#".into(), false, deny),
        (a, b, format!("vesper/{a}/data"), true, deny),
        (&f.c, &f.c, format!("vesper/{}/data", f.c), true, deny),
        (&f.d, &f.d, format!("vesper/{}/data", f.d), true, deny),
        (
            "uid-owner",
            "uid-owner",
            format!("vesper/{a}/control"),
            true,
            allow,
        ),
        (
            "uid-owner",
            "uid-owner",
            format!("vesper/{a}/data"),
            false,
            allow,
        ),
        (
            "uid-family",
            "uid-family-1",
            format!("vesper/{a}/status"),
            false,
            allow,
        ),
        (
            "uid-owner",
            "uid-owner",
            format!("vesper/{b}/data"),
            false,
            deny,
        ),
        (
            "uid-owner",
            "uid-owner",
            "vesper/+/data".into(),
            false,
            deny,
        ),
        (
            "uid-stranger",
            "uid-stranger",
            format!("vesper/{a}/data"),
            false,
            deny,
        ),
        (SERVICE, SERVICE, "vesper/+/data".into(), false, allow),
        (SERVICE, SERVICE, format!("vesper/{a}/control"), true, deny),
    ];
    for (username, client_id, topic, publish, expected) in cases {
        let case = format!(
            "{username} as {client_id} {} {topic}",
            if publish { "publishes" } else { "subscribes" }
        );
        all_read(
            ask.topic(username, client_id, &topic, publish).await,
            expected,
            &case,
            &mut wrong,
        );
    }
    assert_none_wrong(&wrong);
    app.stop().await;
}

/// RabbitMQ's resource checks: only the exchange the MQTT plugin publishes to and the
/// subscription queues of a client id the login owns.
#[tokio::test(flavor = "multi_thread")]
async fn rabbitmq_resources_are_the_mqtt_plugins_own() {
    let app = App::start().await;
    let f = fleet(&app).await;
    let ask = Ask { app: &app };
    // As the MQTT plugin asks: with the session's client id (here the login's own), and as
    // an AMQP client (the backend's consumer) asks: without one.
    let resource = |username: &str, kind: &str, name: &str, permission: &str| {
        wire::rabbitmq_resource(username, kind, name, permission, Some(username))
    };
    let amqp = |username: &str, kind: &str, name: &str, permission: &str| {
        wire::rabbitmq_resource(username, kind, name, permission, None)
    };
    let own_queue = format!("mqtt-subscription-{}qos1", f.a);
    let other_queue = format!("mqtt-subscription-{}qos1", f.b);
    let cases = [
        (
            resource(&f.a, "exchange", "amq.topic", "write"),
            Reading::Allow,
        ),
        (
            resource(&f.a, "exchange", "amq.topic", "read"),
            Reading::Allow,
        ),
        (
            resource(&f.a, "exchange", "amq.topic", "configure"),
            Reading::Deny,
        ),
        (
            resource(&f.a, "exchange", "amq.fanout", "write"),
            Reading::Deny,
        ),
        (
            resource(&f.a, "queue", &own_queue, "configure"),
            Reading::Allow,
        ),
        (resource(&f.a, "queue", &own_queue, "read"), Reading::Allow),
        (resource(&f.a, "queue", &other_queue, "read"), Reading::Deny),
        (
            resource(&f.a, "queue", "vesper-backend.heartbeats", "read"),
            Reading::Deny,
        ),
        (
            amqp(SERVICE, "queue", "vesper-backend.heartbeats", "configure"),
            Reading::Allow,
        ),
        (
            amqp(SERVICE, "queue", "vesper-backend", "read"),
            Reading::Allow,
        ),
        (
            amqp(SERVICE, "queue", "vesper-backendx", "read"),
            Reading::Deny,
        ),
        // Another login's client id on its own queue and on the shared exchange.
        (
            wire::rabbitmq_resource(&f.a, "queue", &own_queue, "read", Some(&f.b)),
            Reading::Deny,
        ),
        (
            wire::rabbitmq_resource(&f.a, "exchange", "amq.topic", "write", Some(SERVICE)),
            Reading::Deny,
        ),
        (
            resource(
                "uid-owner",
                "queue",
                "mqtt-subscription-uid-owner-phoneqos0",
                "read",
            ),
            Reading::Allow,
        ),
        (
            resource("uid-owner", "queue", &own_queue, "read"),
            Reading::Deny,
        ),
    ];
    let mut wrong = Vec::new();
    for (body, expected) in cases {
        let reading = ask.rabbitmq("/mqtt/rabbitmq/resource", body.clone()).await;
        if reading != expected {
            wrong.push(format!("{body}: {reading:?}, expected {expected:?}"));
        }
    }
    for (vhost, expected) in [("/", Reading::Allow), ("other", Reading::Deny)] {
        let body = wire::rabbitmq_form(&[
            ("username", &f.a),
            ("vhost", vhost),
            ("ip", "127.0.0.1"),
            ("tags", ""),
        ]);
        let reading = ask.rabbitmq("/mqtt/rabbitmq/vhost", body).await;
        if reading != expected {
            wrong.push(format!("vhost {vhost}: {reading:?}, expected {expected:?}"));
        }
    }
    // http_method = get: the same questions in the query string.
    let query = wire::rabbitmq_topic_check(&f.a, &f.a, &format!("vesper/{}/data", f.a), true);
    let r = app
        .client
        .get(format!("{}/mqtt/rabbitmq/topic?{query}", app.auth))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let reading = wire::rabbitmq_reads(status, &r.text().await.unwrap());
    if reading != Reading::Allow {
        wrong.push(format!("GET topic check: {reading:?}"));
    }
    assert_none_wrong(&wrong);
    app.stop().await;
}

/// Hostile or malformed requests: refused in the form each broker reads as a refusal, never as
/// "no opinion" (EMQX would then allow) and never as a server error.
#[tokio::test(flavor = "multi_thread")]
async fn malformed_requests_are_refusals_each_broker_reads_as_such() {
    let app = App::start().await;
    let f = fleet(&app).await;
    let ask = Ask { app: &app };
    let a = f.a.as_str();
    let mut wrong = Vec::new();
    let emqx_cases = [
        (
            "/mqtt/emqx/authz",
            json!({ "username": a, "clientid": a, "topic": format!("vesper/{a}/data"), "action": "all" }),
        ),
        (
            "/mqtt/emqx/authz",
            json!({ "username": a, "clientid": a, "topic": format!("vesper/{a}/data"), "action": "publish", "qos": "7" }),
        ),
        (
            "/mqtt/emqx/authz",
            json!({ "username": a, "clientid": a, "action": "publish" }),
        ),
        ("/mqtt/emqx/authz", json!("not an object")),
        ("/mqtt/emqx/authn", json!({ "username": a, "clientid": a })),
        ("/mqtt/emqx/authn", json!([1, 2, 3])),
    ];
    for (path, body) in emqx_cases {
        let reading = ask.emqx(path, body.clone()).await;
        if reading != Reading::Deny {
            wrong.push(format!("emqx {path} {body}: {reading:?}"));
        }
    }
    // A bare (unquoted) template placeholder: numbers and booleans are taken too.
    let bare = json!({ "username": a, "clientid": a, "topic": format!("vesper/{a}/data"), "action": "publish", "qos": 1, "retain": true });
    if ask.emqx("/mqtt/emqx/authz", bare).await != Reading::Allow {
        wrong.push("emqx: an unquoted qos and retain refused".into());
    }
    let (status, _) = ask
        .post("/mqtt/emqx/authz", "application/json", "{".into())
        .await;
    if status != 200 {
        wrong.push(format!(
            "emqx: a broken body answered {status}, which EMQX reads as ignore"
        ));
    }
    let verne_cases = [
        ("auth_on_register", json!({ "username": a })),
        (
            "auth_on_publish",
            json!({ "username": a, "client_id": a, "topic": format!("vesper/{a}/data"), "qos": 9 }),
        ),
        (
            "auth_on_subscribe",
            json!({ "username": a, "client_id": a, "topics": [] }),
        ),
        ("auth_on_deliver", json!({ "username": a })),
        ("", json!({})),
    ];
    for (hook, body) in verne_cases {
        let (reading, text) = ask.vernemq(hook, body.clone()).await;
        if reading != Reading::Deny {
            wrong.push(format!("vernemq {hook} {body}: {reading:?} ({text})"));
        }
    }
    // One forbidden filter among allowed ones: only that one refused.
    let filters = [format!("vesper/{a}/control"), "#".to_owned()];
    let filters: Vec<&str> = filters.iter().map(String::as_str).collect();
    let (reading, text) = ask
        .vernemq("auth_on_subscribe", wire::vernemq_subscribe(a, a, &filters))
        .await;
    if reading != Reading::Allow || wire::vernemq_granted(&text, &filters) != [1, 128] {
        wrong.push(format!("vernemq: a mixed subscribe answered {text}"));
    }
    for (path, body) in [
        ("/mqtt/rabbitmq/user", "username=%ZZ&password=x".to_owned()),
        ("/mqtt/rabbitmq/topic", "username=a&username=b".to_owned()),
        (
            "/mqtt/rabbitmq/topic",
            wire::rabbitmq_form(&[
                ("username", a),
                ("vhost", "/"),
                ("resource", "topic"),
                ("name", "amq.topic"),
                ("permission", "configure"),
                ("routing_key", "vesper.x.data"),
            ]),
        ),
        (
            "/mqtt/rabbitmq/user",
            wire::rabbitmq_form(&[("username", a), ("password", &password(a))]),
        ),
    ] {
        let reading = ask.rabbitmq(path, body.clone()).await;
        if reading != Reading::Deny {
            wrong.push(format!("rabbitmq {path} {body}: {reading:?}"));
        }
    }
    assert_none_wrong(&wrong);
    app.stop().await;
}

/// One random question: who, with which client id and password, publishing or subscribing to
/// which topic.
#[derive(Debug, Clone)]
struct Case {
    username: String,
    client_id: String,
    right_password: bool,
    topic: String,
    publish: bool,
}

/// Draws a case from the names and shapes that matter to the rules. Topics avoid `.` and `*`:
/// in RabbitMQ a `.` is a level separator of the routing key, so `vesper.SN.data` is the same
/// resource as `vesper/SN/data` there, not a different topic (see the backend chapter).
fn draw(rng: &mut StdRng, f: &Fleet) -> Case {
    let devices = [f.a.as_str(), f.b.as_str(), f.c.as_str(), f.d.as_str()];
    let logins = [
        f.a.as_str(),
        f.b.as_str(),
        f.c.as_str(),
        f.d.as_str(),
        "uid-owner",
        "uid-family",
        "uid-stranger",
        SERVICE,
        "PV-26A18-BC02R-X7KQ",
        "a+b",
    ];
    let username = logins[rng.random_range(0..logins.len())].to_owned();
    let other = logins[rng.random_range(0..logins.len())];
    let client_id = match rng.random_range(0..6) {
        0 | 1 => username.clone(),
        2 => format!("{username}-{}", rng.random_range(0..1000)),
        3 => other.to_owned(),
        4 => String::new(),
        _ => format!("{username}-{}", "x".repeat(rng.random_range(20..45))),
    };
    let device = devices[rng.random_range(0..devices.len())];
    let level = match rng.random_range(0..8) {
        0 => "+",
        1 => "#",
        _ => device,
    };
    let topic = match rng.random_range(0..10) {
        0..=2 => format!("vesper/{level}/data"),
        3 => format!("vesper/{level}/status"),
        4 | 5 => format!("vesper/{level}/control"),
        6 => "$CONTROL/vesper/v1".to_owned(),
        7 => format!("vesper/{level}/#"),
        8 => format!("$share/vesper-backend/vesper/{level}/data"),
        _ => ["#", "vesper", "", "vesper//data"][rng.random_range(0..4)].to_owned(),
    };
    Case {
        username,
        client_id,
        right_password: rng.random_range(0..5) != 0,
        topic,
        publish: rng.random_bool(0.5),
    }
}

/// 10,000 random questions: go-auth, RabbitMQ, EMQX and VerneMQ all give the same login and the
/// same topic decision for every one (each read as its broker reads it), and none answers
/// "no opinion" or an error.
#[tokio::test(flavor = "multi_thread")]
async fn the_four_dialects_agree_on_10000_random_questions() {
    let app = App::start().await;
    let f = fleet(&app).await;
    let seed: u64 = std::env::var("VESPER_AGREEMENT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    let mut rng = StdRng::seed_from_u64(seed);
    let cases: Vec<Case> = (0..10_000).map(|_| draw(&mut rng, &f)).collect();
    let passwords: std::collections::HashMap<String, String> = cases
        .iter()
        .map(|c| (c.username.clone(), password(&c.username)))
        .collect();
    let ask = Ask { app: &app };
    let outcomes: Vec<(Case, [Reading; 4], [Reading; 4])> = futures_util::stream::iter(cases)
        .map(|case| {
            let (ask, passwords) = (&ask, &passwords);
            async move {
                let password = if case.right_password {
                    passwords[&case.username].clone()
                } else {
                    "wrong-password".to_owned()
                };
                let login = ask.login(&case.username, &password, &case.client_id).await;
                let topic = ask
                    .topic(&case.username, &case.client_id, &case.topic, case.publish)
                    .await;
                (case, login, topic)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut disagreements = Vec::new();
    let (mut logins_allowed, mut topics_allowed) = (0, 0);
    for (case, login, topic) in &outcomes {
        for (what, readings) in [("login", login), ("topic", topic)] {
            let agreed = readings.iter().all(|r| *r == readings[0]);
            let decided = readings
                .iter()
                .all(|r| matches!(r, Reading::Allow | Reading::Deny));
            if !agreed || !decided {
                disagreements.push(format!("{what} {case:?}: {readings:?}"));
            }
        }
        logins_allowed += usize::from(login[0] == Reading::Allow);
        topics_allowed += usize::from(topic[0] == Reading::Allow);
    }
    assert!(
        disagreements.is_empty(),
        "seed {seed}: {} of 10,000 cases where the dialects disagree:\n{}",
        disagreements.len(),
        disagreements
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The draw reaches both answers often, or agreement would prove little.
    assert!(
        logins_allowed > 1_000 && logins_allowed < 9_000,
        "seed {seed}: {logins_allowed} logins allowed"
    );
    assert!(
        topics_allowed > 100 && topics_allowed < 9_900,
        "seed {seed}: {topics_allowed} topic checks allowed"
    );
    app.stop().await;
}
