//! The broker's questions over real HTTP, in every params and response mode: logins, superuser,
//! ACL, and hostile bodies. Never a 5xx, never a wrong allow.

use serde_json::json;

use vesper::goauth::{AuthParams, ParamsMode, ResponseMode};

use crate::backend_support::{App, SERVICE, device_password, service_password, user_token};

const MODES: [(ParamsMode, ResponseMode); 6] = [
    (ParamsMode::Json, ResponseMode::Status),
    (ParamsMode::Json, ResponseMode::Json),
    (ParamsMode::Json, ResponseMode::Text),
    (ParamsMode::Form, ResponseMode::Status),
    (ParamsMode::Form, ResponseMode::Json),
    (ParamsMode::Form, ResponseMode::Text),
];

/// A login whose client id is the username (what a device or phone sends by default).
fn login(username: &str, password: &str) -> AuthParams {
    login_as(username, password, username)
}

fn login_as(username: &str, password: &str, client_id: &str) -> AuthParams {
    AuthParams {
        username: Some(username.into()),
        password: Some(password.into()),
        clientid: Some(client_id.into()),
        ..Default::default()
    }
}

/// An ACL question as go-auth sends it: with the session's client id, here the login's own.
fn acl(username: &str, topic: &str, acc: i64) -> AuthParams {
    AuthParams {
        username: Some(username.into()),
        topic: Some(topic.into()),
        clientid: Some(username.into()),
        acc: Some(acc),
        ..Default::default()
    }
}

/// Devices A and B (A owned by uid-owner, used by uid-family), C revoked (also owned), D unknown.
pub struct Fleet {
    pub a: String,
    pub b: String,
    pub c: String,
    pub d: String,
}

pub async fn fleet(app: &App) -> Fleet {
    let (_, sns) = app.batch(3).await;
    let (a, b, c) = (sns[0].clone(), sns[1].clone(), sns[2].clone());
    for sn in [&a, &c] {
        let r = app
            .post(
                &format!("/manufacturing/devices/{sn}/users"),
                &app.admin,
                json!({ "owner": "uid-owner", "users_list": ["uid-family"] }),
            )
            .await;
        assert!(r.status().is_success());
    }
    let r = app
        .post(
            &format!("/manufacturing/devices/{c}/status"),
            &app.admin,
            json!({ "status": "revoked" }),
        )
        .await;
    assert!(r.status().is_success());
    let d = {
        let mut d = a.clone();
        d.replace_range(
            15..,
            if &a[15..] == "ZZZZZ" {
                "YYYYY"
            } else {
                "ZZZZZ"
            },
        );
        d
    };
    Fleet { a, b, c, d }
}

