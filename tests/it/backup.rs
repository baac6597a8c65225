//! `vesper backup` while a backend serves a stream of writes, and `vesper restore`: the copy is
//! one consistent point (every batch whole), restores to exactly that point, passes
//! `integrity_check`, and restore refuses a running backend, a damaged backup and an occupied
//! folder. The registries are read with rusqlite directly, not through the product.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;

use crate::backend_support::App;
use crate::support::{stderr, stdout, vesper_env};

/// Every row of the registry's tables, in a fixed order, as text.
fn dump(db: &Path) -> Vec<String> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut rows = Vec::new();
    for table in ["batches", "devices", "audit", "tokens", "outbox"] {
        let mut stmt = conn
            .prepare(&format!("SELECT * FROM {table} ORDER BY rowid"))
            .unwrap();
        let columns = stmt.column_count();
        let mut query = stmt.query([]).unwrap();
        while let Some(row) = query.next().unwrap() {
            let values: Vec<String> = (0..columns)
                .map(|i| format!("{:?}", row.get::<_, rusqlite::types::Value>(i).unwrap()))
                .collect();
            rows.push(format!("{table}: {}", values.join(" | ")));
        }
    }
    rows
}

fn integrity(db: &Path) -> String {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap()
}

/// (batch name, quantity, devices it has) for every batch.
fn batches(db: &Path) -> Vec<(String, i64, i64)> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut stmt = conn
        .prepare("SELECT b.name, b.quantity, (SELECT count(*) FROM devices d WHERE d.batch_id = b.id) FROM batches b ORDER BY b.id")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// `vesper restore FOLDER --data-dir TARGET [--force]`.
fn restore(dir: &Path, folder: &Path, target: &Path, force: bool) -> std::process::Output {
    let mut args = vec![
        "restore",
        folder.to_str().unwrap(),
        "--data-dir",
        target.to_str().unwrap(),
    ];
    if force {
        args.push("--force");
    }
    vesper_env(dir, &args, &[])
}

