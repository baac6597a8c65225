//! `vesper doctor` against a real deployment on loopback (the backend, mosquitto with the
//! project's plugin, nginx with the shipped site), then each check made to fail once: the line
//! names the failure and the fix, and the exit code is 1.

use std::path::Path;

use serde_json::Value;

use crate::backend_support::{App, SECRET};
use crate::broker::backend_and_shipped_broker;
use crate::deploy_nginx::Nginx;
use crate::support::{stderr, vesper_env};

/// The App's config with the real addresses, a 0600 secret file, and `extra` appended.
fn doctor_config(app: &App, name: &str, listen: &str, auth_listen: &str, extra: &str) -> String {
    let dir = app.dir();
    let secret = dir.join("mqtt_secret");
    if !secret.exists() {
        std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
        std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
    }
    let text = std::fs::read_to_string(dir.join("config.toml"))
        .unwrap()
        .replace(
            "listen = \"127.0.0.1:8080\"",
            &format!("listen = \"{listen}\""),
        )
        .replace(
            "auth_listen = \"127.0.0.1:8081\"",
            &format!("auth_listen = \"{auth_listen}\""),
        )
        .replacen("[serve]\n", "[serve]\nsecret_file = \"mqtt_secret\"\n", 1);
    std::fs::write(dir.join(name), format!("{text}\n{extra}")).unwrap();
    name.to_owned()
}

fn addr(url: &str) -> &str {
    url.trim_start_matches("http://")
}

/// Runs the doctor with `--json`: its exit code and each check's verdict by name.
fn doctor(dir: &Path, config: &str, extra_args: &[&str], cert: &Path) -> (i32, Vec<Value>) {
    let mut args = vec!["--config", config, "doctor", "--json"];
    args.extend_from_slice(extra_args);
    let out = vesper_env(dir, &args, &[("SSL_CERT_FILE", cert.to_str().unwrap())]);
    let checks = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}\n{}", stderr(&out))))
        .collect();
    (out.status.code().unwrap(), checks)
}

fn verdict<'a>(checks: &'a [Value], name: &str) -> &'a Value {
    checks
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} check: {checks:#?}"))
}

