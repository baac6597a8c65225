//! The real `vesper serve` process: start-up checks, SIGTERM, SIGKILL in the middle of a batch,
//! and the token and firmware commands that work beside it on the same data dir.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::backend_support::{SECRET, write_config};
use crate::support::{stderr, stdout, vesper_env};

/// `vesper serve` on free loopback ports.
pub(crate) const SERVE_ON_FREE_PORTS: [&str; 5] = [
    "serve",
    "--listen",
    "127.0.0.1:0",
    "--auth-listen",
    "127.0.0.1:0",
];

/// A `vesper serve` child process and its addresses.
pub(crate) struct Serve {
    pub(crate) child: Child,
    pub(crate) api: String,
    /// The broker-facing auth listener, `http://127.0.0.1:PORT`.
    pub(crate) auth: String,
    stderr_path: PathBuf,
}

impl Serve {
    pub(crate) fn start(dir: &Path, extra_env: &[(&str, &str)]) -> Serve {
        Self::start_with_args(dir, extra_env, &[])
    }

    /// Starts `vesper serve` with more arguments after the free ports.
    pub(crate) fn start_with_args(dir: &Path, extra_env: &[(&str, &str)], args: &[&str]) -> Serve {
        let stderr_path = dir.join(format!(
            "serve-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vesper"));
        cmd.args(["--config", dir.join("config.toml").to_str().unwrap()])
            .args(SERVE_ON_FREE_PORTS)
            .args(args)
            .env("MQTT_SECRET", SECRET)
            .env("RUST_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).unwrap());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (mut api, mut auth) = (None, None);
        while api.is_none() || auth.is_none() {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(line) if line.starts_with("api listening on ") => {
                    api = Some(line["api listening on ".len()..].to_owned())
                }
                Ok(line) if line.starts_with("mqtt auth listening on ") => {
                    auth = Some(line["mqtt auth listening on ".len()..].to_owned())
                }
                Ok(_) => {}
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "serve did not start: {}",
                        std::fs::read_to_string(&stderr_path).unwrap_or_default()
                    );
                }
            }
        }
        Serve {
            child,
            api: api.unwrap(),
            auth: auth.unwrap(),
            stderr_path,
        }
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub(crate) fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = wait_with_timeout(&mut self.child, Duration::from_secs(20));
        (exit, self.log())
    }

    pub(crate) fn kill(mut self) {
        self.child.kill().unwrap();
        let _ = self.child.wait();
    }
}

fn wait_with_timeout(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn setup() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "http://127.0.0.1:9/unused-jwks");
    let out = vesper_env(
        dir.path(),
        &["token", "create", "bench-1", "--role", "admin"],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let token = stdout(&out).split_whitespace().last().unwrap().to_owned();
    (dir, token)
}

#[test]
fn serve_refuses_to_start_without_the_master_secret() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "http://127.0.0.1:9/unused");
    let out = vesper_env(dir.path(), &SERVE_ON_FREE_PORTS, &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("MQTT_SECRET"), "{}", stderr(&out));
    assert!(
        !dir.path().join("data").exists(),
        "nothing is created before the secret is checked"
    );

    // A secret file with a short secret is refused at start, with how to make a good one.
    std::fs::write(dir.path().join("weak_secret"), "correct horse battery\n").unwrap();
    let config = std::fs::read_to_string(dir.path().join("config.toml")).unwrap();
    std::fs::write(
        dir.path().join("config.toml"),
        config.replace("[serve]\n", "[serve]\nsecret_file = \"weak_secret\"\n"),
    )
    .unwrap();
    let weak = vesper_env(dir.path(), &SERVE_ON_FREE_PORTS, &[]);
    assert!(!weak.status.success());
    let message = stderr(&weak);
    assert!(
        message.contains("weak_secret")
            && message.contains("21 bytes")
            && message.contains("at least 32 bytes")
            && message.contains("vesper mqtt secret new"),
        "{message}"
    );
    assert!(
        !message.contains("correct horse"),
        "the secret is not printed"
    );
    assert!(!dir.path().join("data").exists());
}

