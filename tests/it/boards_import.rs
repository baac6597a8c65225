//! `vesper boards import` and `vesper boards doc` on the repository's own firmware/platformio.ini:
//! the diff shown, nothing written without --write, comments kept, the result loading; and the
//! committed FIRMWARE_VARIANTS.md checked to be what the command writes today.

use std::path::Path;

use crate::support::{root, stderr, stdout, vesper};

/// A copy of the firmware project (platformio.ini, and partitions/ as a link to the copy of
/// the repository's tables, as in the repository) and a configuration beside it.
fn workspace(config: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("firmware")).unwrap();
    std::fs::create_dir_all(dir.path().join("partitions")).unwrap();
    for table in ["custom_2mb.csv", "custom_4mb.csv"] {
        std::fs::copy(
            root().join("partitions").join(table),
            dir.path().join("partitions").join(table),
        )
        .unwrap();
    }
    std::fs::copy(
        root().join("firmware/platformio.ini"),
        dir.path().join("firmware/platformio.ini"),
    )
    .unwrap();
    std::os::unix::fs::symlink("../partitions", dir.path().join("firmware/partitions")).unwrap();
    std::fs::write(dir.path().join("config.toml"), config).unwrap();
    dir
}

fn import(dir: &Path, write: bool) -> std::process::Output {
    let mut args = vec![
        "--config",
        "config.toml",
        "boards",
        "import",
        "firmware/platformio.ini",
    ];
    if write {
        args.push("--write");
    }
    vesper(dir, &args)
}

#[test]
fn import_shows_the_change_and_writes_it_only_when_asked() {
    // The example with bellcore-v1's flash mode wrong and bellcore-v2 renamed to another board.
    let example = vesper::config::EXAMPLE;
    let config = example
        .replacen("flash_mode = \"dout\"", "flash_mode = \"dio\"", 1)
        .replacen("name = \"bellcore-v2\"", "name = \"bellcore-v3\"", 1)
        .replacen("hw_version = \"02\"", "hw_version = \"03\"", 1);
    assert_ne!(config, example);
    let dir = workspace(&config);

    let out = import(dir.path(), false);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = stdout(&out);
    for line in [
        "skipped [env:native]: platform `native` is not espressif32",
        "kept board bellcore-v3: not in firmware/platformio.ini",
        "--- config.toml",
        "+++ config.toml (imported)",
        "-flash_mode = \"dio\"",
        "+flash_mode = \"dout\"",
        "+name = \"bellcore-v2\"",
        "+hw_version = \"02\"",
        "+partition_table = \"partitions/custom_4mb.csv\"",
        "(nothing written: run again with --write to apply)",
    ] {
        assert!(said.lines().any(|l| l == line), "no `{line}` in:\n{said}");
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("config.toml")).unwrap(),
        config,
        "nothing is written without --write"
    );

    let out = import(dir.path(), true);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("wrote config.toml"));
    let written = std::fs::read_to_string(dir.path().join("config.toml")).unwrap();
    assert!(
        written.contains("# One [[boards]] entry per hardware variant (a PlatformIO environment)."),
        "comments stay"
    );
    let loaded = vesper::config::load(&dir.path().join("config.toml")).unwrap();
    let v1 = loaded.board("bellcore-v1").unwrap();
    assert_eq!(v1.flash_mode, vesper::config::FlashMode::Dout);
    let v2 = loaded.board("bellcore-v2").unwrap();
    assert_eq!(
        (v2.hw_type.as_str(), v2.hw_version.as_str(), v2.flash_size),
        ("BC", "02", 4 << 20)
    );
    assert_eq!(v2.nvs.offset, 0x9000);
    let v3 = loaded.board("bellcore-v3").unwrap();
    assert!(
        !v3.nvs_extra.is_empty(),
        "a kept board keeps its extra NVS keys"
    );

    let out = import(dir.path(), false);
    assert!(
        stdout(&out).contains("config.toml already matches firmware/platformio.ini"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn import_refuses_what_it_cannot_read_and_writes_nothing() {
    let dir = workspace(vesper::config::EXAMPLE);
    let ini = dir.path().join("firmware/platformio.ini");
    let text = std::fs::read_to_string(&ini).unwrap();
    std::fs::write(&ini, text.replace("-DBOARD_VERSION=\"01\" ", "")).unwrap();
    let out = import(dir.path(), true);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(
            "[env:bellcore-v1]: build_flags has no -DBOARD_VERSION=\"...\" (the hardware the firmware is for)"
        ),
        "{}",
        stderr(&out)
    );
    // A table the configuration cannot load (no nvs partition) is refused before writing.
    std::fs::write(&ini, text).unwrap();
    std::fs::write(
        dir.path().join("partitions/custom_2mb.csv"),
        "app0, app, factory, 0x10000, 0x100000,\n",
    )
    .unwrap();
    let out = import(dir.path(), true);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("the imported configuration does not load"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("config.toml")).unwrap(),
        vesper::config::EXAMPLE
    );
}

/// The committed document is what `vesper boards doc` writes from the committed
/// platformio.ini: change one, and this fails until the other is regenerated.
#[test]
fn the_committed_firmware_variants_document_is_not_stale() {
    let committed = std::fs::read_to_string(root().join("firmware/FIRMWARE_VARIANTS.md")).unwrap();
    let generated = vesper::boards::variants_doc(&root().join("firmware/platformio.ini")).unwrap();
    assert!(
        committed == generated,
        "firmware/FIRMWARE_VARIANTS.md is stale: run `vesper boards doc firmware/platformio.ini`"
    );
    let out = vesper(
        &root(),
        &["boards", "doc", "firmware/platformio.ini", "--check"],
    );
    assert!(out.status.success(), "{}", stderr(&out));

    // And --check notices a stale copy.
    let dir = workspace(vesper::config::EXAMPLE);
    let ini = dir.path().join("firmware/platformio.ini");
    let out = vesper(dir.path(), &["boards", "doc", "firmware/platformio.ini"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&ini).unwrap();
    std::fs::write(
        &ini,
        text.replace(
            "board_upload.flash_size = 2MB",
            "board_upload.flash_size = 4MB",
        ),
    )
    .unwrap();
    let out = vesper(
        dir.path(),
        &["boards", "doc", "firmware/platformio.ini", "--check"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("FIRMWARE_VARIANTS.md is stale"),
        "{}",
        stderr(&out)
    );
}
