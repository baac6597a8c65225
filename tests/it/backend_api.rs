//! The manufacturing API over real HTTP: tokens and roles, batches under concurrency, the state
//! machine, flash reports, assignment, NVS images, firmware, audit, stats, OpenAPI.

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::{Value, json};

use vesper::nvs::dump::{self, ItemValue};

use crate::backend_support::{App, device_password};

async fn json_of(r: reqwest::Response) -> Value {
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_and_roles_guard_every_route() {
    let app = App::start().await;
    let (batch, sns) = app.batch(1).await;
    let sn = &sns[0];
    // No token, a garbage token, a well-formed unknown token: 401.
    for token in [
        "",
        "garbage",
        "vst_0000000000000000000000000000000000000000000000000000000000000000",
    ] {
        let r = app
            .client
            .get(format!("{}/manufacturing/devices", app.api))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "token {token:?}");
    }
    let r = app
        .client
        .get(format!("{}/manufacturing/devices", app.api))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");

    // Viewers read but do not write; technicians write but do not revoke or read the audit log.
    assert_eq!(
        app.get("/manufacturing/devices", &app.viewer)
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        app.get(&format!("/manufacturing/batch/{batch}"), &app.viewer)
            .await
            .status(),
        StatusCode::OK
    );
    let forbidden = [
        (
            app.post(
                "/manufacturing/batch",
                &app.viewer,
                json!({ "board": "bellcore-v2", "quantity": 1 }),
            )
            .await,
            "technician",
        ),
        (
            app.get(&format!("/manufacturing/devices/{sn}/nvs.bin"), &app.viewer)
                .await,
            "technician",
        ),
        (
            app.post(
                &format!("/manufacturing/devices/{sn}/status"),
                &app.technician,
                json!({ "status": "revoked" }),
            )
            .await,
            "admin",
        ),
        (
            app.post(
                &format!("/manufacturing/devices/{sn}/users"),
                &app.technician,
                json!({ "owner": "u" }),
            )
            .await,
            "admin",
        ),
        (
            app.get("/manufacturing/audit", &app.technician).await,
            "admin",
        ),
    ];
    for (response, role) in forbidden {
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert!(
            json_of(response).await["error"]
                .as_str()
                .unwrap()
                .contains(role)
        );
    }
    assert_eq!(
        app.post(
            &format!("/manufacturing/devices/{sn}/status"),
            &app.admin,
            json!({ "status": "revoked" })
        )
        .await
        .status(),
        StatusCode::OK
    );

    // A revoked token stops working at once; only hashes are stored.
    app.registry().revoke_token("viewer-1", "test").unwrap();
    assert_eq!(
        app.get("/manufacturing/devices", &app.viewer)
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let db = std::fs::read(app.registry().path()).unwrap();
    let wal =
        std::fs::read(app.registry().path().with_extension("sqlite3-wal")).unwrap_or_default();
    for token in [&app.admin, &app.technician, &app.viewer] {
        let needle = token.as_bytes();
        assert!(
            !db.windows(needle.len()).any(|w| w == needle)
                && !wal.windows(needle.len()).any(|w| w == needle),
            "a token is stored in clear"
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn batches_from_eight_concurrent_clients_are_whole_and_distinct() {
    let app = App::start().await;
    let mut tasks = Vec::new();
    for client in 0..8 {
        let (api, token, http) = (app.api.clone(), app.technician.clone(), app.client.clone());
        tasks.push(tokio::spawn(async move {
            let mut made = Vec::new();
            for round in 0..3 {
                let quantity = 20 + client * 7 + round;
                let body = if client % 2 == 0 {
                    json!({ "board": "bellcore-v2", "quantity": quantity })
                } else {
                    json!({ "hw_type": "BC", "hw_version": "01", "quantity": quantity, "subscription_plan": "pro", "available_outputs": 4 })
                };
                let r = http.post(format!("{api}/manufacturing/batch")).bearer_auth(&token).json(&body).send().await.unwrap();
                assert_eq!(r.status(), StatusCode::CREATED);
                let v: Value = r.json().await.unwrap();
                made.push((v["batch_id"].as_str().unwrap().to_owned(), quantity as usize, v["serial_numbers"].as_array().unwrap().len()));
            }
            made
        }));
    }
    let mut batches = Vec::new();
    for t in tasks {
        batches.extend(t.await.unwrap());
    }
    assert_eq!(batches.len(), 24);
    let mut all = HashSet::new();
    for (batch, quantity, returned) in &batches {
        assert_eq!(quantity, returned, "{batch}");
        let v = json_of(
            app.get(&format!("/manufacturing/batch/{batch}"), &app.viewer)
                .await,
        )
        .await;
        let sns: Vec<String> = v["serial_numbers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(sns.len(), *quantity, "{batch} is whole");
        assert_eq!(v["status_counts"]["manufactured"], json!(*quantity));
        for sn in sns {
            let parsed: vesper::serial::SerialNumber = sn.parse().unwrap();
            assert_eq!(parsed.date(), chrono::Utc::now().date_naive());
            assert!(all.insert(sn), "duplicate serial number");
        }
    }
    let names: HashSet<_> = batches.iter().map(|b| b.0.clone()).collect();
    assert_eq!(names.len(), 24, "batch ids are distinct");
    let listed = json_of(
        app.get("/manufacturing/batches?limit=100", &app.viewer)
            .await,
    )
    .await;
    assert_eq!(listed["batches"].as_array().unwrap().len(), 24);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_batch_requests_are_400_and_create_nothing() {
    let app = App::start().await;
    let cases = [
        (
            json!({ "board": "bellcore-v2", "quantity": 0 }),
            "quantity must be 1..=10000",
        ),
        (
            json!({ "board": "bellcore-v2", "quantity": 10001 }),
            "quantity must be 1..=10000",
        ),
        (
            json!({ "board": "bellcore-v9", "quantity": 1 }),
            "no board named `bellcore-v9`",
        ),
        (
            json!({ "hw_type": "BX", "hw_version": "02", "quantity": 1 }),
            "no board has hw_type BX",
        ),
        (
            json!({ "hw_type": "bc", "hw_version": "02", "quantity": 1 }),
            "two upper-case letters",
        ),
        (
            json!({ "board": "bellcore-v2", "hw_type": "BC", "hw_version": "02", "quantity": 1 }),
            "either `board`",
        ),
        (
            json!({ "board": "bellcore-v2", "quantity": -1 }),
            "quantity",
        ),
        (
            json!({ "board": "bellcore-v2", "quantity": 1, "colour": "red" }),
            "unknown field",
        ),
        (
            json!({ "board": "bellcore-v2", "quantity": 1, "subscription_plan": "" }),
            "subscription_plan",
        ),
    ];
    for (body, expected) in cases {
        let r = app
            .post("/manufacturing/batch", &app.technician, body.clone())
            .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
        let text = json_of(r).await["error"].as_str().unwrap().to_owned();
        assert!(text.contains(expected), "{body}: {text}");
    }
    let r = app
        .client
        .post(format!("{}/manufacturing/batch", app.api))
        .bearer_auth(&app.technician)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let stats = json_of(app.get("/manufacturing/stats", &app.viewer).await).await;
    assert_eq!(stats["total"], 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn status_moves_forward_only_and_revoke_is_final() {
    let app = App::start().await;
    let (_, sns) = app.batch(2).await;
    let (sn, other) = (&sns[0], &sns[1]);
    let set = |sn: String, status: &'static str, token: String| {
        let app = &app;
        async move {
            app.post(
                &format!("/manufacturing/devices/{sn}/status"),
                &token,
                json!({ "status": status }),
            )
            .await
        }
    };
    let t = app.technician.clone();
    for (status, expected) in [
        ("flashed", StatusCode::OK),
        ("provisioned", StatusCode::OK),
        ("provisioned", StatusCode::OK),
        ("flashed", StatusCode::CONFLICT),
        ("manufactured", StatusCode::CONFLICT),
        ("claimed", StatusCode::OK),
        ("sold", StatusCode::CONFLICT),
        ("active", StatusCode::OK),
        ("unknown", StatusCode::BAD_REQUEST),
    ] {
        let r = set(sn.clone(), status, t.clone()).await;
        assert_eq!(r.status(), expected, "{status}");
    }
    let device = json_of(
        app.get(&format!("/manufacturing/devices/{sn}"), &app.viewer)
            .await,
    )
    .await;
    assert_eq!(device["status"], "active");
    assert!(device["provisioned_at"].is_string());
    let moves: Vec<(Value, Value)> = device["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["action"] == "device.status")
        .map(|h| (h["before"]["status"].clone(), h["after"]["status"].clone()))
        .collect();
    assert_eq!(
        moves,
        [
            ("manufactured", "flashed"),
            ("flashed", "provisioned"),
            ("provisioned", "claimed"),
            ("claimed", "active")
        ]
        .map(|(a, b)| (json!(a), json!(b)))
    );
    assert_eq!(
        set(other.clone(), "revoked", app.admin.clone())
            .await
            .status(),
        StatusCode::OK
    );
    for status in ["manufactured", "flashed", "active"] {
        let r = set(other.clone(), status, app.admin.clone()).await;
        assert_eq!(r.status(), StatusCode::CONFLICT);
        assert!(
            json_of(r).await["error"]
                .as_str()
                .unwrap()
                .contains("is revoked")
        );
    }
    let r = app
        .post(
            "/manufacturing/devices/PV-26A18-BC02R-X7KQ0/status",
            &t,
            json!({ "status": "flashed" }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(
        json_of(r).await["error"]
            .as_str()
            .unwrap()
            .contains("suffix")
    );
    let r = app
        .post(
            "/manufacturing/devices/PV-26A18-BC02R-ZZZZZ/status",
            &t,
            json!({ "status": "flashed" }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn flash_reports_bind_macs_and_assignment_queues_the_email() {
    let app = App::start().await;
    let (_, sns) = app.batch(2).await;
    let report = |mac: &str, force: bool| json!({ "chip": "ESP32-D0WD-V3 rev3", "mac": mac, "firmware_version": "1.0.1", "station": "bench-1", "force": force });
    let r = app
        .post(
            &format!("/manufacturing/devices/{}/flashed", sns[0]),
            &app.technician,
            report("24:0a:c4:12:34:56", false),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let d = json_of(r).await;
    assert_eq!(
        (
            d["status"].as_str(),
            d["mac"].as_str(),
            d["station"].as_str()
        ),
        (Some("flashed"), Some("24:0A:C4:12:34:56"), Some("bench-1"))
    );
    assert!(d["flashed_at"].is_string());

    let r = app
        .post(
            &format!("/manufacturing/devices/{}/flashed", sns[1]),
            &app.technician,
            report("24:0A:C4:12:34:56", false),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert!(
        json_of(r).await["error"]
            .as_str()
            .unwrap()
            .contains(&sns[0])
    );
    let r = app
        .post(
            &format!("/manufacturing/devices/{}/flashed", sns[1]),
            &app.technician,
            report("24:0A:C4:12:34:56", true),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let first = json_of(
        app.get(&format!("/manufacturing/devices/{}", sns[0]), &app.viewer)
            .await,
    )
    .await;
    assert!(
        first["mac"].is_null(),
        "the MAC moved to the re-flashed board"
    );
    for bad in ["24:0A:C4:12:34", "zz:0A:C4:12:34:56", ""] {
        let r = app
            .post(
                &format!("/manufacturing/devices/{}/flashed", sns[0]),
                &app.technician,
                report(bad, false),
            )
            .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
    }

    let r = app
        .post(
            &format!("/manufacturing/devices/{}/assign", sns[0]),
            &app.technician,
            json!({ "email": "ana@example.com", "name": "Ana" }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(json_of(r).await["assigned_email"], "ana@example.com");
    for bad in [
        "ana",
        "ana@",
        "@example.com",
        "ana@example",
        "a b@example.com",
    ] {
        let r = app
            .post(
                &format!("/manufacturing/devices/{}/assign", sns[0]),
                &app.technician,
                json!({ "email": bad }),
            )
            .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    let conn = rusqlite::Connection::open(app.registry().path()).unwrap();
    let (recipient, payload): (String, String) = conn
        .query_row(
            "SELECT recipient, payload FROM outbox WHERE kind = 'device_invite'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(recipient, "ana@example.com");
    assert!(payload.contains(&sns[0]));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nvs_bin_decodes_to_the_serial_number_and_its_password() {
    let app = App::start().await;
    let (_, sns) = app.batch(2).await;
    for sn in &sns {
        let r = app
            .get(
                &format!("/manufacturing/devices/{sn}/nvs.bin"),
                &app.technician,
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["x-nvs-offset"], "0x9000");
        let image = r.bytes().await.unwrap();
        assert_eq!(
            image.len(),
            0x6000,
            "sized by bellcore-v2's partition table"
        );
        let decoded = dump::decode(&image);
        assert!(decoded.errors.is_empty());
        let get = |key: &str| {
            decoded
                .items
                .iter()
                .find(|i| i.key == key)
                .map(|i| i.value.clone())
        };
        let text = |s: &str| Some(ItemValue::Str(format!("{s}\0").into_bytes()));
        assert_eq!(get("serial_number"), text(sn));
        assert_eq!(get("mqtt_user"), text(sn));
        assert_eq!(get("mqtt_pass"), text(&device_password(sn)));
        assert_eq!(get("mqtt_host"), text(&app.config().mqtt.host));
        assert!(
            !image
                .windows(crate::backend_support::SECRET.len())
                .any(|w| w == crate::backend_support::SECRET.as_bytes())
        );
    }
    app.post(
        &format!("/manufacturing/devices/{}/status", sns[1]),
        &app.admin,
        json!({ "status": "revoked" }),
    )
    .await;
    assert_eq!(
        app.get(
            &format!("/manufacturing/devices/{}/nvs.bin", sns[1]),
            &app.technician
        )
        .await
        .status(),
        StatusCode::CONFLICT
    );
    assert_eq!(
        app.get(
            "/manufacturing/devices/PV-26A18-BC02R-ZZZZZ/nvs.bin",
            &app.technician
        )
        .await
        .status(),
        StatusCode::NOT_FOUND
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn device_list_filters_and_pages() {
    let app = App::start().await;
    let (b1, s1) = app.batch(5).await;
    let r = app
        .post(
            "/manufacturing/batch",
            &app.technician,
            json!({ "board": "bellcore-v1", "quantity": 3 }),
        )
        .await;
    let b2 = json_of(r).await["batch_id"].as_str().unwrap().to_owned();
    app.post(
        &format!("/manufacturing/devices/{}/status", s1[0]),
        &app.technician,
        json!({ "status": "flashed" }),
    )
    .await;
    app.post(
        &format!("/manufacturing/devices/{}/users", s1[1]),
        &app.admin,
        json!({ "owner": "uid-findme" }),
    )
    .await;
    // As the technician: the text also searches e-mail addresses and user ids (not for viewers).
    let count = |q: &'static str| {
        let app = &app;
        async move {
            let v = json_of(
                app.get(&format!("/manufacturing/devices?{q}"), &app.technician)
                    .await,
            )
            .await;
            (
                v["total"].as_i64().unwrap(),
                v["devices"].as_array().unwrap().len(),
            )
        }
    };
    assert_eq!(count("").await, (8, 8));
    assert_eq!(count("limit=3").await, (8, 3));
    assert_eq!(count("limit=3&offset=6").await, (8, 2));
    assert_eq!(count("status=flashed").await.0, 1);
    assert_eq!(count("status=manufactured").await.0, 7);
    assert_eq!(count("hw_type=BC").await.0, 8);
    assert_eq!(count("board=bellcore-v1").await.0, 3);
    assert_eq!(count("text=uid-findme").await.0, 1);
    assert_eq!(
        count("text=%25").await.0,
        0,
        "LIKE wildcards in the text are literal"
    );
    let today = chrono::Utc::now().date_naive();
    let v = json_of(
        app.get(
            &format!("/manufacturing/devices?created_from={today}&created_to={today}&batch={b2}"),
            &app.viewer,
        )
        .await,
    )
    .await;
    assert_eq!(v["total"], 3);
    let v = json_of(
        app.get(
            &format!(
                "/manufacturing/devices?created_to={}",
                today.pred_opt().unwrap()
            ),
            &app.viewer,
        )
        .await,
    )
    .await;
    assert_eq!(v["total"], 0);
    let v = json_of(
        app.get(
            &format!("/manufacturing/devices?text={}", &s1[2][15..]),
            &app.viewer,
        )
        .await,
    )
    .await;
    assert!(
        v["devices"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["serial_number"] == s1[2].as_str())
    );
    assert_eq!(
        app.get("/manufacturing/devices?status=lost", &app.viewer)
            .await
            .status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        app.get("/manufacturing/devices?created_from=yesterday", &app.viewer)
            .await
            .status(),
        StatusCode::BAD_REQUEST
    );
    let _ = b1;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_action_leaves_an_audit_row_and_the_log_is_append_only() {
    let app = App::start().await;
    let (batch, sns) = app.batch(1).await;
    let sn = &sns[0];
    app.post(&format!("/manufacturing/devices/{sn}/flashed"), &app.technician, json!({ "chip": "ESP32", "mac": "24:0A:C4:00:00:01", "firmware_version": "1.0.0", "station": "bench-1" })).await;
    app.post(
        &format!("/manufacturing/devices/{sn}/status"),
        &app.technician,
        json!({ "status": "provisioned" }),
    )
    .await;
    app.post(
        &format!("/manufacturing/devices/{sn}/assign"),
        &app.technician,
        json!({ "email": "a@example.com" }),
    )
    .await;
    app.post(
        &format!("/manufacturing/devices/{sn}/users"),
        &app.admin,
        json!({ "owner": "uid-1", "users_list": ["uid-2"] }),
    )
    .await;
    let v = json_of(app.get("/manufacturing/audit?limit=50", &app.admin).await).await;
    let entries = v["entries"].as_array().unwrap();
    let find = |action: &str| {
        entries
            .iter()
            .find(|e| e["action"] == action)
            .unwrap_or_else(|| panic!("no {action} row"))
            .clone()
    };
    assert_eq!(find("batch.create")["subject"], batch.as_str());
    assert_eq!(find("batch.create")["actor"], "bench-1");
    assert_eq!(find("device.flashed")["after"]["mac"], "24:0A:C4:00:00:01");
    assert_eq!(find("device.status")["before"]["status"], "flashed");
    assert_eq!(
        find("device.assign")["after"]["assigned_email"],
        "a@example.com"
    );
    assert_eq!(
        find("device.users")["after"]["users_list"],
        json!(["uid-2"])
    );
    assert_eq!(find("device.users")["actor"], "admin-1");
    assert!(
        entries
            .iter()
            .any(|e| e["action"] == "token.create" && e["subject"] == "admin-1")
    );
    assert!(
        entries
            .iter()
            .all(|e| e["at"].as_str().unwrap().ends_with('Z'))
    );
    let for_device = json_of(
        app.get(&format!("/manufacturing/audit?subject={sn}"), &app.admin)
            .await,
    )
    .await;
    // The device's own four changes (the invitation's `mail.sent` joins them when it has gone).
    let device_rows = for_device["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"].as_str().unwrap().starts_with("device."))
        .count();
    assert_eq!(device_rows, 4);

    let conn = rusqlite::Connection::open(app.registry().path()).unwrap();
    for sql in ["UPDATE audit SET actor = 'x'", "DELETE FROM audit"] {
        let err = conn.execute(sql, []).unwrap_err().to_string();
        assert!(err.contains("append-only"), "{sql}: {err}");
    }
    let stats = json_of(app.get("/manufacturing/stats", &app.viewer).await).await;
    assert_eq!(stats["by_status"]["provisioned"], 1);
    assert_eq!(stats["by_board"]["bellcore-v2"], 1);
    assert_eq!(stats["provisioned_today"], 1);
    assert!(!stats["recent"].as_array().unwrap().is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn health_and_openapi_describe_every_route() {
    let app = App::start().await;
    let health = app
        .client
        .get(format!("{}/healthz", app.api))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert!(
        health.headers().contains_key("x-request-id"),
        "every answer carries a request id"
    );
    let doc: Value = app
        .client
        .get(format!("{}/openapi.json", app.api))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    for route in [
        "/healthz",
        "/openapi.json",
        "/manufacturing/batch",
        "/manufacturing/batch/{id}",
        "/manufacturing/batches",
        "/manufacturing/devices",
        "/manufacturing/devices/{sn}",
        "/manufacturing/devices/{sn}/status",
        "/manufacturing/devices/{sn}/assign",
        "/manufacturing/devices/{sn}/flashed",
        "/manufacturing/devices/{sn}/users",
        "/manufacturing/devices/{sn}/nvs.bin",
        "/manufacturing/devices/{sn}/firmware.bin",
        "/manufacturing/firmware/{hw_type}/{hw_version}",
        "/manufacturing/audit",
        "/manufacturing/stats",
        "/ota/{board}/{file}",
        "/ota/{board}/{release}/{file}",
        "/mqtt/auth/user",
        "/mqtt/auth/acl",
        "/mqtt/auth/superuser",
    ] {
        assert!(paths.contains_key(route), "{route} is not documented");
    }
    // What the server serves is the document its routes generate.
    let generated: Value =
        serde_json::from_str(&vesper::server::openapi().to_json().unwrap()).unwrap();
    assert_eq!(doc, generated);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn events_stream_and_long_poll_follow_a_device() {
    let app = App::start().await;
    let (_, sns) = app.batch(1).await;
    let sn = sns[0].clone();
    let mut stream = app
        .get(&format!("/manufacturing/devices/{sn}/events"), &app.viewer)
        .await;
    assert_eq!(stream.status(), StatusCode::OK);
    assert!(
        stream.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut seen = String::new();
    while !seen.contains("\n\n") {
        seen.push_str(&String::from_utf8_lossy(
            &stream.chunk().await.unwrap().unwrap(),
        ));
    }
    assert!(
        seen.starts_with("event: current\n") && seen.contains("\"status\":\"manufactured\""),
        "{seen}"
    );

    let poll = app.wait_in_background(&sn, "flashed");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let report = json!({ "chip": "ESP32", "mac": "24:0A:C4:00:00:42", "firmware_version": "1.0.0", "station": "bench-1" });
    assert_eq!(
        app.post(
            &format!("/manufacturing/devices/{sn}/flashed"),
            &app.technician,
            report
        )
        .await
        .status(),
        StatusCode::OK
    );
    let answer = poll.await.unwrap();
    assert_eq!(answer.headers()["x-wait-result"], "reached");
    assert_eq!(json_of(answer).await["status"], "flashed");

    let mut more = String::new();
    while !more.contains("event: flashed") {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), stream.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        more.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(more.contains("\"status\":\"flashed\""), "{more}");

    let timeout = app
        .get(
            &format!("/manufacturing/devices/{sn}?wait=provisioned&timeout=1"),
            &app.viewer,
        )
        .await;
    assert_eq!(timeout.headers()["x-wait-result"], "timeout");
    app.post(
        &format!("/manufacturing/devices/{sn}/status"),
        &app.admin,
        json!({ "status": "revoked" }),
    )
    .await;
    let revoked = app
        .get(
            &format!("/manufacturing/devices/{sn}?wait=provisioned&timeout=10"),
            &app.viewer,
        )
        .await;
    assert_eq!(
        revoked.headers()["x-wait-result"],
        "revoked",
        "a revoked device never gets there: answer at once"
    );
    assert_eq!(
        app.get(
            "/manufacturing/devices/PV-26A18-BC02R-ZZZZZ/events",
            &app.viewer
        )
        .await
        .status(),
        StatusCode::NOT_FOUND
    );
    // Shutting down ends open event streams instead of waiting for them forever.
    tokio::time::timeout(std::time::Duration::from_secs(10), app.stop())
        .await
        .expect("stop with a stream open");
    drop(stream);
}

#[tokio::test(flavor = "multi_thread")]
async fn bench_slots_claim_distinct_devices_and_a_done_batch_is_a_conflict() {
    let app = App::start().await;
    let (batch, sns) = app.batch(3).await;
    let claim_path = format!("/manufacturing/batch/{batch}/claim");
    let claim =
        |station: &str| app.post(&claim_path, &app.technician, json!({ "station": station }));
    let mut taken = HashSet::new();
    for slot in ["bench-1/slot-1", "bench-1/slot-2", "bench-2/slot-1"] {
        let r = claim(slot).await;
        assert_eq!(r.status(), StatusCode::OK);
        let d = json_of(r).await;
        assert_eq!(d["claimed_by"], slot);
        assert!(d["claimed_until"].is_string());
        assert!(taken.insert(d["serial_number"].as_str().unwrap().to_owned()));
    }
    assert_eq!(taken.len(), sns.len());
    let r = claim("bench-1/slot-3").await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let body = json_of(r).await;
    assert!(body["error"].as_str().unwrap().contains("no device left"));
    assert_eq!(body["code"], "batch_done");
    // The wizard of another station cannot take a held device; its holder gives it back.
    let held = &sns[0];
    let holder = json_of(
        app.get(&format!("/manufacturing/devices/{held}"), &app.viewer)
            .await,
    )
    .await["claimed_by"]
        .as_str()
        .unwrap()
        .to_owned();
    let held_by_another = app
        .conflict(
            &format!("/manufacturing/devices/{held}/claim"),
            &app.technician,
            json!({ "station": "bench-9/wizard" }),
        )
        .await;
    assert_eq!(held_by_another["code"], "claimed_elsewhere");
    let r = app
        .post(
            &format!("/manufacturing/devices/{held}/release"),
            &app.technician,
            json!({ "station": holder }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = claim("bench-1/slot-3").await;
    assert_eq!(json_of(r).await["serial_number"], held.as_str());
    // Hostile or wrong requests are refused with a reason, never a 500.
    for (path, body, token, status) in [
        (
            format!("/manufacturing/batch/{batch}/claim"),
            json!({ "station": "" }),
            &app.technician,
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("/manufacturing/batch/{batch}/claim"),
            json!({ "station": "x", "extra": 1 }),
            &app.technician,
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("/manufacturing/batch/{batch}/claim"),
            json!({ "station": "x" }),
            &app.viewer,
            StatusCode::FORBIDDEN,
        ),
        (
            "/manufacturing/batch/B-9999/claim".into(),
            json!({ "station": "x" }),
            &app.technician,
            StatusCode::NOT_FOUND,
        ),
        (
            "/manufacturing/devices/not-a-sn/claim".into(),
            json!({ "station": "x" }),
            &app.technician,
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let r = app.post(&path, token, body).await;
        assert_eq!(r.status(), status, "{path}");
        assert!(json_of(r).await["error"].is_string());
    }
    let audit = json_of(
        app.get(&format!("/manufacturing/audit?subject={held}"), &app.admin)
            .await,
    )
    .await;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.contains(&"device.claimed") && actions.contains(&"device.released"),
        "{actions:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_identity_one_board_and_a_heartbeat_before_the_report_provisions() {
    let app = App::start().await;
    let (_, sns) = app.batch(2).await;
    let report = |mac: &str, force: bool| json!({ "chip": "ESP32", "mac": mac, "firmware_version": "1.0.1", "station": "bench-1", "force": force });
    let flashed = |sn: &str, body| {
        let path = format!("/manufacturing/devices/{sn}/flashed");
        let (app, token) = (&app, app.technician.clone());
        async move { app.post(&path, &token, body).await }
    };
    assert_eq!(
        flashed(&sns[0], report("24:0A:C4:00:00:01", false))
            .await
            .status(),
        StatusCode::OK
    );
    // The same board again (a re-flash) is fine; another board needs force.
    assert_eq!(
        flashed(&sns[0], report("24:0A:C4:00:00:01", false))
            .await
            .status(),
        StatusCode::OK
    );
    let r = flashed(&sns[0], report("24:0A:C4:00:00:02", false)).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert!(
        json_of(r).await["error"]
            .as_str()
            .unwrap()
            .contains("24:0A:C4:00:00:01")
    );
    assert_eq!(
        flashed(&sns[0], report("24:0A:C4:00:00:02", true))
            .await
            .status(),
        StatusCode::OK
    );

    // A board that reached the broker before its station reported is provisioned by the report.
    let seen = vesper::registry::Sighting {
        serial_number: sns[1].clone(),
        at: vesper::registry::now(),
        heartbeat: true,
        firmware: None,
    };
    app.registry().record_sightings(&[seen], "test").unwrap();
    let d = json_of(flashed(&sns[1], report("24:0A:C4:00:00:03", false)).await).await;
    assert_eq!(d["status"], "provisioned");
    assert!(d["provisioned_at"].is_string());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_typed_client_tells_a_finished_batch_from_other_refusals() {
    let app = App::start().await;
    let (batch, sns) = app.batch(1).await;
    let client = vesper::client::ApiClient::new(&app.api, &app.technician);
    let device = client.claim_next(&batch, "bench-1/slot-1").await.unwrap();
    assert_eq!(device.serial_number, sns[0]);
    let done = client
        .claim_next(&batch, "bench-1/slot-2")
        .await
        .unwrap_err();
    assert!(
        done.is_conflict(vesper::wire::ConflictCode::BatchDone),
        "{done:?}"
    );
    assert!(
        done.reason().contains("no device left"),
        "{}",
        done.reason()
    );
    let held = client.claim(&sns[0], "bench-2/wizard").await.unwrap_err();
    assert!(
        held.is_conflict(vesper::wire::ConflictCode::ClaimedElsewhere),
        "{held:?}"
    );
    assert!(!held.is_conflict(vesper::wire::ConflictCode::BatchDone));
    let missing = client
        .claim_next("B-9999", "bench-1/slot-2")
        .await
        .unwrap_err();
    assert!(
        matches!(
            &missing,
            vesper::client::ClientError::Status {
                status: 404,
                code: None,
                ..
            }
        ),
        "{missing:?}"
    );
    let unreachable = vesper::client::ApiClient::new("http://127.0.0.1:9", &app.technician)
        .claim_next(&batch, "bench-1/slot-2")
        .await
        .unwrap_err();
    assert!(unreachable.reason().contains("cannot reach the backend"));
    app.stop().await;
}

/// A device's NVS image holds its password: every download leaves an audit row, and once the
/// device is in a customer's hands only an admin gets it again, asking for a reissue.
#[tokio::test(flavor = "multi_thread")]
async fn nvs_bin_is_audited_and_refused_for_devices_in_the_field() {
    let app = App::start().await;
    let (_, sns) = app.batch(4).await;
    let nvs = |sn: &str, query: &str| format!("/manufacturing/devices/{sn}/nvs.bin{query}");
    assert_eq!(
        app.get(&nvs(&sns[0], ""), &app.technician).await.status(),
        StatusCode::OK
    );
    for (sn, status) in [(&sns[1], "sold"), (&sns[2], "claimed"), (&sns[3], "active")] {
        let r = app
            .post(
                &format!("/manufacturing/devices/{sn}/status"),
                &app.technician,
                json!({ "status": status }),
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK, "{status}");
        for token in [&app.technician, &app.admin] {
            let r = app.get(&nvs(sn, ""), token).await;
            assert_eq!(r.status(), StatusCode::CONFLICT, "{status}");
            let body = json_of(r).await;
            assert_eq!(body["code"], "device_in_field", "{body}");
        }
        assert_eq!(
            app.get(&nvs(sn, "?reissue=true"), &app.technician)
                .await
                .status(),
            StatusCode::FORBIDDEN,
            "only an admin reissues"
        );
    }
    let r = app.get(&nvs(&sns[1], "?reissue=true"), &app.admin).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(!r.bytes().await.unwrap().is_empty());

    let rows = |sn: String| {
        let app = &app;
        async move {
            json_of(
                app.get(&format!("/manufacturing/audit?subject={sn}"), &app.admin)
                    .await,
            )
            .await["entries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    (
                        e["action"].as_str().unwrap().to_owned(),
                        e["actor"].as_str().unwrap().to_owned(),
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    let first = rows(sns[0].clone()).await;
    assert!(
        first.contains(&("device.nvs_downloaded".into(), "bench-1".into())),
        "{first:?}"
    );
    let sold = rows(sns[1].clone()).await;
    assert!(
        sold.contains(&("device.nvs_reissued".into(), "admin-1".into())),
        "{sold:?}"
    );
    assert!(
        !sold.iter().any(|(a, _)| a == "device.nvs_downloaded"),
        "refused downloads leave no download row: {sold:?}"
    );
    app.stop().await;
}

/// The long poll honours its own limit (up to 600 s), not the router's 60 s timeout.
#[tokio::test(flavor = "multi_thread")]
async fn a_long_poll_of_61_seconds_answers_timeout_not_503() {
    let app = App::start().await;
    let (_, sns) = app.batch(1).await;
    let started = std::time::Instant::now();
    let r = app
        .client
        .get(format!(
            "{}/manufacturing/devices/{}?wait=provisioned&timeout=61",
            app.api, sns[0]
        ))
        .bearer_auth(&app.viewer)
        .timeout(std::time::Duration::from_secs(90))
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["x-wait-result"], "timeout");
    assert!(
        took >= std::time::Duration::from_secs(61),
        "answered after {took:?}"
    );
    assert_eq!(json_of(r).await["status"], "manufactured");
    // 600 s is accepted (and answered at once when the device is already there).
    let r = app
        .get(
            &format!(
                "/manufacturing/devices/{}?wait=manufactured&timeout=600",
                sns[0]
            ),
            &app.viewer,
        )
        .await;
    assert_eq!(r.headers()["x-wait-result"], "reached");
    app.stop().await;
}

/// The dashboard's recent activity is readable by every token, so below admin it carries no
/// token rows and no before/after states (which hold e-mail addresses and user ids).
#[tokio::test(flavor = "multi_thread")]
async fn stats_for_viewers_hold_no_token_rows_or_email_addresses() {
    let app = App::start().await;
    let (_, sns) = app.batch(1).await;
    let r = app
        .post(
            &format!("/manufacturing/devices/{}/assign", sns[0]),
            &app.technician,
            json!({ "email": "ana@example.com", "name": "Ana" }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    app.registry()
        .create_token("later-1", vesper::registry::Role::Viewer, "admin-1")
        .unwrap();
    for (who, token) in [("viewer", &app.viewer), ("technician", &app.technician)] {
        let text = app
            .get("/manufacturing/stats", token)
            .await
            .text()
            .await
            .unwrap();
        assert!(!text.contains("ana@example.com"), "{who}: {text}");
        assert!(!text.contains("\"token."), "{who}: {text}");
        let stats: Value = serde_json::from_str(&text).unwrap();
        let actions: Vec<&str> = stats["recent"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["action"].as_str().unwrap())
            .collect();
        assert!(
            actions.iter().any(|a| a.contains("assign")),
            "{who}: {actions:?}"
        );
    }
    let admin = app
        .get("/manufacturing/stats", &app.admin)
        .await
        .text()
        .await
        .unwrap();
    assert!(admin.contains("ana@example.com") && admin.contains("\"token.create\""));

    // Nor in the device answers a viewer reads, nor through the search.
    app.post(
        &format!("/manufacturing/devices/{}/users", sns[0]),
        &app.admin,
        json!({ "owner": "uid-ana", "users_list": ["uid-bo"] }),
    )
    .await;
    for path in [
        format!("/manufacturing/devices/{}", sns[0]),
        format!(
            "/manufacturing/devices/{}?wait=manufactured&timeout=1",
            sns[0]
        ),
        "/manufacturing/devices".to_owned(),
        "/manufacturing/batch/B-0001".to_owned(),
    ] {
        let viewer = app.get(&path, &app.viewer).await.text().await.unwrap();
        for personal in ["ana@example.com", "Ana", "uid-ana", "uid-bo"] {
            assert!(
                !viewer.contains(personal),
                "{path} shows {personal} to a viewer: {viewer}"
            );
        }
        let technician = app.get(&path, &app.technician).await.text().await.unwrap();
        assert!(
            technician.contains("ana@example.com"),
            "{path}: {technician}"
        );
    }
    let search = |token: &str, text: &str| {
        let (app, token, text) = (&app, token.to_owned(), text.to_owned());
        async move {
            json_of(
                app.get(&format!("/manufacturing/devices?text={text}"), &token)
                    .await,
            )
            .await["total"]
                .as_i64()
                .unwrap()
        }
    };
    assert_eq!(search(&app.viewer, "ana%40example").await, 0);
    assert_eq!(search(&app.viewer, "uid-bo").await, 0);
    assert_eq!(search(&app.technician, "ana%40example").await, 1);
    assert_eq!(search(&app.viewer, &sns[0][15..]).await, 1);
    app.stop().await;
}

/// A stream outlives the request that opened it: revoking its token (here as `vesper token
/// revoke` does, straight in the registry) ends it within seconds.
#[tokio::test(flavor = "multi_thread")]
async fn an_event_stream_ends_when_its_token_is_revoked() {
    let app = App::start().await;
    let (_, sns) = app.batch(1).await;
    let registry = app.registry();
    let token = registry
        .create_token("watcher-1", vesper::registry::Role::Viewer, "admin-1")
        .unwrap();
    let mut stream = app
        .get(&format!("/manufacturing/devices/{}/events", sns[0]), &token)
        .await;
    assert_eq!(stream.status(), StatusCode::OK);
    let first = stream.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).starts_with("event: current"));
    // Still open a while later (only keep-alives or nothing arrive).
    let open = tokio::time::timeout(std::time::Duration::from_secs(3), stream.chunk()).await;
    assert!(
        open.is_err() || matches!(open, Ok(Ok(Some(_)))),
        "the stream ended on its own: {open:?}"
    );
    registry.revoke_token("watcher-1", "admin-1").unwrap();
    let ended = tokio::time::timeout(std::time::Duration::from_secs(6), async {
        while let Some(_chunk) = stream.chunk().await.unwrap() {}
    })
    .await;
    assert!(
        ended.is_ok(),
        "the stream kept flowing after its token was revoked"
    );
    assert_eq!(
        app.get(&format!("/manufacturing/devices/{}/events", sns[0]), &token)
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    app.stop().await;
}