#[test]
fn tokens_from_the_command_line_work_and_sigterm_stops_cleanly_without_leaking_secrets() {
    let (dir, token) = setup();
    assert!(token.starts_with("vst_") && token.len() == 68, "{token}");
    let listed = vesper_env(dir.path(), &["token", "list"], &[]);
    assert!(
        stdout(&listed).contains("bench-1")
            && stdout(&listed).contains("admin")
            && !stdout(&listed).contains(&token)
    );
    let dup = vesper_env(
        dir.path(),
        &["token", "create", "bench-1", "--role", "viewer"],
        &[],
    );
    assert!(stderr(&dup).contains("already exists"), "{}", stderr(&dup));
    let bad_role = vesper_env(dir.path(), &["token", "create", "x", "--role", "root"], &[]);
    assert!(
        stderr(&bad_role).contains("admin, technician, viewer or publisher"),
        "{}",
        stderr(&bad_role)
    );

    let serve = Serve::start(dir.path(), &[]);
    let http = reqwest::blocking::Client::new();
    let r = http
        .post(format!("{}/manufacturing/batch", serve.api))
        .bearer_auth(&token)
        .json(&json!({ "board": "bellcore-v2", "quantity": 2 }))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: serde_json::Value = r.json().unwrap();
    let sn = v["serial_numbers"][0].as_str().unwrap().to_owned();
    let nvs = http
        .get(format!("{}/manufacturing/devices/{sn}/nvs.bin", serve.api))
        .bearer_auth(&token)
        .send()
        .unwrap();
    assert_eq!(nvs.status(), 200);

    // Revoking from the command line takes effect on the running server.
    assert!(
        vesper_env(dir.path(), &["token", "revoke", "bench-1"], &[])
            .status
            .success()
    );
    let r = http
        .get(format!("{}/manufacturing/devices", serve.api))
        .bearer_auth(&token)
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);

    let (exit, log) = serve.terminate();
    assert!(
        exit.success(),
        "SIGTERM is a clean shutdown: {exit:?}\n{log}"
    );
    assert!(log.contains("shutting down"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "no colour codes in a log file (stderr is not a terminal): {log}"
    );
    let password = vesper::credentials::MasterSecret::new(SECRET, "t")
        .unwrap()
        .device_password(&sn.parse().unwrap());
    for secret in [SECRET, token.as_str(), password.expose()] {
        assert!(!log.contains(secret), "a secret reached the log");
    }
}

/// `--log-format json`: every line a log collector reads is one JSON object with a level, a
/// time and the message; nothing else is interleaved.
#[test]
fn json_logs_are_one_object_per_line() {
    let (dir, _) = setup();
    let serve = Serve::start_with_args(
        dir.path(),
        &[("RUST_LOG", "info")],
        &["--log-format", "json"],
    );
    let (exit, log) = serve.terminate();
    assert!(exit.success(), "{log}");
    let lines: Vec<&str> = log.lines().collect();
    assert!(lines.len() >= 2, "{log}");
    for line in lines {
        let object: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        assert!(
            object["level"].is_string() && object["timestamp"].is_string(),
            "{line}"
        );
        assert!(object["fields"]["message"].is_string(), "{line}");
    }
    assert!(log.contains("shutting down"), "{log}");
    let bad = vesper_env(dir.path(), &["serve", "--log-format", "xml"], &[]);
    assert!(
        stderr(&bad).contains("text") && stderr(&bad).contains("json"),
        "{}",
        stderr(&bad)
    );
}

/// The batch name of a 201 answer.
fn batch_id_of(answer: reqwest::blocking::Response) -> String {
    let body: serde_json::Value = answer.json().unwrap();
    body["batch_id"].as_str().unwrap().to_owned()
}