fn folder_from(out: &std::process::Output) -> PathBuf {
    let said = stdout(out);
    let line = said
        .lines()
        .find(|l| l.starts_with("backed up "))
        .unwrap_or_else(|| panic!("{said}{}", stderr(out)));
    PathBuf::from(line.rsplit(" into ").next().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_during_a_stream_of_writes_restores_to_its_point_and_restore_guards_itself() {
    let app = App::start().await;
    let data = app.dir().join("data");
    let app_image = vesper::demo::app_image(4096, "1.0.0");
    let board_config = app.config().board("bellcore-v2").unwrap().clone();
    vesper::demo::publish_release(&data.join("ota"), &board_config, "1.0.0", app_image.clone())
        .unwrap();

    // Batches of 7 keep arriving over HTTP while the backup runs.
    let stop = Arc::new(AtomicBool::new(false));
    let created = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (client, url, token) = (
            app.client.clone(),
            format!("{}/manufacturing/batch", app.api),
            app.technician.clone(),
        );
        let (stop, created) = (stop.clone(), created.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let r = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({ "board": "bellcore-v2", "quantity": 7 }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), reqwest::StatusCode::CREATED);
                created.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    while created.load(Ordering::Relaxed) < 5 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dest = tempfile::tempdir().unwrap();
    let (dir, dest_path, data_arg) = (
        app.dir().to_owned(),
        dest.path().to_owned(),
        data.display().to_string(),
    );
    let out = tokio::task::spawn_blocking(move || {
        vesper_env(
            &dir,
            &[
                "backup",
                dest_path.to_str().unwrap(),
                "--data-dir",
                &data_arg,
            ],
            &[],
        )
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let during = created.load(Ordering::Relaxed);
    // A few more batches after the backup's point, whatever the machine's load.
    while created.load(Ordering::Relaxed) < during + 3 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    let folder = folder_from(&out);

    // One consistent point: every batch in the copy is whole, and the copy is a prefix of the live registry.
    let copy = folder.join("registry.sqlite3");
    assert_eq!(integrity(&copy), "ok");
    let copied = batches(&copy);
    assert!(copied.len() >= 5, "{copied:?}");
    assert!(
        copied
            .iter()
            .all(|(_, quantity, devices)| quantity == devices),
        "{copied:?}"
    );
    let live = batches(&data.join("registry.sqlite3"));
    assert!(
        live.len() > copied.len() && copied.len() <= during + 1,
        "{} live, {} copied",
        live.len(),
        copied.len()
    );
    assert_eq!(live[..copied.len()], copied[..]);
    // The manifest is what sha256sum reads.
    let check = std::process::Command::new("sha256sum")
        .args(["-c", "--quiet", "MANIFEST.sha256"])
        .current_dir(&folder)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    assert!(folder.join("config/config.toml").is_file());
    assert!(folder.join("config/partitions/custom_4mb.csv").is_file());

    // Not onto the data folder a backend serves.
    let out = restore(app.dir(), &folder, &data, true);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("a vesper serve is running on"),
        "{}",
        stderr(&out)
    );

    // Into a fresh folder: exactly the backup's point, with the OTA tree and its links.
    let fresh = tempfile::tempdir().unwrap();
    let target = fresh.path().join("data");
    let out = restore(app.dir(), &folder, &target, false);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("integrity_check ok"),
        "{}",
        stdout(&out)
    );
    assert_eq!(dump(&target.join("registry.sqlite3")), dump(&copy));
    assert_eq!(integrity(&target.join("registry.sqlite3")), "ok");
    assert_eq!(
        std::fs::read_link(target.join("ota/bellcore-v2/latest.bin")).unwrap(),
        Path::new("latest/ota.bin")
    );
    assert_eq!(
        std::fs::read(target.join("ota/bellcore-v2/latest.bin")).unwrap(),
        app_image
    );
    // A second time, the folder is occupied.
    let out = restore(app.dir(), &folder, &target, false);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("already holds a registry; pass --force"),
        "{}",
        stderr(&out)
    );

    // A damaged backup is refused before anything is touched.
    std::fs::write(
        folder.join("ota/bellcore-v2/v1.0.0/ota.bin"),
        vec![0xE8; 4096],
    )
    .unwrap();
    let out = restore(app.dir(), &folder, &target, true);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("ota/bellcore-v2/v1.0.0/ota.bin does not match its SHA-256"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        dump(&target.join("registry.sqlite3")),
        dump(&copy),
        "untouched"
    );
    app.stop().await;
}

/// Issue 25, finding 4: a tampered backup cannot make the server serve its own files. A link that
/// is not one of the OTA layout's (here `v9.9.9.bin -> /etc/hostname`, listed in SYMLINKS and the
/// manifest re-hashed, as an attacker would) is refused before a byte is restored; and a link
/// that leads out of the OTA root is never served, whatever put it there.
#[tokio::test(flavor = "multi_thread")]
async fn a_backup_with_a_foreign_link_is_refused_and_no_link_is_served_out_of_the_ota_root() {
    let app = App::start().await;
    let data = app.dir().join("data");
    let board_config = app.config().board("bellcore-v2").unwrap().clone();
    vesper::demo::publish_release(
        &data.join("ota"),
        &board_config,
        "1.0.0",
        vesper::demo::app_image(4096, "1.0.0"),
    )
    .unwrap();
    let out = vesper_env(app.dir(), &["backup", "backups"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let folder = folder_from(&out);
    let folder = if folder.is_absolute() {
        folder
    } else {
        app.dir().join(folder)
    };

    for (name, target) in [
        ("v9.9.9.bin", "/etc/hostname"),
        ("latest.json", "../../../../etc/hostname"),
        ("v9.9.9.bin", "v1.0.0/ota.bin"),
    ] {
        let tampered = tempfile::tempdir().unwrap();
        let copy = tampered.path().join("b");
        assert!(
            std::process::Command::new("cp")
                .arg("-a")
                .arg(&folder)
                .arg(&copy)
                .status()
                .unwrap()
                .success()
        );
        let link = copy.join("ota/bellcore-v2").join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(target, &link).unwrap();
        let mut listed = std::fs::read_to_string(copy.join("SYMLINKS")).unwrap();
        listed.push_str(&format!("ota/bellcore-v2/{name} -> {target}\n"));
        std::fs::write(copy.join("SYMLINKS"), listed).unwrap();
        // The manifest re-hashed for the new SYMLINKS, as an attacker can.
        let manifest = std::fs::read_to_string(copy.join("MANIFEST.sha256")).unwrap();
        let symlinks_sum =
            vesper::firmware::sha256_hex(&std::fs::read(copy.join("SYMLINKS")).unwrap());
        let manifest: String = manifest
            .lines()
            .map(|l| {
                if l.ends_with("  SYMLINKS") {
                    format!("{symlinks_sum}  SYMLINKS\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        std::fs::write(copy.join("MANIFEST.sha256"), manifest).unwrap();
        let target_dir = tampered.path().join("restored");
        let out = restore(app.dir(), &copy, &target_dir, false);
        assert_eq!(out.status.code(), Some(1), "{name} -> {target}");
        let said = stderr(&out);
        assert!(
            said.contains("is not a link of the OTA layout") || said.contains("points at nothing"),
            "{name} -> {target}: {said}"
        );
        assert!(
            !target_dir.join("registry.sqlite3").exists(),
            "nothing restored"
        );
        assert!(!target_dir.join("ota").exists(), "nothing restored");
    }

    // Serve time: a link out of the OTA root (put there by anything) is 404, not the file.
    let board_dir = app.config().serve.ota_root.join("bellcore-v2");
    std::os::unix::fs::symlink("/etc/hostname", board_dir.join("v9.9.9.bin")).unwrap();
    std::fs::create_dir_all(board_dir.join("v9.9.8")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", board_dir.join("v9.9.8/ota.bin")).unwrap();
    for path in [
        "/ota/bellcore-v2/v9.9.9.bin",
        "/ota/bellcore-v2/v9.9.8/ota.bin",
    ] {
        let r = app
            .client
            .get(format!("{}{path}", app.api))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::NOT_FOUND, "{path}");
    }
    // The layout's own links are still served.
    let r = app
        .client
        .get(format!("{}/ota/bellcore-v2/latest.bin", app.api))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    app.stop().await;
}
