//! Every command that opens the registry opens the one `vesper serve` reads (issue 26): the
//! configured database (`serve.database`, or `$VESPER_DATABASE_URL` even without a configuration
//! file) when there is one, and `--data-dir` then names a folder for local files only. A token
//! created with `--data-dir` no longer lands in a SQLite file no server reads; the commands that
//! copy the data folder's registry file (backup, restore) refuse, naming the database.

use std::path::Path;

use crate::backend_support::write_config;
use crate::support::{stderr, stdout, vesper_env};

/// A configuration whose `serve.database` is a SQLite registry in `elsewhere`, not in the data
/// folder.
fn configured_elsewhere(dir: &Path, elsewhere: &Path) {
    let path = write_config(dir, "http://127.0.0.1:9/unused-jwks");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "# database = \"postgres://vesper:PASSWORD@db.internal:5432/vesper\"",
        &format!("database = \"sqlite:{}\"", elsewhere.display()),
    );
    assert!(
        text.contains("database = \"sqlite:"),
        "the example names serve.database"
    );
    std::fs::write(&path, text).unwrap();
}

/// `vesper token create ci --role admin --data-dir DATA` in `dir`, with `env` added.
fn create_token(dir: &Path, data: &Path, env: &[(&str, &str)]) -> std::process::Output {
    let data = data.to_str().unwrap();
    let args = [
        "token",
        "create",
        "ci",
        "--role",
        "admin",
        "--data-dir",
        data,
    ];
    vesper_env(dir, &args, env)
}

#[test]
fn every_registry_command_opens_the_configured_database() {
    let dir = tempfile::tempdir().unwrap();
    let (elsewhere, data) = (dir.path().join("elsewhere"), dir.path().join("data"));
    std::fs::create_dir_all(&elsewhere).unwrap();
    configured_elsewhere(dir.path(), &elsewhere);
    let run = |args: &[&str]| vesper_env(dir.path(), args, &[]);
    let data_flag = data.to_str().unwrap();

    let created = create_token(dir.path(), &data, &[]);
    assert!(created.status.success(), "{}", stderr(&created));
    assert!(
        stderr(&created).contains("--data-dir names local files only"),
        "{}",
        stderr(&created)
    );
    assert!(
        elsewhere.join("registry.sqlite3").exists(),
        "the token is in the configured registry"
    );
    assert!(
        !data.join("registry.sqlite3").exists(),
        "not in a file no server reads"
    );

    for args in [
        &["token", "list"][..],
        &["token", "list", "--data-dir", data_flag],
    ] {
        let listed = run(args);
        assert!(
            stdout(&listed).contains("ci "),
            "{args:?}: {}",
            stderr(&listed)
        );
    }
    let outbox = run(&["mail", "outbox", "--data-dir", data_flag]);
    assert!(outbox.status.success(), "{}", stderr(&outbox));
    let retry = run(&["mail", "retry", "4242", "--data-dir", data_flag]);
    assert!(stderr(&retry).contains("4242"), "{}", stderr(&retry));
    assert!(!data.join("registry.sqlite3").exists());
    let revoked = run(&["token", "revoke", "ci", "--data-dir", data_flag]);
    assert!(revoked.status.success(), "{}", stderr(&revoked));
    assert!(stdout(&run(&["token", "list"])).contains("revoked"));

    // Backup and restore copy the data folder's registry file: refused, naming the database.
    let backup = run(&["backup", dir.path().join("backups").to_str().unwrap()]);
    assert!(!backup.status.success());
    assert!(stderr(&backup).contains("sqlite:"), "{}", stderr(&backup));
    let restore = run(&["restore", dir.path().join("nothing").to_str().unwrap()]);
    assert!(!restore.status.success());
    assert!(stderr(&restore).contains("sqlite:"), "{}", stderr(&restore));
    assert!(!data.join("registry.sqlite3").exists());
}

#[test]
fn without_a_configuration_the_environment_names_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let (elsewhere, data) = (dir.path().join("elsewhere"), dir.path().join("data"));
    std::fs::create_dir_all(&elsewhere).unwrap();
    let url = format!("sqlite:{}", elsewhere.display());
    let created = create_token(dir.path(), &data, &[("VESPER_DATABASE_URL", url.as_str())]);
    assert!(created.status.success(), "{}", stderr(&created));
    assert!(elsewhere.join("registry.sqlite3").exists());
    assert!(!data.join("registry.sqlite3").exists());
    // Without the database named anywhere, --data-dir is the registry's folder, as before.
    let local = create_token(dir.path(), &data, &[]);
    assert!(local.status.success(), "{}", stderr(&local));
    assert!(data.join("registry.sqlite3").exists());
    let bad = vesper_env(
        dir.path(),
        &["token", "list", "--data-dir", "x"],
        &[("VESPER_DATABASE_URL", "mysql://x")],
    );
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("VESPER_DATABASE_URL"),
        "{}",
        stderr(&bad)
    );
}