fn failed(checks: &[Value]) -> Vec<&str> {
    checks
        .iter()
        .filter(|c| c["verdict"] == "fail")
        .map(|c| c["name"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_passes_a_working_deployment_and_names_each_failure_with_its_fix() {
    let (app, mut broker) = backend_and_shipped_broker().await;
    crate::broker::listener_connected(&app).await;
    let ota = app.dir().join("data/ota");
    let board = app.config().board("bellcore-v2").unwrap().clone();
    vesper::demo::publish_release(
        &ota,
        &board,
        "1.0.0",
        vesper::demo::app_image(0x10000, "1.0.0"),
    )
    .unwrap();
    let api_port: u16 = app.api.rsplit(':').next().unwrap().parse().unwrap();
    let nginx = Nginx::start(api_port, &ota);
    let certs = tempfile::tempdir().unwrap();
    let cert = certs.path().join("ca.pem");
    std::fs::write(&cert, &nginx.cert).unwrap();
    let public = format!(
        "[deploy]\npublic_url = \"https://127.0.0.1:{}\"\n",
        nginx.https_port
    );
    let dir = app.dir().to_owned();
    let good = doctor_config(
        &app,
        "doctor.toml",
        addr(&app.api),
        addr(&app.auth),
        &public,
    );

    let (code, checks) = doctor(&dir, &good, &[], &cert);
    assert_eq!(failed(&checks), Vec::<&str>::new(), "{checks:#?}");
    assert_eq!(code, 0);
    for name in [
        "config",
        "master secret",
        "data folder",
        "registry",
        "releases",
        "api",
        "auth listener",
        "broker",
        "heartbeat listener",
        "public ota",
        "tls certificate",
    ] {
        assert_eq!(
            verdict(&checks, name)["verdict"],
            "ok",
            "{name}: {checks:#?}"
        );
    }

    // Each check, made to fail.
    let closed = crate::broker::free_port();
    let expect_fail = |config: &str, args: &[&str], name: &str, said: &str| {
        let (code, checks) = doctor(&dir, config, args, &cert);
        assert_eq!(code, 1, "{name}: {checks:#?}");
        let check = verdict(&checks, name);
        assert_eq!(check["verdict"], "fail", "{name}: {checks:#?}");
        assert!(
            check["detail"].as_str().unwrap().contains(said),
            "{name}: {check}"
        );
        assert!(
            !check["fix"].as_str().unwrap_or_default().is_empty(),
            "{name} says how to fix it"
        );
    };
    std::fs::write(
        dir.join("broken.toml"),
        "[serve]\nlisten = \"nowhere\"\n[mqtt]\nhost = \"x\"\n",
    )
    .unwrap();
    expect_fail("broken.toml", &[], "config", "serve.listen");
    std::fs::set_permissions(
        dir.join("mqtt_secret"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    expect_fail(
        &good,
        &[],
        "master secret",
        "can be read by others (mode 644)",
    );
    std::fs::set_permissions(
        dir.join("mqtt_secret"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    // A webhook secret that anybody could guess (issue 25, finding 2).
    std::fs::write(dir.join("short.secret"), "abc\n").unwrap();
    std::fs::set_permissions(
        dir.join("short.secret"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let short = doctor_config(
        &app,
        "short-secret.toml",
        addr(&app.api),
        addr(&app.auth),
        &format!("{public}secret_file = \"short.secret\"\ncommand = [\"true\"]\n"),
    );
    expect_fail(
        &short,
        &[],
        "webhook secret",
        "has 3 bytes; it needs at least 32",
    );
    let not_a_folder = dir.join("config.toml");
    expect_fail(
        &good,
        &["--data-dir", not_a_folder.to_str().unwrap()],
        "data folder",
        "cannot write in",
    );
    let empty = tempfile::tempdir().unwrap();
    expect_fail(
        &good,
        &["--data-dir", empty.path().to_str().unwrap()],
        "registry",
        "no registry at",
    );
    let other_table = doctor_config(
        &app,
        "other-table.toml",
        addr(&app.api),
        addr(&app.auth),
        &public,
    )
    .to_owned();
    let text = std::fs::read_to_string(dir.join(&other_table)).unwrap();
    let (head, tail) = text.split_once("name = \"bellcore-v2\"").unwrap();
    std::fs::write(
        dir.join(&other_table),
        format!(
            "{head}name = \"bellcore-v2\"{}",
            tail.replacen("custom_4mb.csv", "custom_2mb.csv", 1)
        ),
    )
    .unwrap();
    expect_fail(
        &other_table,
        &[],
        "releases",
        "differs from the partition table of its latest release v1.0.0",
    );
    let no_api = doctor_config(
        &app,
        "no-api.toml",
        &format!("127.0.0.1:{closed}"),
        addr(&app.auth),
        &public,
    );
    expect_fail(&no_api, &[], "api", "/healthz");
    let no_auth = doctor_config(
        &app,
        "no-auth.toml",
        addr(&app.api),
        &format!("127.0.0.1:{closed}"),
        &public,
    );
    expect_fail(&no_auth, &[], "auth listener", "/mqtt/auth/superuser");
    let closed_public = doctor_config(
        &app,
        "closed-public.toml",
        addr(&app.api),
        addr(&app.auth),
        &format!("[deploy]\npublic_url = \"https://127.0.0.1:{closed}\"\n"),
    );
    expect_fail(
        &closed_public,
        &[],
        "public ota",
        "/ota/bellcore-v2/latest.bin",
    );
    let soon = Nginx::start_with_certificate(api_port, &ota, Some(3));
    let soon_cert = certs.path().join("soon.pem");
    std::fs::write(&soon_cert, &soon.cert).unwrap();
    let expiring = doctor_config(
        &app,
        "expiring.toml",
        addr(&app.api),
        addr(&app.auth),
        &format!(
            "[deploy]\npublic_url = \"https://127.0.0.1:{}\"\n",
            soon.https_port
        ),
    );
    let (code, checks) = doctor(&dir, &expiring, &[], &soon_cert);
    assert_eq!(code, 1);
    let tls = verdict(&checks, "tls certificate");
    assert_eq!(tls["verdict"], "fail");
    assert!(
        tls["detail"].as_str().unwrap().contains("expires in"),
        "{tls}"
    );

    // A backend that is not listening to the broker its config names.
    let deaf = App::start().await;
    let deaf_config = doctor_config(&app, "deaf.toml", addr(&deaf.api), addr(&app.auth), &public);
    expect_fail(&deaf_config, &[], "heartbeat listener", "not configured");
    deaf.stop().await;

    // The broker stops: its check and the listener's fail.
    drop(nginx);
    drop(soon);
    let _ = broker.running();
    drop(broker);
    let (code, checks) = doctor(&dir, &good, &[], &cert);
    assert_eq!(code, 1);
    assert_eq!(verdict(&checks, "broker")["verdict"], "fail", "{checks:#?}");
    app.stop().await;
}
