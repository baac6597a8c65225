//! Firmware releases from a PlatformIO build: `vesper firmware publish --pio` names what is
//! missing, and refuses an app whose own `esp_app_desc_t` is not the release it is published as.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::backend_support::App;
use crate::support::{stderr, stdout, vesper_env};

/// A PlatformIO build folder (`.pio/build/bellcore-v2`) as `pio run` leaves it: bootloader,
/// partition table and app; boot_app0.bin is the framework's, not in the folder.
pub fn pio_build(dir: &Path, app: &App, version: &str) -> PathBuf {
    pio_build_with(dir, app, version, vesper::demo::app_image(300_000, version))
}

pub fn pio_build_with(dir: &Path, app: &App, version: &str, image: Vec<u8>) -> PathBuf {
    let board = app.config().board("bellcore-v2").unwrap();
    let build = dir.join(format!("pio-{version}/.pio/build/bellcore-v2"));
    std::fs::create_dir_all(&build).unwrap();
    let mut bootloader = vesper::demo::app_image(0x4200, "bootloader");
    bootloader[32..36].fill(0);
    std::fs::write(build.join("bootloader.bin"), bootloader).unwrap();
    std::fs::write(build.join("partitions.bin"), board.table.to_bin().unwrap()).unwrap();
    std::fs::write(build.join("firmware.bin"), image).unwrap();
    build
}

/// `vesper firmware publish bellcore-v2 VERSION --pio BUILD` on the backend's configuration, with
/// PlatformIO's core folder holding the Arduino framework's boot_app0.bin.
pub async fn publish_pio(app: &App, build: &Path, version: &str) {
    let core = build.parent().unwrap().join("platformio-core");
    let tools = core.join("packages/framework-arduinoespressif32/tools/partitions");
    std::fs::create_dir_all(&tools).unwrap();
    std::fs::write(tools.join("boot_app0.bin"), vec![0xFF; 0x2000]).unwrap();
    let (dir, build, version) = (app.dir().to_owned(), build.to_owned(), version.to_owned());
    let out = tokio::task::spawn_blocking(move || {
        vesper_env(
            &dir,
            &[
                "firmware",
                "publish",
                "bellcore-v2",
                &version,
                "--pio",
                build.to_str().unwrap(),
            ],
            &[("PLATFORMIO_CORE_DIR", core.to_str().unwrap())],
        )
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
}

/// `publish --pio` names what is missing: the build itself, or boot_app0.bin (with where it
/// looked), and takes boot_app0.bin given with --boot-app0.
#[tokio::test(flavor = "multi_thread")]
async fn publish_from_a_platformio_build_names_what_is_missing() {
    let app = App::start().await;
    let work = tempfile::tempdir().unwrap();
    let build = pio_build(work.path(), &app, "2.0.0");
    let run = |args: Vec<String>| {
        let dir = app.dir().to_owned();
        async move {
            tokio::task::spawn_blocking(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                vesper_env(&dir, &args, &[])
            })
            .await
            .unwrap()
        }
    };
    let publish = |extra: &[&str]| {
        let mut args: Vec<String> = ["firmware", "publish", "bellcore-v2", "2.0.0", "--pio"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.push(build.display().to_string());
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let out = run(publish(&[])).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("needs boot_app0.bin; looked in")
            && stderr(&out).contains("(give it with --boot-app0 FILE)"),
        "{}",
        stderr(&out)
    );
    let boot_app0 = work.path().join("boot_app0.bin");
    std::fs::write(&boot_app0, vec![0xFF; 0x2000]).unwrap();
    let out = run(publish(&["--boot-app0", boot_app0.to_str().unwrap()])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(app.config().serve.ota_root.join("bellcore-v2/latest.json")).unwrap(),
    )
    .unwrap();
    let offsets: Vec<(&str, u64)> = manifest["builds"][0]["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["path"].as_str().unwrap(), p["offset"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        offsets,
        [
            ("bootloader.bin", 0x1000),
            ("partitions.bin", 0x8000),
            ("boot_app0.bin", 0xF000),
            ("firmware.bin", 0x20000)
        ]
    );
    // What a device reads from latest.json: the app's size, sum and where it is.
    let app_bytes = std::fs::read(build.join("firmware.bin")).unwrap();
    assert_eq!(manifest["version"], "2.0.0");
    assert_eq!(manifest["size"], app_bytes.len());
    assert_eq!(manifest["url"], "v2.0.0.bin");
    assert_eq!(manifest["sha256"], crate::support::sha256_hex(&app_bytes));
    std::fs::remove_file(build.join("firmware.bin")).unwrap();
    let out = run(publish(&[])).await;
    assert!(
        stderr(&out).contains("firmware.bin is not in")
            && stderr(&out).contains("run `pio run -e bellcore-v2` first"),
        "{}",
        stderr(&out)
    );
    app.stop().await;
}

/// A release whose app says another version (its `esp_app_desc_t`) than the one published, or
/// another project than the board's releases so far, is refused before anything is written: every
/// board would download it and refuse it.
#[tokio::test(flavor = "multi_thread")]
async fn publish_refuses_an_app_whose_own_description_is_not_the_release() {
    let app = App::start().await;
    let work = tempfile::tempdir().unwrap();
    publish_pio(&app, &pio_build(work.path(), &app, "1.0.0"), "1.0.0").await;
    let run = |build: PathBuf, version: &str| {
        let core = build.parent().unwrap().join("platformio-core");
        let tools = core.join("packages/framework-arduinoespressif32/tools/partitions");
        std::fs::create_dir_all(&tools).unwrap();
        std::fs::write(tools.join("boot_app0.bin"), vec![0xFF; 0x2000]).unwrap();
        vesper_env(
            app.dir(),
            &[
                "firmware",
                "publish",
                "bellcore-v2",
                version,
                "--pio",
                build.to_str().unwrap(),
            ],
            &[("PLATFORMIO_CORE_DIR", core.to_str().unwrap())],
        )
    };
    // Built as 1.0.1, published as 1.0.2.
    let mislabelled = pio_build_with(
        work.path(),
        &app,
        "1.0.2",
        vesper::demo::app_image(300_000, "1.0.1"),
    );
    let out = run(mislabelled, "1.0.2");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(
            "the app says it is version `1.0.1` (its esp_app_desc_t), not 1.0.2: boards refuse such an update; build it as 1.0.2"
        ),
        "{}",
        stderr(&out)
    );
    // Another project's app (its project_name field, byte 32 + 48 of the image).
    let mut foreign = vesper::demo::app_image(300_000, "1.0.3");
    foreign[80..80 + 12].copy_from_slice(b"other-board\0");
    let out = run(pio_build_with(work.path(), &app, "1.0.3", foreign), "1.0.3");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(
            "the app is project `other-board`, but board bellcore-v2's releases are project `vesper-demo`"
        ),
        "{}",
        stderr(&out)
    );
    let ota = app.config().serve.ota_root.join("bellcore-v2");
    assert!(!ota.join("v1.0.2").exists() && !ota.join("v1.0.3").exists());
    let latest = std::fs::read_link(ota.join("latest")).unwrap();
    assert_eq!(latest, Path::new("v1.0.0"));
}
