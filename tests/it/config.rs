//! Configuration: `vesper init`, discovery order, relative paths, and validation messages that
//! name the key.

use std::path::Path;

use crate::support::{self, stderr, stdout, vesper, vesper_env};

#[test]
fn init_writes_a_folder_that_works_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let out = vesper(dir.path(), &["init"]);
    assert!(out.status.success(), "{}", stderr(&out));
    for file in [
        "config.toml",
        "partitions/custom_4mb.csv",
        "partitions/custom_2mb.csv",
    ] {
        assert!(dir.path().join(file).is_file(), "{file}");
    }
    let written = std::fs::read_to_string(dir.path().join("config.toml")).unwrap();
    assert_eq!(
        written,
        std::fs::read_to_string(support::root().join("config.toml.example")).unwrap()
    );

    // Without the Wi-Fi password no board would come online: refused, with what to do.
    let check = vesper(dir.path(), &["config", "check"]);
    assert!(!check.status.success());
    assert!(
        stdout(&check).contains("wifi     PROBLEM: wifi.password is not set: put it in a file named by wifi.password_file (mode 0600) or in $VESPER_WIFI_PASSWORD"),
        "{}",
        stdout(&check)
    );
    let check = support::vesper_env(
        dir.path(),
        &["config", "check"],
        &[("VESPER_WIFI_PASSWORD", "bench wifi")],
    );
    assert!(check.status.success(), "{}", stderr(&check));
    let text = stdout(&check);
    assert!(
        text.contains("wifi     vesper-bench (password set)"),
        "{text}"
    );
    assert!(
        text.contains("bellcore-v1") && text.contains("BC01") && text.contains("nvs 0x9000+0x4000"),
        "{text}"
    );
    assert!(
        text.contains("bellcore-v2") && text.contains("BC02") && text.contains("nvs 0x9000+0x6000"),
        "{text}"
    );

    let again = vesper(dir.path(), &["init"]);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("--force"), "{}", stderr(&again));
    assert!(vesper(dir.path(), &["init", "--force"]).status.success());
}

#[test]
fn the_example_config_has_the_seed_boards() {
    let config = vesper::config::load(&support::root().join("config.toml.example")).unwrap();
    let v1 = config.board("bellcore-v1").unwrap();
    assert_eq!(
        (v1.hw_type.as_str(), v1.hw_version.as_str(), v1.flash_size),
        ("BC", "01", 2 << 20)
    );
    assert_eq!(v1.flash_mode, vesper::config::FlashMode::Dout);
    let v2 = config.board("bellcore-v2").unwrap();
    assert_eq!(
        (v2.hw_type.as_str(), v2.hw_version.as_str(), v2.flash_size),
        ("BC", "02", 4 << 20)
    );
    assert_eq!(v2.flash_mode, vesper::config::FlashMode::Dio);
    assert_eq!((v2.nvs.offset, v2.nvs.size), (0x9000, 0x6000));
    assert_eq!(config.mqtt.topics, vesper::acl::Topics::default());
    assert!(
        config
            .board("bellcore-v3")
            .unwrap_err()
            .to_string()
            .contains("known: bellcore-v1, bellcore-v2")
    );
}

#[test]
fn config_is_found_by_flag_env_cwd_then_user_folder() {
    let home = tempfile::tempdir().unwrap();
    let elsewhere = home.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    // Nothing anywhere: the error says what to do.
    let none = vesper(&elsewhere, &["config", "check"]);
    assert!(stderr(&none).contains("vesper init"), "{}", stderr(&none));

    // User config folder ($XDG_CONFIG_HOME/vesper/config.toml).
    let xdg = home.path().join("xdg");
    let user = xdg.join("vesper");
    std::fs::create_dir_all(&user).unwrap();
    assert!(vesper(&user, &["init"]).status.success());
    let found = vesper_env(
        &elsewhere,
        &["config", "check"],
        &[("XDG_CONFIG_HOME", xdg.to_str().unwrap())],
    );
    assert!(
        stdout(&found).contains("xdg/vesper/config.toml: ok"),
        "{}",
        stdout(&found)
    );

    // ./config.toml wins over the user folder; relative table paths still resolve.
    let local = home.path().join("local");
    std::fs::create_dir(&local).unwrap();
    assert!(vesper(&local, &["init"]).status.success());
    let out = vesper_env(
        &local,
        &["config", "check"],
        &[("XDG_CONFIG_HOME", xdg.to_str().unwrap())],
    );
    assert!(
        stdout(&out).starts_with("config.toml: ok"),
        "{}",
        stdout(&out)
    );

    // $VESPER_CONFIG wins over ./config.toml, and --config over both.
    let env_cfg = home.path().join("env");
    std::fs::create_dir(&env_cfg).unwrap();
    assert!(vesper(&env_cfg, &["init"]).status.success());
    let env_path = env_cfg.join("config.toml");
    let by_env = vesper_env(
        &local,
        &["config", "check"],
        &[("VESPER_CONFIG", env_path.to_str().unwrap())],
    );
    assert!(
        stdout(&by_env).contains("env/config.toml: ok"),
        "{}",
        stdout(&by_env)
    );
    let flag_path = local.join("config.toml");
    let by_flag = vesper_env(
        &elsewhere,
        &["--config", flag_path.to_str().unwrap(), "config", "check"],
        &[("VESPER_CONFIG", env_path.to_str().unwrap())],
    );
    assert!(
        stdout(&by_flag).contains("local/config.toml: ok"),
        "{}",
        stdout(&by_flag)
    );
}