#[test]
fn sigkill_during_a_large_batch_leaves_it_whole_or_absent() {
    use rand::{Rng as _, SeedableRng as _};
    let (dir, token) = setup();
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let batch = |api: &str| {
        let (client, tok, url) = (
            http.clone(),
            token.clone(),
            format!("{api}/manufacturing/batch"),
        );
        std::thread::spawn(move || {
            client
                .post(url)
                .bearer_auth(tok)
                .json(&json!({ "board": "bellcore-v2", "quantity": 1000 }))
                .send()
        })
    };
    // How long one batch of 1,000 takes here, so that the kills spread over a request's life.
    let serve = Serve::start(dir.path(), &[]);
    let started = Instant::now();
    let first = batch(&serve.api).join().unwrap().unwrap();
    assert_eq!(first.status(), 201);
    let life = started.elapsed();
    serve.kill();
    let mut answered: Vec<String> = vec![batch_id_of(first)];
    let seed: u64 = rand::rng().random();
    println!("kill delays from seed {seed}; a batch takes {life:?}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    const ROUNDS: usize = 12;
    let mut in_flight = 0;
    for round in 0..ROUNDS {
        let serve = Serve::start(dir.path(), &[]);
        let request = batch(&serve.api);
        // Anywhere from just after sending to near the end of the request's usual life.
        let delay = life.mul_f64(rng.random_range(0.05..0.95));
        std::thread::sleep(delay);
        serve.kill();
        match request.join().unwrap() {
            Ok(r) if r.status() == 201 => answered.push(batch_id_of(r)),
            _ => in_flight += 1,
        }
        let registry = vesper::registry::Registry::open(&dir.path().join("data")).unwrap();
        // Every batch in the registry is whole: its quantity of devices, no more, no less.
        let batches = registry.batches(1000, 0).unwrap();
        for b in &batches {
            let devices = registry.batch(&b.batch_id).unwrap().devices.len() as i64;
            assert_eq!(
                devices, b.quantity,
                "round {round} (kill after {delay:?}): {} has {devices} of {} devices",
                b.batch_id, b.quantity
            );
            let audit = registry
                .audit(&vesper::registry::AuditQuery {
                    subject: Some(b.batch_id.clone()),
                    action: Some("batch.create".into()),
                    before_id: None,
                    limit: 10,
                })
                .unwrap();
            assert_eq!(
                audit.len(),
                1,
                "round {round}: {} has no audit row",
                b.batch_id
            );
        }
        // Every batch answered 201 is there.
        for id in &answered {
            assert!(
                batches.iter().any(|b| &b.batch_id == id),
                "round {round}: {id} was answered 201 and is gone"
            );
        }
        let total: i64 = batches.iter().map(|b| b.quantity).sum();
        assert_eq!(
            registry.devices(&Default::default()).unwrap().total,
            total,
            "round {round}: no orphan devices"
        );
    }
    println!("{in_flight} of {ROUNDS} kills landed while a request was in flight");
    assert!(
        in_flight * 2 > ROUNDS,
        "only {in_flight} of {ROUNDS} kills landed while a request was in flight: the test proved too little"
    );
    // The registry still works after all that.
    let serve = Serve::start(dir.path(), &[]);
    let r = http
        .post(format!("{}/manufacturing/batch", serve.api))
        .bearer_auth(&token)
        .json(&json!({ "board": "bellcore-v1", "quantity": 3 }))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    serve.kill();
}

#[test]
fn firmware_publish_from_the_command_line_is_audited() {
    let (dir, _) = setup();
    let parts = dir.path().join("build");
    std::fs::create_dir(&parts).unwrap();
    let mut app = vec![0u8; 4096];
    app[0] = 0xE9;
    std::fs::write(parts.join("firmware.bin"), &app).unwrap();
    std::fs::write(parts.join("bootloader.bin"), &app[..1024]).unwrap();
    let publish = |args: &[&str]| {
        let mut all = vec!["firmware", "publish"];
        all.extend_from_slice(args);
        vesper_env(dir.path(), &all, &[])
    };
    let out = publish(&[
        "bellcore-v1",
        "1.2.0",
        "build/bootloader.bin",
        "build/firmware.bin@0x10000",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("0x001000") && stdout(&out).contains("0x010000"),
        "{}",
        stdout(&out)
    );
    let again = publish(&["bellcore-v1", "1.2.0", "build/firmware.bin"]);
    assert!(
        stderr(&again).contains("never overwritten"),
        "{}",
        stderr(&again)
    );
    let bad = publish(&["bellcore-v1", "1.3.0", "build/firmware.bin@0x9000"]);
    assert!(
        stderr(&bad).contains("overlaps the NVS partition"),
        "{}",
        stderr(&bad)
    );
    let listed = vesper_env(dir.path(), &["firmware", "list"], &[]);
    assert!(
        stdout(&listed).contains("bellcore-v1      1.2.0 (latest: 1.2.0)"),
        "{}",
        stdout(&listed)
    );
    let registry = vesper::registry::Registry::open(&dir.path().join("data")).unwrap();
    let rows = registry
        .audit(&vesper::registry::AuditQuery {
            action: Some("firmware.publish".into()),
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].subject.as_deref(), Some("bellcore-v1/v1.2.0"));
    assert!(rows[0].actor.starts_with("cli:"));
}

/// Registry writes begin with BEGIN IMMEDIATE and wait for the lock: batches created through
/// the serving backend while another process (`vesper token create`, on the same data folder)
/// writes at the same time all succeed; none is answered 503 (SQLITE_BUSY).
#[test]
fn a_second_process_writing_while_serving_makes_no_request_fail() {
    let (dir, token) = setup();
    let serve = Serve::start(dir.path(), &[]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (dir, stop) = (dir.path().to_owned(), stop.clone());
        std::thread::spawn(move || {
            let mut made = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && made < 200 {
                let out = vesper_env(
                    &dir,
                    &[
                        "token",
                        "create",
                        &format!("cli-{made}"),
                        "--role",
                        "viewer",
                    ],
                    &[],
                );
                assert!(out.status.success(), "{}", stderr(&out));
                made += 1;
            }
            made
        })
    };
    let client = reqwest::blocking::Client::new();
    let mut codes = std::collections::BTreeMap::new();
    for _ in 0..150 {
        let r = client
            .post(format!("{}/manufacturing/batch", serve.api))
            .bearer_auth(&token)
            .json(&json!({ "board": "bellcore-v2", "quantity": 5 }))
            .send()
            .unwrap();
        *codes.entry(r.status().as_u16()).or_insert(0) += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let made = writer.join().unwrap();
    assert!(made > 0);
    assert_eq!(
        codes,
        std::collections::BTreeMap::from([(201, 150)]),
        "answers while another process wrote ({made} tokens): {}",
        serve.log()
    );
    serve.kill();
}

/// Schemathesis (a peer that reads only the published OpenAPI document) against the real
/// process with an admin token and a real batch: a bounded number of generated requests per
/// operation, no 5xx, and every answer (and every server-sent event) matching its schema.
#[test]
fn schemathesis_finds_no_server_error_and_no_schema_mismatch() {
    let (dir, token) = setup();
    let serve = Serve::start(dir.path(), &[]);
    let batch: serde_json::Value = reqwest::blocking::Client::new()
        .post(format!("{}/manufacturing/batch", serve.api))
        .bearer_auth(&token)
        .json(&json!({ "board": "bellcore-v2", "quantity": 3 }))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let config = dir.path().join("schemathesis.toml");
    std::fs::write(
        &config,
        format!(
            "[parameters]\nsn = \"{}\"\nid = \"{}\"\nhw_type = \"BC\"\nhw_version = \"02\"\n",
            batch["serial_numbers"][0].as_str().unwrap(),
            batch["batch_id"].as_str().unwrap()
        ),
    )
    .unwrap();
    let schemathesis = crate::support::python()
        .parent()
        .unwrap()
        .join("schemathesis");
    let log = std::fs::File::create(dir.path().join("schemathesis.log")).unwrap();
    let mut child = Command::new(&schemathesis)
        .arg("--config-file")
        .arg(&config)
        .args(["run", &format!("{}/openapi.json", serve.api)])
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .args([
            "--checks",
            "not_a_server_error,response_schema_conformance,content_type_conformance",
            "--max-examples",
            "10",
            "--workers",
            "1",
            "--suppress-health-check",
            "all",
            "--seed",
            "1",
        ])
        .env("NO_COLOR", "1")
        .current_dir(dir.path())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (./scripts/test installs it)",
                schemathesis.display()
            )
        });
    let status = wait_with_timeout(&mut child, Duration::from_secs(300));
    let report = std::fs::read_to_string(dir.path().join("schemathesis.log")).unwrap();
    assert!(status.success(), "schemathesis found problems:\n{report}");
    assert!(report.contains("passed"), "{report}");
    serve.kill();
}
