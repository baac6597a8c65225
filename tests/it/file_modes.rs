//! Files that hold secrets or personal data are the owner's alone whatever the umask (issue 25,
//! finding 6): every writing command runs here under umask 022, as a shell's default, and the
//! test reads the modes the kernel reports. NVS images (a device's MQTT password), configs (a
//! token), the data folder and registry (customers' addresses), backups, and mail files.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output};

use crate::backend_support::{SECRET, write_config};
use crate::support::{root, stderr};

/// `vesper ARGS` in `dir` under umask 022 (through `sh -c 'umask 022; exec ...'`).
fn vesper_umask(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("umask 022; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_vesper"))
        .args(args)
        .current_dir(dir)
        .env_remove("VESPER_CONFIG")
        .env("XDG_CONFIG_HOME", dir.join(".no-user-config"))
        .env("HOME", dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run vesper");
    assert!(out.status.success(), "vesper {args:?}: {}", stderr(&out));
    out
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn assert_private(path: &Path) {
    let expected = if path.is_dir() { 0o700 } else { 0o600 };
    assert_eq!(
        mode(path),
        expected,
        "{} is {:o}",
        path.display(),
        mode(path)
    );
}

#[test]
fn every_writing_command_keeps_secrets_to_the_owner_under_umask_022() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let secret = [("MQTT_SECRET", SECRET)];

    // vesper init: the config may come to hold a token.
    let fresh = d.join("fresh");
    vesper_umask(d, &["init", "--dir", fresh.to_str().unwrap()], &[]);
    assert_private(&fresh.join("config.toml"));

    // The data folder and the registry, made by the first command that opens them.
    write_config(d, "http://127.0.0.1:9/jwks");
    vesper_umask(d, &["token", "create", "admin-1", "--role", "admin"], &[]);
    assert_private(&d.join("data"));
    assert_private(&d.join("data/registry.sqlite3"));
    for extra in ["registry.sqlite3-wal", "registry.sqlite3-shm"] {
        let path = d.join("data").join(extra);
        if path.exists() {
            assert_private(&path);
        }
    }

    // NVS images: a device's (its MQTT password), one from CSV, and a dump back to CSV.
    let registry = vesper::registry::Registry::open(&d.join("data")).unwrap();
    let batch = registry
        .create_batch(
            &vesper::model::NewBatch {
                board: &vesper::config::load(&d.join("config.toml")).unwrap().boards[1],
                quantity: 1,
                subscription_plan: "standard".into(),
                available_outputs: 8,
            },
            "test",
        )
        .unwrap();
    let sn = batch.devices[0].serial_number.clone();
    vesper_umask(
        d,
        &["nvs", "device", &sn, "--output", "device.bin"],
        &secret,
    );
    assert_private(&d.join("device.bin"));
    std::fs::write(
        d.join("in.csv"),
        "key,type,encoding,value\nvesper,namespace,,\nmqtt_pass,data,string,25fd3d9acfa670d8cb7a309e440d2ef1\n",
    )
    .unwrap();
    vesper_umask(d, &["nvs", "generate", "in.csv", "gen.bin", "0x3000"], &[]);
    assert_private(&d.join("gen.bin"));
    vesper_umask(
        d,
        &["nvs", "dump", "device.bin", "--output", "dump.csv"],
        &[],
    );
    assert_private(&d.join("dump.csv"));

    // boards import --write rewrites the config (a board's flash mode differs from the
    // PlatformIO project's here): still the owner's alone.
    let config = std::fs::read_to_string(d.join("config.toml")).unwrap();
    std::fs::write(
        d.join("config.toml"),
        config.replacen("flash_mode = \"dout\"", "flash_mode = \"dio\"", 1),
    )
    .unwrap();
    std::fs::set_permissions(
        d.join("config.toml"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let ini = root().join("firmware/platformio.ini");
    let out = vesper_umask(
        d,
        &["boards", "import", ini.to_str().unwrap(), "--write"],
        &[],
    );
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        std::fs::read_to_string(d.join("config.toml"))
            .unwrap()
            .contains("flash_mode = \"dout\""),
        "the import wrote the config: {said}"
    );
    assert_private(&d.join("config.toml"));

    // A backup: the folder, the registry copy, the config copy and the manifest.
    vesper_umask(d, &["backup", "backups"], &[]);
    let backup = std::fs::read_dir(d.join("backups"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_private(&d.join("backups"));
    assert_private(&backup);
    assert_private(&backup.join("registry.sqlite3"));
    for entry in walk(&backup.join("config")) {
        assert_private(&entry);
    }

    // Mail written by the files provider: a customer's address.
    let out = vesper_umask(d, &["mail", "test", "--to", "ops@example.com"], &[]);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    let eml = said
        .lines()
        .find_map(|l| l.strip_prefix("accepted: wrote "))
        .unwrap_or_else(|| panic!("{said}"));
    let eml = d.join(eml.trim());
    assert_private(&eml);
    assert_private(eml.parent().unwrap());
}

/// Every file below `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