/// Applies an edit to a fresh `vesper init` config; returns the library's error and the CLI's stderr.
fn invalid(edit: impl Fn(&str) -> String) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    assert!(vesper(dir.path(), &["init"]).status.success());
    let path = dir.path().join("config.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, edit(&text)).unwrap();
    let error = vesper::config::load(&path)
        .expect_err("should be invalid")
        .to_string();
    let cli = vesper(dir.path(), &["config", "check"]);
    assert!(!cli.status.success());
    (error, stderr(&cli))
}

#[test]
fn validation_errors_name_the_key() {
    // (text to replace, replacement, what the error must say); the first occurrence is edited.
    let cases: [(&str, &str, &str); 23] = [
        (
            "key = \"psram\"\ntype = \"u8\"",
            "key = \"heartbeat_s\"\ntype = \"u16\"",
            "boards[1].nvs_extra[0].type: the firmware reads `heartbeat_s` as a u32, not a u16",
        ),
        (
            "key = \"psram\"",
            "key = \"wifi_ssid\"",
            "boards[1].nvs_extra[0].key: `wifi_ssid` comes from [wifi]",
        ),
        (
            "ssid = \"vesper-bench\"",
            "ssid = \"\"",
            "wifi.ssid: must be 1 to 32 bytes",
        ),
        (
            "hw_type = \"BC\"",
            "hw_type = \"bc\"",
            "boards[0].hw_type: board type `bc`",
        ),
        (
            "hw_version = \"02\"",
            "hw_version = \"2\"",
            "boards[1].hw_version: revision `2`",
        ),
        (
            "\"partitions/custom_4mb.csv\"",
            "\"partitions/missing.csv\"",
            "boards[1].partition_table: cannot read partition table",
        ),
        (
            "flash_size = \"4MB\"",
            "flash_size = \"3MB\"",
            "boards[1].flash_size: `3MB`",
        ),
        (
            "flash_size = \"2MB\"",
            "flash_size = \"1MB\"",
            "boards[0].partition_table: partition table",
        ),
        (
            "name = \"bellcore-v2\"",
            "name = \"bellcore-v1\"",
            "boards[1].name: `bellcore-v1` is used twice",
        ),
        (
            "hw_version = \"02\"",
            "hw_version = \"01\"",
            "boards[1].hw_version: BC01 is already board `bellcore-v1`",
        ),
        (
            "value = 1",
            "value = 300",
            "boards[1].nvs_extra[0].value: 300 is out of range for u8",
        ),
        (
            "key = \"psram\"",
            "key = \"mqtt_pass\"",
            "boards[1].nvs_extra[0].key: `mqtt_pass` is already written",
        ),
        (
            "key = \"psram\"",
            "key = \"psram_enabled_flag\"",
            "boards[1].nvs_extra[0].key: key `psram_enabled_flag` is longer than 15",
        ),
        (
            "type = \"u8\"",
            "type = \"float\"",
            "boards[1].nvs_extra[0].value: type `float`",
        ),
        (
            "nvs_partition = \"nvs\"",
            "nvs_partition = \"otadata\"",
            "boards[0].nvs_partition: partition `otadata`",
        ),
        ("port = 8883", "port = 0", "mqtt.port"),
        (
            "data = \"vesper/{sn}/data\"",
            "data = \"vesper/data\"",
            "must contain `{sn}`",
        ),
        (
            "status = \"vesper/{sn}/status\"",
            "status = \"vesper/{sn}/data\"",
            "mqtt.topics: topic templates",
        ),
        (
            "url = \"http://127.0.0.1:8080\"",
            "url = \"127.0.0.1:8080\"",
            "backend.url",
        ),
        (
            "chip = \"esp32\"",
            "chip = \"esp8266\"",
            "unknown variant `esp8266`",
        ),
        (
            "[station]",
            "[station]\ncolour = \"blue\"",
            "unknown field `colour`",
        ),
        ("host = \"mqtt.example.com\"", "host = ", "TOML parse error"),
        (
            "type = \"u8\"\nvalue = 1",
            "type = \"hex2bin\"\nvalue = \"abc\"",
            "boards[1].nvs_extra[0].value: `abc`: odd number of hex digits",
        ),
    ];
    for (from, to, expected) in cases {
        let (error, cli) = invalid(|t| t.replacen(from, to, 1));
        assert!(
            error.contains(expected),
            "expected `{expected}` in: {error}"
        );
        assert!(
            cli.contains(expected),
            "the command line shows it too: {cli}"
        );
        assert!(error.contains("config.toml"), "names the file: {error}");
    }
}

#[test]
fn extra_keys_that_overflow_the_partition_are_refused_at_load() {
    let (error, _) = invalid(|t| {
        let mut t = t.to_owned();
        for i in 0..140 {
            t.push_str(&format!(
                "\n[[boards.nvs_extra]]\nkey = \"x{i}\"\ntype = \"string\"\nvalue = \"{}\"\n",
                "v".repeat(1000)
            ));
        }
        t
    });
    assert!(
        error.contains("boards[1].nvs_extra: the data needs more than the 5 data pages"),
        "{error}"
    );
}

#[test]
fn paths_are_relative_to_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    assert!(vesper(dir.path(), &["init"]).status.success());
    let config = vesper::config::load(&dir.path().join("config.toml")).unwrap();
    for b in &config.boards {
        assert!(
            b.partition_table.starts_with(dir.path()),
            "{}",
            b.partition_table.display()
        );
    }
    let _ = Path::new("");
}