async fn check(app: &App, route: &str, cases: &[(String, AuthParams, bool)]) {
    let mut wrong = Vec::new();
    for (params_mode, mode) in MODES {
        for (name, params, expected) in cases {
            let (status, read) = app.ask(route, params, params_mode, mode).await;
            if status >= 500 {
                wrong.push(format!("{params_mode:?}/{mode}: {name}: answered {status}"));
            } else if read != Ok(*expected) {
                wrong.push(format!("{params_mode:?}/{mode}: {name}: expected {expected}, go-auth reads {read:?} (status {status})"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} wrong answers:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn logins_of_devices_users_and_the_service_account() {
    let app = App::start().await;
    let f = fleet(&app).await;
    let owner_token = user_token("uid-owner", "test-key", json!({}));
    let now = jsonwebtoken::get_current_timestamp();
    let hs256 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({ "sub": "uid-owner", "iss": crate::backend_support::ISSUER, "aud": crate::backend_support::AUDIENCE, "exp": now + 60 }),
        &jsonwebtoken::EncodingKey::from_secret(b"guess"),
    )
    .unwrap();
    let cases: Vec<(String, AuthParams, bool)> = vec![
        (
            "device, right password".into(),
            login(&f.a, &device_password(&f.a)),
            true,
        ),
        (
            "device, another device's password".into(),
            login(&f.a, &device_password(&f.b)),
            false,
        ),
        (
            "device, upper-case password".into(),
            login(&f.a, &device_password(&f.a).to_uppercase()),
            false,
        ),
        ("device, empty password".into(), login(&f.a, ""), false),
        (
            "device, no password".into(),
            AuthParams {
                username: Some(f.a.clone()),
                ..Default::default()
            },
            false,
        ),
        (
            "revoked device, right password".into(),
            login(&f.c, &device_password(&f.c)),
            false,
        ),
        (
            "unknown device, its derived password".into(),
            login(&f.d, &device_password(&f.d)),
            false,
        ),
        (
            "malformed serial number".into(),
            login("PV-26A18-BC02R-X7KQ0", "25fd3d9acfa670d8cb7a309e440d2ef1"),
            false,
        ),
        (
            "service account".into(),
            login(SERVICE, &service_password()),
            true,
        ),
        (
            "service account, a device password".into(),
            login(SERVICE, &device_password(&f.a)),
            false,
        ),
        (
            "user with a valid token".into(),
            login("uid-owner", &owner_token),
            true,
        ),
        (
            "user with someone else's token".into(),
            login("uid-family", &owner_token),
            false,
        ),
        (
            "user, expired token".into(),
            login(
                "uid-owner",
                &user_token(
                    "uid-owner",
                    "test-key",
                    json!({ "exp": now - 3600, "iat": now - 7200 }),
                ),
            ),
            false,
        ),
        (
            "user, wrong audience".into(),
            login(
                "uid-owner",
                &user_token("uid-owner", "test-key", json!({ "aud": "other-project" })),
            ),
            false,
        ),
        (
            "user, wrong issuer".into(),
            login(
                "uid-owner",
                &user_token(
                    "uid-owner",
                    "test-key",
                    json!({ "iss": "https://evil.example" }),
                ),
            ),
            false,
        ),
        (
            "user, token signed by an unknown key".into(),
            login(
                "uid-owner",
                &user_token("uid-owner", "other-key", json!({})),
            ),
            false,
        ),
        (
            "user, HS256 token".into(),
            login("uid-owner", &hs256),
            false,
        ),
        (
            "user, garbage token".into(),
            login("uid-owner", "not.a.jwt"),
            false,
        ),
        (
            "username with +".into(),
            login("uid+owner", &owner_token),
            false,
        ),
        (
            "client id with #".into(),
            AuthParams {
                clientid: Some("c#1".into()),
                ..login(&f.a, &device_password(&f.a))
            },
            false,
        ),
        (
            "no username".into(),
            AuthParams {
                password: Some("x".into()),
                ..Default::default()
            },
            false,
        ),
        (
            "username with NUL".into(),
            login(&format!("{}\0", f.a), &device_password(&f.a)),
            false,
        ),
        (
            "oversized password".into(),
            login(&f.a, &"a".repeat(5000)),
            false,
        ),
    ];
    check(&app, "user", &cases).await;
    app.stop().await;
}

/// DESIGN.md section 3, "Client ids": a login is bound to its client id, so that nobody can take
/// over another device's session, or the backend's heartbeat listener's.
#[tokio::test(flavor = "multi_thread")]
async fn a_login_is_bound_to_its_client_id() {
    let app = App::start().await;
    let f = fleet(&app).await;
    let (pa, owner) = (
        device_password(&f.a),
        user_token("uid-owner", "test-key", json!({})),
    );
    let service = service_password();
    let listener = format!("{SERVICE}-heartbeats");
    let case = |name: &str, params: AuthParams, allow: bool| (name.to_owned(), params, allow);
    let cases = vec![
        case("device, own serial number", login_as(&f.a, &pa, &f.a), true),
        case(
            "device, SN-suffix",
            login_as(&f.a, &pa, &format!("{}-ota_2", f.a)),
            true,
        ),
        case(
            "device, 23-character suffix",
            login_as(&f.a, &pa, &format!("{}-{}", f.a, "x".repeat(23))),
            true,
        ),
        case(
            "device, 24-character suffix",
            login_as(&f.a, &pa, &format!("{}-{}", f.a, "x".repeat(24))),
            false,
        ),
        case("device A as device B", login_as(&f.a, &pa, &f.b), false),
        case(
            "device A as B with a suffix",
            login_as(&f.a, &pa, &format!("{}-x", f.b)),
            false,
        ),
        case(
            "device as the heartbeat listener",
            login_as(&f.a, &pa, &listener),
            false,
        ),
        case(
            "device as the service account",
            login_as(&f.a, &pa, SERVICE),
            false,
        ),
        case("device, empty client id", login_as(&f.a, &pa, ""), false),
        case(
            "device, no client id",
            AuthParams {
                clientid: None,
                ..login(&f.a, &pa)
            },
            false,
        ),
        case(
            "device, wildcard in the suffix",
            login_as(&f.a, &pa, &format!("{}-+", f.a)),
            false,
        ),
        case(
            "device, slash in the suffix",
            login_as(&f.a, &pa, &format!("{}-a/b", f.a)),
            false,
        ),
        case(
            "device, NUL in the suffix",
            login_as(&f.a, &pa, &format!("{}-a\0", f.a)),
            false,
        ),
        case(
            "device, empty suffix",
            login_as(&f.a, &pa, &format!("{}-", f.a)),
            false,
        ),
        case(
            "user, own uid",
            login_as("uid-owner", &owner, "uid-owner"),
            true,
        ),
        case(
            "user, uid-suffix",
            login_as("uid-owner", &owner, "uid-owner-phone_7"),
            true,
        ),
        case(
            "user, 41-character suffix",
            login_as(
                "uid-owner",
                &owner,
                &format!("uid-owner-{}", "x".repeat(41)),
            ),
            false,
        ),
        case(
            "user as the device it owns",
            login_as("uid-owner", &owner, &f.a),
            false,
        ),
        case(
            "user as the heartbeat listener",
            login_as("uid-owner", &owner, &listener),
            false,
        ),
        case(
            "user, over 64 bytes",
            login_as(
                "uid-owner",
                &owner,
                &format!("uid-owner-{}", "x".repeat(60)),
            ),
            false,
        ),
        case(
            "service, own name",
            login_as(SERVICE, &service, SERVICE),
            true,
        ),
        case(
            "service, the heartbeat listener",
            login_as(SERVICE, &service, &listener),
            true,
        ),
        case(
            "service as a device",
            login_as(SERVICE, &service, &f.a),
            false,
        ),
        case(
            "service, another name",
            login_as(SERVICE, &service, "watcher"),
            false,
        ),
    ];
    check(&app, "user", &cases).await;
    app.stop().await;
}

/// A user whose uid is a prefix of the service account's name cannot reach the listener's id
/// through the suffix rule.
#[tokio::test(flavor = "multi_thread")]
async fn a_user_named_like_a_prefix_cannot_take_reserved_ids() {
    let app = App::start().await;
    let (_, sns) = app.batch(1).await;
    let sn = &sns[0];
    let prefix = &sn[..14];
    let token = user_token("vesper", "test-key", json!({}));
    let device_like = user_token(prefix, "test-key", json!({}));
    let cases = vec![
        (
            "uid vesper, own id".to_owned(),
            login_as("vesper", &token, "vesper-phone"),
            true,
        ),
        (
            "uid vesper, the listener's id".to_owned(),
            login_as("vesper", &token, &format!("{SERVICE}-heartbeats")),
            false,
        ),
        (
            "uid that prefixes a serial number".to_owned(),
            login_as(prefix, &device_like, sn),
            false,
        ),
    ];
    check(&app, "user", &cases).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nobody_is_a_superuser_unless_configured() {
    let app = App::start().await;
    let f = fleet(&app).await;

    let superuser: Vec<(String, AuthParams, bool)> = vec![
        (
            "service account (not a superuser)".into(),
            AuthParams {
                username: Some(SERVICE.into()),
                ..Default::default()
            },
            false,
        ),
        (
            "device".into(),
            AuthParams {
                username: Some(f.a.clone()),
                ..Default::default()
            },
            false,
        ),
        (
            "user".into(),
            AuthParams {
                username: Some("uid-owner".into()),
                ..Default::default()
            },
            false,
        ),
        ("nobody".into(), AuthParams::default(), false),
    ];
    check(&app, "superuser", &superuser).await;
    app.stop().await;

    let named = App::start_with_serve("superusers = [\"ops-root\"]\n").await;
    let cases = vec![
        (
            "a configured superuser".to_owned(),
            AuthParams {
                username: Some("ops-root".into()),
                ..Default::default()
            },
            true,
        ),
        (
            "the service account".to_owned(),
            AuthParams {
                username: Some(SERVICE.into()),
                ..Default::default()
            },
            false,
        ),
    ];
    check(&named, "superuser", &cases).await;
    named.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn acl_for_devices_owners_strangers_and_the_service() {
    let app = App::start().await;
    let Fleet { a, b, c, d } = fleet(&app).await;
    let t = |sn: &str, kind: &str| format!("vesper/{sn}/{kind}");
    let case = |name: &str, user: &str, topic: String, acc: i64, allow: bool| {
        (name.to_owned(), acl(user, &topic, acc), allow)
    };
    let cases = vec![
        case("device publishes own data", &a, t(&a, "data"), 2, true),
        case("device publishes own status", &a, t(&a, "status"), 2, true),
        case(
            "device subscribes own control",
            &a,
            t(&a, "control"),
            4,
            true,
        ),
        case("device receives own control", &a, t(&a, "control"), 1, true),
        case(
            "device subscribes own control via $share",
            &a,
            format!("$share/g/{}", t(&a, "control")),
            4,
            true,
        ),
        case(
            "device publishes own control",
            &a,
            t(&a, "control"),
            2,
            false,
        ),
        case("device subscribes own data", &a, t(&a, "data"), 4, false),
        case(
            "device publishes another's data",
            &a,
            t(&b, "data"),
            2,
            false,
        ),
        case(
            "device subscribes another's control",
            &a,
            t(&b, "control"),
            4,
            false,
        ),
        case(
            "device subscribes vesper/+/data",
            &a,
            "vesper/+/data".into(),
            4,
            false,
        ),
        case(
            "device subscribes vesper/#",
            &a,
            "vesper/#".into(),
            4,
            false,
        ),
        case(
            "device subscribes its own #",
            &a,
            format!("vesper/{a}/#"),
            4,
            false,
        ),
        case(
            "device subscribes + in its own control",
            &a,
            format!("vesper/{a}/+"),
            4,
            false,
        ),
        case(
            "device subscribes $share/g/vesper/+/control",
            &a,
            "$share/g/vesper/+/control".into(),
            4,
            false,
        ),
        case(
            "revoked device publishes own data",
            &c,
            t(&c, "data"),
            2,
            false,
        ),
        case(
            "unknown device publishes own data",
            &d,
            t(&d, "data"),
            2,
            false,
        ),
        case("owner subscribes data", "uid-owner", t(&a, "data"), 4, true),
        case(
            "owner receives status",
            "uid-owner",
            t(&a, "status"),
            1,
            true,
        ),
        case(
            "owner publishes control",
            "uid-owner",
            t(&a, "control"),
            2,
            true,
        ),
        case("owner publishes data", "uid-owner", t(&a, "data"), 2, false),
        case(
            "owner subscribes another device",
            "uid-owner",
            t(&b, "data"),
            4,
            false,
        ),
        case(
            "owner subscribes a revoked device",
            "uid-owner",
            t(&c, "data"),
            4,
            false,
        ),
        case(
            "owner subscribes vesper/+/data",
            "uid-owner",
            "vesper/+/data".into(),
            4,
            false,
        ),
        case(
            "family user subscribes data",
            "uid-family",
            t(&a, "data"),
            4,
            true,
        ),
        case(
            "stranger subscribes data",
            "uid-stranger",
            t(&a, "data"),
            4,
            false,
        ),
        case(
            "stranger publishes control",
            "uid-stranger",
            t(&a, "control"),
            2,
            false,
        ),
        case(
            "service subscribes vesper/+/data",
            SERVICE,
            "vesper/+/data".into(),
            4,
            true,
        ),
        case(
            "service subscribes vesper/+/status",
            SERVICE,
            "vesper/+/status".into(),
            4,
            true,
        ),
        case("service receives data", SERVICE, t(&a, "data"), 1, true),
        case(
            "service publishes control",
            SERVICE,
            t(&a, "control"),
            2,
            false,
        ),
        case(
            "service subscribes vesper/#",
            SERVICE,
            "vesper/#".into(),
            4,
            false,
        ),
        case("acc 3", &a, t(&a, "data"), 3, false),
        case("acc 8", &a, t(&a, "control"), 8, false),
        case(
            "dot-dot topic",
            &a,
            format!("vesper/{a}/../{b}/data"),
            2,
            false,
        ),
        case("NUL in topic", &a, format!("{}\0", t(&a, "data")), 2, false),
        case(
            "overlong topic",
            &a,
            format!("{}/{}", t(&a, "data"), "x".repeat(3000)),
            2,
            false,
        ),
        case(
            "malformed SN as username",
            "PV-26A18-BC02R-X7KQ0",
            "vesper/PV-26A18-BC02R-X7KQ0/data".into(),
            2,
            false,
        ),
        case("$SYS", SERVICE, "$SYS/broker/clients".into(), 4, false),
        case(
            "service subscribes a shared data subscription",
            SERVICE,
            "$share/vesper-backend/vesper/+/data".into(),
            4,
            true,
        ),
        case(
            "service publishes a plugin command",
            SERVICE,
            "$CONTROL/vesper/v1".into(),
            2,
            true,
        ),
        case(
            "service subscribes the plugin's topic",
            SERVICE,
            "$CONTROL/vesper/v1".into(),
            4,
            false,
        ),
        case(
            "device publishes a plugin command",
            &a,
            "$CONTROL/vesper/v1".into(),
            2,
            false,
        ),
        case(
            "owner publishes a plugin command",
            "uid-owner",
            "$CONTROL/vesper/v1".into(),
            2,
            false,
        ),
        case("service subscribes #", SERVICE, "#".into(), 4, false),
    ];
    check(&app, "acl", &cases).await;
    let no_acc: Vec<(String, AuthParams, bool)> = vec![(
        "no acc".into(),
        AuthParams {
            acc: None,
            ..acl(&a, &t(&a, "data"), 2)
        },
        false,
    )];
    check(&app, "acl", &no_acc).await;
    // The client id binding holds on every question that carries one: a topic check with
    // another login's client id is denied, even for a topic the login may use.
    let foreign_id: Vec<(String, AuthParams, bool)> = vec![
        (
            "device's own topic with another device's client id".into(),
            AuthParams {
                clientid: Some(b.clone()),
                ..acl(&a, &t(&a, "data"), 2)
            },
            false,
        ),
        (
            "owner with the service account's client id".into(),
            AuthParams {
                clientid: Some(SERVICE.into()),
                ..acl("uid-owner", &t(&a, "data"), 4)
            },
            false,
        ),
        (
            "device with its own id and a suffix".into(),
            AuthParams {
                clientid: Some(format!("{a}-ota")),
                ..acl(&a, &t(&a, "data"), 2)
            },
            true,
        ),
    ];
    check(&app, "acl", &foreign_id).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_bodies_are_denied_never_errors() {
    let app = App::start().await;
    let (_, sns) = app.batch(1).await;
    let good = format!(
        r#"{{"username":"{}","password":"{}","clientid":"{}","topic":"vesper/{}/data","acc":2}}"#,
        sns[0],
        device_password(&sns[0]),
        sns[0],
        sns[0]
    );
    let bodies: Vec<(&str, Option<&str>, Vec<u8>)> = vec![
        ("empty json", Some("application/json"), vec![]),
        ("truncated json", Some("application/json"), b"{".to_vec()),
        ("json array", Some("application/json"), b"[1,2]".to_vec()),
        ("json string", Some("application/json"), b"\"x\"".to_vec()),
        (
            "wrong types",
            Some("application/json"),
            br#"{"username":5,"password":true}"#.to_vec(),
        ),
        (
            "acc as words",
            Some("application/json"),
            br#"{"username":"u","topic":"t","acc":"four"}"#.to_vec(),
        ),
        (
            "oversized",
            Some("application/json"),
            format!(r#"{{"username":"{}"}}"#, "u".repeat(40_000)).into_bytes(),
        ),
        (
            "non-UTF-8 json",
            Some("application/json"),
            b"{\"username\":\"\xff\xfe\"}".to_vec(),
        ),
        (
            "non-UTF-8 form",
            Some("application/x-www-form-urlencoded"),
            b"username=\xff&password=x".to_vec(),
        ),
        ("text/plain", Some("text/plain"), good.clone().into_bytes()),
        ("xml", Some("application/xml"), b"<user/>".to_vec()),
        ("no content type, garbage", None, b"\x00\x01\x02".to_vec()),
        (
            "deeply nested json",
            Some("application/json"),
            format!("{}{}", "[".repeat(5000), "]".repeat(5000)).into_bytes(),
        ),
    ];
    for route in ["user", "acl", "superuser"] {
        for (name, content_type, body) in &bodies {
            for mode in [ResponseMode::Status, ResponseMode::Json, ResponseMode::Text] {
                let mut request = app
                    .client
                    .post(format!(
                        "{}/mqtt/auth/{route}?response_mode={mode}",
                        app.auth
                    ))
                    .body(body.clone());
                if let Some(ct) = content_type {
                    request = request.header("content-type", *ct);
                }
                let response = request.send().await.unwrap();
                let status = response.status().as_u16();
                let read = crate::goauth_wire::go_auth_reads(
                    &mode.to_string(),
                    status,
                    &response.text().await.unwrap(),
                )
                .as_result();
                assert!(
                    (400..500).contains(&status),
                    "{route} {name} {mode}: status {status}"
                );
                assert_eq!(read, Ok(false), "{route} {name} {mode}");
            }
        }
    }
    // The same good request works with GET and PUT, as go-auth's http_method allows.
    for method in [
        reqwest::Method::GET,
        reqwest::Method::PUT,
        reqwest::Method::POST,
    ] {
        let r = app
            .client
            .request(method.clone(), format!("{}/mqtt/auth/user", app.auth))
            .header("content-type", "application/json")
            .body(good.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{method}");
    }
    // The MQTT routes are not on the public API listener.
    let r = app
        .client
        .post(format!("{}/mqtt/auth/user", app.api))
        .header("content-type", "application/json")
        .body(good)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registry_that_cannot_be_read_is_an_error_not_an_allow() {
    let app = App::start().await;
    let (_, sns) = app.batch(1).await;
    let params = login(&sns[0], &device_password(&sns[0]));
    assert_eq!(
        app.ask("user", &params, ParamsMode::Json, ResponseMode::Status)
            .await
            .1,
        Ok(true)
    );
    // Take the database away underneath the running server.
    let db = app.registry().path().to_owned();
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("PRAGMA foreign_keys = OFF; ALTER TABLE devices RENAME TO devices_gone;")
        .unwrap();
    for mode in [ResponseMode::Status, ResponseMode::Json, ResponseMode::Text] {
        let (status, read) = app.ask("user", &params, ParamsMode::Json, mode).await;
        assert_eq!(
            status, 500,
            "{mode}: the broker must drop the client, not let it in"
        );
        assert!(read.is_err());
        let (status, _) = app
            .ask(
                "acl",
                &acl(&sns[0], &format!("vesper/{}/data", sns[0]), 2),
                ParamsMode::Form,
                mode,
            )
            .await;
        assert_eq!(status, 500);
    }
    let health = app
        .client
        .get(format!("{}/healthz", app.api))
        .send()
        .await
        .unwrap();
    assert_eq!(
        health.status(),
        200,
        "the database file itself still answers"
    );
    app.stop().await;
}
