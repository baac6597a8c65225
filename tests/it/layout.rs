//! The crate graph is the design (DESIGN.md section 13): these tests fail the build when a
//! change adds an arrow that is not in the drawing, or when the core starts doing I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;

/// The allowed arrows between Vesper's crates: each crate and all it may depend on.
const GRAPH: [(&str, &[&str]); 10] = [
    ("vesper-core", &[]),
    ("vesper-store", &["vesper-core"]),
    (
        "vesper-backend",
        &["vesper-core", "vesper-store", "vesper-labels"],
    ),
    ("vesper-client", &["vesper-core"]),
    ("vesper-flash", &["vesper-core"]),
    ("vesper-sim", &["vesper-core"]),
    ("vesper-labels", &["vesper-core"]),
    (
        "vesper-station",
        &[
            "vesper-core",
            "vesper-client",
            "vesper-flash",
            "vesper-labels",
        ],
    ),
    ("vesper-mosquitto", &["vesper-core"]),
    (
        "vesper",
        &[
            "vesper-core",
            "vesper-store",
            "vesper-backend",
            "vesper-client",
            "vesper-flash",
            "vesper-sim",
            "vesper-labels",
            "vesper-station",
        ],
    ),
];

fn cargo(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO"))
        .args(args)
        .current_dir(crate::support::root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo {args:?}: {}",
        crate::support::stderr(&out)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_crates_depend_on_each_other_only_as_drawn() {
    let metadata: Value = serde_json::from_str(&cargo(&[
        "metadata",
        "--format-version",
        "1",
        "--no-deps",
        "--offline",
    ]))
    .unwrap();
    let mut found: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for package in metadata["packages"].as_array().unwrap() {
        let name = package["name"].as_str().unwrap();
        let internal = package["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            // Normal dependencies: tests and benchmarks may reach any layer.
            .filter(|d| d["kind"].is_null())
            .map(|d| d["name"].as_str().unwrap().to_owned())
            .filter(|d| d.starts_with("vesper"))
            .collect();
        found.insert(name.to_owned(), internal);
    }
    let drawn: BTreeMap<String, BTreeSet<String>> = GRAPH
        .iter()
        .map(|(name, deps)| {
            (
                name.to_string(),
                deps.iter().map(|d| d.to_string()).collect(),
            )
        })
        .collect();
    assert_eq!(
        found, drawn,
        "the workspace's crate graph differs from DESIGN.md section 13"
    );
}

#[test]
fn the_core_pulls_no_runtime_http_database_or_environment_crate() {
    let tree = cargo(&[
        "tree",
        "-p",
        "vesper-core",
        "-e",
        "normal",
        "--prefix",
        "none",
        "--offline",
    ]);
    for line in tree.lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        for banned in [
            "tokio", "reqwest", "rusqlite", "dirs", "hyper", "axum", "mio",
        ] {
            assert_ne!(name, banned, "vesper-core depends on {banned}:\n{tree}");
        }
    }
    // And its source touches no file, socket or environment variable itself.
    for file in rust_files("crates/core/src") {
        let text = std::fs::read_to_string(&file).unwrap();
        let code: String = text
            .split("#[cfg(test)]")
            .next()
            .unwrap()
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect();
        for io in [
            "std::fs::",
            "std::net::TcpStream",
            "std::env::var",
            "std::process::",
        ] {
            assert!(
                !code.contains(io),
                "{} uses {io}: the core does no I/O",
                file.display()
            );
        }
    }
}

#[test]
fn the_simulator_reads_flash_with_its_own_readers_and_the_pipeline_knows_no_screen() {
    for file in rust_files("crates/sim/src") {
        let text = std::fs::read_to_string(&file).unwrap();
        for product in [
            "vesper_core::nvs",
            "vesper_core::partitions",
            "vesper_core::firmware",
            "vesper_core::acl",
            "esp_idf_part",
        ] {
            assert!(
                !text.contains(product),
                "{} uses {product}: the simulated board must judge the product, not echo it",
                file.display()
            );
        }
    }
    for file in [
        "crates/station/src/provision.rs",
        "crates/station/src/headless.rs",
    ] {
        let text = std::fs::read_to_string(crate::support::root().join(file)).unwrap();
        for ui in ["ratatui::", "crossterm::", "crate::ui"] {
            assert!(!text.contains(ui), "{file} uses {ui}");
        }
    }
}

fn rust_files(dir: &str) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![crate::support::root().join(dir)];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    assert!(!files.is_empty(), "no Rust files under {dir}");
    files
}
