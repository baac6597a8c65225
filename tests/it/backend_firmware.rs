//! Firmware releases: publishing checks and atomic layout, the manifest API with download URLs,
//! and the OTA files served by the backend.

use reqwest::StatusCode;
use serde_json::Value;
use sha2::Digest as _;

use vesper::firmware::{self, FirmwareError, PartSpec};

use crate::backend_support::App;

/// A fake ESP image: the 0xE9 magic and `len` bytes.
fn image(len: usize, seed: u8) -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    bytes[0] = firmware::IMAGE_MAGIC;
    bytes
}

/// Writes a PlatformIO-like set of parts for bellcore-v2; returns their specs.
fn parts(dir: &std::path::Path, app: &App) -> Vec<PartSpec> {
    let board = app.config().board("bellcore-v2").unwrap();
    let files = [
        ("bootloader.bin", image(0x4000, 1)),
        ("partitions.bin", board.table.to_bin().unwrap()),
        ("boot_app0.bin", vec![0xFF; 0x2000]),
        ("firmware.bin", image(200_000, 7)),
    ];
    files
        .into_iter()
        .map(|(name, bytes)| {
            let path = dir.join(name);
            std::fs::write(&path, bytes).unwrap();
            PartSpec { path, offset: None }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_published_release_is_served_with_its_manifest() {
    let app = App::start().await;
    let work = tempfile::tempdir().unwrap();
    let specs = parts(work.path(), &app);
    let board = app.config().board("bellcore-v2").unwrap();
    let ota = &app.config().serve.ota_root;
    let manifest = firmware::publish(ota, board, "1.0.1", &specs).unwrap();
    let offsets: Vec<(String, u32)> = manifest.builds[0]
        .parts
        .iter()
        .map(|p| (p.path.clone(), p.offset))
        .collect();
    assert_eq!(
        offsets,
        [
            ("bootloader.bin", 0x1000),
            ("partitions.bin", 0x8000),
            ("boot_app0.bin", 0xf000),
            ("firmware.bin", 0x20000)
        ]
        .map(|(n, o)| (n.to_owned(), o))
    );
    assert_eq!(manifest.builds[0].chip_family, "ESP32");
    for file in [
        "v1.0.1.bin",
        "latest.bin",
        "latest.json",
        "v1.0.1/manifest.json",
        "v1.0.1/firmware.bin",
    ] {
        assert!(ota.join("bellcore-v2").join(file).is_file(), "{file}");
    }
    assert!(
        !std::fs::read_dir(ota.join("bellcore-v2"))
            .unwrap()
            .any(|e| e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".staging"))
    );

    let v: Value = app
        .get("/manufacturing/firmware/BC/02", &app.viewer)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["version"], "1.0.1");
    for part in v["builds"][0]["parts"].as_array().unwrap() {
        let url = part["path"].as_str().unwrap();
        assert!(url.starts_with(&app.api), "{url}");
        let bytes = app
            .client
            .get(url)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let digest: String = sha2::Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(digest, part["sha256"].as_str().unwrap(), "{url}");
        assert_eq!(bytes.len() as u64, part["size"].as_u64().unwrap());
    }
    let app_bin = app
        .client
        .get(v["app_url"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(app_bin.len(), 200_000);

    let (_, sns) = app.batch(1).await;
    let device_fw = app
        .get(
            &format!("/manufacturing/devices/{}/firmware.bin", sns[0]),
            &app.viewer,
        )
        .await;
    assert_eq!(device_fw.status(), StatusCode::OK);
    assert_eq!(device_fw.bytes().await.unwrap(), app_bin);

    let newer = firmware::publish(ota, board, "1.0.2", &specs).unwrap();
    assert_eq!(newer.version, "1.0.2");
    let v: Value = app
        .get("/manufacturing/firmware/BC/02", &app.viewer)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["version"], "1.0.2");
    let v: Value = app
        .get("/manufacturing/firmware/BC/02?version=1.0.1", &app.viewer)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["version"], "1.0.1");
    assert_eq!(
        app.get("/manufacturing/firmware/BC/01", &app.viewer)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/manufacturing/firmware/BC/02?version=9.9.9", &app.viewer)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/manufacturing/firmware/BC/02?version=9.9", &app.viewer)
            .await
            .status(),
        StatusCode::BAD_REQUEST,
        "not a semantic version"
    );
    assert_eq!(
        app.get("/manufacturing/firmware/BC/02?version=../x", &app.viewer)
            .await
            .status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(firmware::versions(ota, "bellcore-v2"), ["1.0.1", "1.0.2"]);

    for path in [
        "/ota/bellcore-v2/..%2F..%2Fregistry.sqlite3",
        "/ota/..%2Fdata/registry.sqlite3",
        "/ota/bellcore-v2/.hidden",
        "/ota/bellcore-v2/v1.0.1/..",
        "/ota/bellcore-v2/missing.bin",
    ] {
        let r = app
            .client
            .get(format!("{}{path}", app.api))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unsafe_releases_are_refused_and_leave_nothing_behind() {
    let app = App::start().await;
    let work = tempfile::tempdir().unwrap();
    let specs = parts(work.path(), &app);
    let board = app.config().board("bellcore-v2").unwrap();
    let ota = &app.config().serve.ota_root;
    let with = |extra: PartSpec| {
        let mut s = specs.clone();
        s.push(extra);
        s
    };
    let write = |name: &str, bytes: Vec<u8>| {
        let path = work.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let over_nvs = write("calibration.bin", vec![1; 0x100]);
    let err = firmware::publish(
        ota,
        board,
        "2.0.0",
        &with(PartSpec {
            path: over_nvs.clone(),
            offset: Some(0xA000),
        }),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("overlaps the NVS partition"),
        "{err}"
    );
    let err = firmware::publish(
        ota,
        board,
        "2.0.0",
        &with(PartSpec {
            path: over_nvs.clone(),
            offset: Some(0x21000),
        }),
    )
    .unwrap_err();
    assert!(matches!(err, FirmwareError::Overlap(..)), "{err}");
    let err = firmware::publish(
        ota,
        board,
        "2.0.0",
        &with(PartSpec {
            path: over_nvs,
            offset: Some(0x3FFFF0),
        }),
    )
    .unwrap_err();
    assert!(err.to_string().contains("beyond the 4 MB flash"), "{err}");

    let mut not_an_image = specs.clone();
    not_an_image[3] = PartSpec {
        path: write("firmware-zeros.bin", vec![0; 1000]),
        offset: None,
    };
    let err = firmware::publish(ota, board, "2.0.0", &not_an_image).unwrap_err();
    assert!(
        err.to_string().contains("not an ESP application image"),
        "{err}"
    );
    let mut too_big = specs.clone();
    too_big[3] = PartSpec {
        path: write("firmware-big.bin", image(0x1E0001, 3)),
        offset: None,
    };
    let err = firmware::publish(ota, board, "2.0.0", &too_big).unwrap_err();
    assert!(
        err.to_string()
            .contains("larger than its 0x1e0000-byte app partition"),
        "{err}"
    );
    let mut wrong_table = specs.clone();
    let two_mb = vesper::files::partition_table(
        &crate::support::vectors("partitions").join("pt_2mb_ota.csv"),
    )
    .unwrap();
    wrong_table[1] = PartSpec {
        path: write("partitions-2mb.bin", two_mb.to_bin().unwrap()),
        offset: None,
    };
    let err = firmware::publish(ota, board, "2.0.0", &wrong_table).unwrap_err();
    assert!(
        err.to_string().contains("puts `nvs` at 0x9000+0x4000"),
        "{err}"
    );
    let err = firmware::publish(ota, board, "2.0.0", &specs[..3]).unwrap_err();
    assert!(matches!(err, FirmwareError::AppCount(0)), "{err}");
    for bad in [
        "",
        "../1",
        "1/2",
        ".1",
        &"9".repeat(70),
        "1.5.0.bin",
        "v1.0.0",
        "1.5",
        "latest",
    ] {
        assert!(
            matches!(
                firmware::publish(ota, board, bad, &specs),
                Err(FirmwareError::BadVersion(_))
            ),
            "{bad:?}"
        );
    }
    assert!(
        !ota.join("bellcore-v2").exists() || firmware::versions(ota, "bellcore-v2").is_empty(),
        "a refused release writes nothing"
    );
    firmware::publish(ota, board, "2.0.0", &specs).unwrap();
    let err = firmware::publish(ota, board, "2.0.0", &specs).unwrap_err();
    assert!(matches!(err, FirmwareError::Exists { .. }), "{err}");
    app.stop().await;
}

/// Issue 25, finding 9: a publisher cannot break a board's releases. Versions are semantic
/// versions (`1.5.0.bin` squatted the link of 1.5.0); parts cannot take the names the release
/// tree uses; a publish that fails half-way leaves nothing and can be retried; and the upload
/// route's errors never show a server path.
#[tokio::test(flavor = "multi_thread")]
async fn a_publisher_cannot_squat_a_version_overwrite_the_manifest_or_leave_a_half_release() {
    let app = App::start().await;
    let work = tempfile::tempdir().unwrap();
    let specs = parts(work.path(), &app);
    let board = app.config().board("bellcore-v2").unwrap();
    let ota = &app.config().serve.ota_root;
    let err = firmware::publish(ota, board, "1.5.0.bin", &specs).unwrap_err();
    assert!(
        err.to_string()
            .contains("version `1.5.0.bin` is not a semantic version"),
        "{err}"
    );
    // A part called manifest.json (or latest.*) would be overwritten by, or stand for, the tree.
    for reserved in ["manifest.json", "latest.bin", "latest.json"] {
        let mut renamed = specs.clone();
        let path = work.path().join(reserved);
        std::fs::copy(&specs[0].path, &path).unwrap();
        renamed[0] = PartSpec {
            path,
            offset: Some(0x1000),
        };
        let err = firmware::publish(ota, board, "1.5.0", &renamed).unwrap_err();
        assert!(
            err.to_string()
                .contains("a name the release folder uses for itself"),
            "{reserved}: {err}"
        );
    }
    assert!(firmware::versions(ota, "bellcore-v2").is_empty());
    // A link that cannot be made (its name taken by a folder): nothing is left, and once the
    // cause is gone the same version publishes.
    let obstacle = ota.join("bellcore-v2/v1.5.0.bin");
    std::fs::create_dir_all(obstacle.join("in-the-way")).unwrap();
    assert!(firmware::publish(ota, board, "1.5.0", &specs).is_err());
    assert!(!ota.join("bellcore-v2/v1.5.0").exists(), "no half release");
    assert!(!ota.join("bellcore-v2/latest").exists());
    std::fs::remove_dir_all(&obstacle).unwrap();
    firmware::publish(ota, board, "1.5.0", &specs).unwrap();
    assert_eq!(firmware::versions(ota, "bellcore-v2").len(), 1);

    // Through the upload route: refusals name parts and versions, never a server path.
    let publisher = app
        .registry()
        .create_token("firmware-ci", vesper::registry::Role::Publisher, "test")
        .unwrap();
    let upload = |version: &str, names: &[&str]| {
        let mut parts = Vec::new();
        let mut form = reqwest::multipart::Form::new();
        for (i, name) in names.iter().enumerate() {
            let offset = [0x1000, 0x8000, 0xf000, 0x20000][i];
            parts.push(serde_json::json!({ "path": name, "offset": offset }));
            let bytes = std::fs::read(&specs[i].path).unwrap();
            form = form.part(
                name.to_string(),
                reqwest::multipart::Part::bytes(bytes).file_name(name.to_string()),
            );
        }
        let manifest = serde_json::json!({ "name": "b", "builds": [{ "chipFamily": "ESP32", "parts": parts }] });
        app.client
            .post(format!(
                "{}/manufacturing/firmware/bellcore-v2/{version}",
                app.api
            ))
            .bearer_auth(&publisher)
            .multipart(form.text("manifest", manifest.to_string()))
    };
    let roots = [
        ota.display().to_string(),
        std::env::temp_dir().display().to_string(),
        app.dir().display().to_string(),
    ];
    for (version, names, said) in [
        (
            "1.6.0.bin",
            [
                "bootloader.bin",
                "partitions.bin",
                "boot_app0.bin",
                "firmware.bin",
            ],
            "is not a semantic version",
        ),
        (
            "1.6.0",
            [
                "bootloader.bin",
                "manifest.json",
                "boot_app0.bin",
                "firmware.bin",
            ],
            "a name the release folder uses for itself",
        ),
    ] {
        let r = upload(version, &names).send().await.unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::BAD_REQUEST, "{version}");
        let body: Value = r.json().await.unwrap();
        let error = body["error"].as_str().unwrap();
        assert!(error.contains(said), "{error}");
        for root in &roots {
            assert!(!error.contains(root.as_str()), "a server path in {error}");
        }
    }
    assert_eq!(firmware::versions(ota, "bellcore-v2").len(), 1);
    app.stop().await;
}

/// The SHA-256 of a file, as hex.
fn sha256_of(path: &std::path::Path) -> String {
    crate::support::sha256_hex(&std::fs::read(path).unwrap())
}

/// The release `latest.json` names, checked whole: every part of its manifest is there with its
/// SHA-256, and `latest.bin` is that release's app. Returns the version.
fn latest_is_whole(board_dir: &std::path::Path) -> Option<String> {
    let text = std::fs::read(board_dir.join("latest.json")).ok()?;
    let manifest: Value = serde_json::from_slice(&text).expect("latest.json is JSON");
    let version = manifest["version"].as_str().unwrap().to_owned();
    let release = board_dir.join(format!("v{version}"));
    let app = manifest["app"].as_str().unwrap();
    for part in manifest["builds"][0]["parts"].as_array().unwrap() {
        let name = part["path"].as_str().unwrap();
        assert_eq!(
            sha256_of(&release.join(name)),
            part["sha256"].as_str().unwrap(),
            "v{version}/{name} is not whole"
        );
        if name == app {
            assert_eq!(
                sha256_of(&board_dir.join("latest.bin")),
                part["sha256"].as_str().unwrap(),
                "latest.bin is not the app of latest.json (v{version})"
            );
        }
    }
    Some(version)
}

/// `vesper firmware publish` killed with SIGKILL at random points: after every kill, the latest
/// release is the old one or the new one, whole, and `latest.bin` always matches `latest.json`.
#[test]
fn a_publish_killed_at_any_point_leaves_one_whole_latest_release() {
    use rand::Rng;
    let dir = tempfile::tempdir().unwrap();
    crate::backend_support::write_config(dir.path(), "http://127.0.0.1:9/unused");
    let work = dir.path().join("parts");
    std::fs::create_dir_all(&work).unwrap();
    let config = vesper::config::load(&dir.path().join("config.toml")).unwrap();
    let board = config.board("bellcore-v2").unwrap();
    std::fs::write(work.join("bootloader.bin"), image(0x4000, 1)).unwrap();
    std::fs::write(work.join("partitions.bin"), board.table.to_bin().unwrap()).unwrap();
    std::fs::write(work.join("boot_app0.bin"), vec![0xFF; 0x2000]).unwrap();
    let board_dir = config.serve.ota_root.join("bellcore-v2");
    let publish = |version: &str, seed: u8| {
        std::fs::write(work.join("firmware.bin"), image(900_000, seed)).unwrap();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_vesper"));
        cmd.current_dir(dir.path())
            .env_remove("VESPER_CONFIG")
            .env("HOME", dir.path())
            .args(["firmware", "publish", "bellcore-v2", version])
            .args(
                [
                    "bootloader.bin",
                    "partitions.bin",
                    "boot_app0.bin",
                    "firmware.bin",
                ]
                .map(|f| work.join(f)),
            )
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        cmd
    };
    // One whole run to time it.
    let started = std::time::Instant::now();
    assert!(publish("1.0.0", 0).status().unwrap().success());
    let full = started.elapsed();
    assert_eq!(latest_is_whole(&board_dir).as_deref(), Some("1.0.0"));

    let mut rng = rand::rng();
    let mut longest = full.mul_f64(1.2);
    let (mut killed, mut old, mut new) = (0, 0, 0);
    for round in 1..=40u8 {
        let version = format!("1.0.{round}");
        let before = latest_is_whole(&board_dir);
        let mut child = publish(&version, round).spawn().unwrap();
        let delay = longest.mul_f64(rng.random_range(0.0..1.0));
        std::thread::sleep(delay);
        // The kill window follows how long a publish takes on the machine right now (other
        // tests run beside this one): shorter after a publish that finished first, longer after
        // a kill that landed.
        if child.try_wait().unwrap().is_none() {
            killed += 1;
            longest = longest.mul_f64(1.1);
        } else {
            longest = longest.mul_f64(0.7);
        }
        let _ = child.kill();
        let _ = child.wait();
        let after = latest_is_whole(&board_dir);
        if after.as_deref() == Some(version.as_str()) {
            new += 1;
        } else {
            assert_eq!(
                after, before,
                "round {round}: latest is neither the old nor the new release"
            );
            old += 1;
        }
    }
    eprintln!(
        "publish killed in flight {killed} of 40 times; latest stayed old {old}, became new {new}"
    );
    assert!(
        killed >= 15,
        "kills must land while publishing ({killed} of 40)"
    );
    assert!(old > 0, "some kills must land before the swap");
}

/// Firmware files are streamed with their length, and at most MAX_DOWNLOADS at once; the next
/// one is told to come back (503 with Retry-After) instead of piling up.
#[tokio::test(flavor = "multi_thread")]
async fn downloads_stream_and_are_limited() {
    let app = App::start().await;
    let dir = app.config().serve.ota_root.join("bellcore-v2");
    std::fs::create_dir_all(&dir).unwrap();
    let big = vec![0xA5u8; 32 << 20];
    std::fs::write(dir.join("big.bin"), &big).unwrap();
    let url = format!("{}/ota/bellcore-v2/big.bin", app.api);
    let whole = app.client.get(&url).send().await.unwrap();
    assert_eq!(
        whole.headers()["content-length"],
        (32u64 << 20).to_string().as_str()
    );
    assert_eq!(whole.bytes().await.unwrap().len(), 32 << 20);

    // Hold every slot with readers that never read.
    let mut held = Vec::new();
    for _ in 0..vesper::server::MAX_DOWNLOADS {
        let r = reqwest::Client::new().get(&url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        held.push(r);
    }
    let refused = app.client.get(&url).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()["retry-after"], "5");
    // The API still answers, and a slot frees when a download ends.
    assert_eq!(
        app.get("/manufacturing/stats", &app.viewer).await.status(),
        StatusCode::OK
    );
    drop(held.pop());
    let mut again = StatusCode::SERVICE_UNAVAILABLE;
    for _ in 0..50 {
        again = app.client.get(&url).send().await.unwrap().status();
        if again == StatusCode::OK {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(again, StatusCode::OK);
    drop(held);
    app.stop().await;
}

/// A firmware CI's upload: the `vesper firmware publish --to` command with a publisher token,
/// then raw multipart requests with a plain ESP Web Tools manifest (no size or sha256), a part
/// that does not match its sum, the wrong roles and a version that exists.
#[tokio::test(flavor = "multi_thread")]
async fn a_release_uploaded_by_a_publisher_token_is_published_like_the_command_does() {
    let app = App::start().await;
    let publisher = app
        .registry()
        .create_token("firmware-ci", vesper::registry::Role::Publisher, "test")
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let specs = parts(dir.path(), &app);
    let files: Vec<String> = specs.iter().map(|s| s.path.display().to_string()).collect();
    let mut args = vec!["firmware", "publish", "bellcore-v2", "1.4.0"];
    args.extend(files.iter().map(String::as_str));
    args.extend(["--to", app.api.as_str()]);
    let (config_dir, args): (std::path::PathBuf, Vec<String>) = (
        app.dir().to_owned(),
        args.iter().map(|s| s.to_string()).collect(),
    );
    let token = publisher.clone();
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        crate::support::vesper_env(&config_dir, &args, &[("VESPER_TOKEN", token.as_str())])
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", crate::support::stderr(&out));
    assert!(
        crate::support::stdout(&out).contains("published bellcore-v2 v1.4.0 at"),
        "{}",
        crate::support::stdout(&out)
    );
    // Served as the command's release would be, audited with the CI's token name.
    let latest = app
        .client
        .get(format!("{}/ota/bellcore-v2/latest.bin", app.api))
        .send()
        .await
        .unwrap();
    assert_eq!(
        latest.bytes().await.unwrap().as_ref(),
        std::fs::read(dir.path().join("firmware.bin"))
            .unwrap()
            .as_slice()
    );
    let audit = app
        .registry()
        .audit(&vesper::model::AuditQuery {
            action: Some("firmware.publish".into()),
            limit: 5,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        (audit[0].actor.as_str(), audit[0].subject.as_deref()),
        ("firmware-ci", Some("bellcore-v2/v1.4.0"))
    );

    // A plain ESP Web Tools manifest (path and offset only), as ESPHome and PlatformIO write it.
    let upload = |version: &str, token: &str, manifest: Value| {
        let mut form = reqwest::multipart::Form::new().text("manifest", manifest.to_string());
        for name in [
            "bootloader.bin",
            "partitions.bin",
            "boot_app0.bin",
            "firmware.bin",
        ] {
            let bytes = std::fs::read(dir.path().join(name)).unwrap();
            form = form.part(name, reqwest::multipart::Part::bytes(bytes).file_name(name));
        }
        app.client
            .post(format!(
                "{}/manufacturing/firmware/bellcore-v2/{version}",
                app.api
            ))
            .bearer_auth(token)
            .multipart(form)
    };
    let plain = serde_json::json!({
        "name": "Bellcore",
        "builds": [{ "chipFamily": "ESP32", "parts": [
            { "path": "bootloader.bin", "offset": 4096 },
            { "path": "partitions.bin", "offset": 32768 },
            { "path": "boot_app0.bin", "offset": 61440 },
            { "path": "firmware.bin", "offset": 131072 },
        ]}],
    });
    let r = upload("1.5.0", &publisher, plain.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let published: Value = r.json().await.unwrap();
    assert_eq!(published["version"], "1.5.0");
    assert_eq!(
        firmware::versions(&app.config().serve.ota_root, "bellcore-v2"),
        ["1.4.0", "1.5.0"]
    );

    let mut damaged = plain.clone();
    damaged["builds"][0]["parts"][3]["sha256"] = "00".repeat(32).into();
    let r = upload("1.6.0", &publisher, damaged).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let said: Value = r.json().await.unwrap();
    assert!(
        said["error"]
            .as_str()
            .unwrap()
            .contains("firmware.bin does not match the manifest's sha256"),
        "{said}"
    );
    let mut overlapping = plain.clone();
    overlapping["builds"][0]["parts"][3]["offset"] = 0x9000.into();
    let r = upload("1.6.0", &publisher, overlapping)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::BAD_REQUEST,
        "the command's checks apply"
    );
    assert_eq!(
        upload("1.5.0", &publisher, plain.clone())
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::CONFLICT
    );
    // Refused before the body is read: a small body, so the answer is not lost while a large
    // one is still being sent (HTTP/1.1 clients read the answer after sending).
    for token in [&app.technician, &app.viewer] {
        let form = reqwest::multipart::Form::new().text("manifest", plain.to_string());
        assert_eq!(
            app.client
                .post(format!(
                    "{}/manufacturing/firmware/bellcore-v2/1.7.0",
                    app.api
                ))
                .bearer_auth(token)
                .multipart(form)
                .send()
                .await
                .unwrap()
                .status(),
            StatusCode::FORBIDDEN
        );
    }
    assert_eq!(
        upload("1.7.0", &app.admin, plain)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::CREATED
    );
    assert!(
        !app.config()
            .serve
            .ota_root
            .join("bellcore-v2/v1.6.0")
            .exists(),
        "nothing of a refused release"
    );
    // A publisher publishes and reads nothing else.
    assert_eq!(
        app.get("/manufacturing/batches", &publisher).await.status(),
        StatusCode::FORBIDDEN
    );
    app.stop().await;
}
