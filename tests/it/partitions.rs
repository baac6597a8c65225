//! Partition table vectors (tests/vectors/partitions), made by ESP-IDF's gen_esp32part.py.

use vesper::partitions::{PartitionTable, region};

use crate::support::{self, vesper};

/// `nvs@0x9000+0x6000;otadata@...` from the manifest.
fn resolved(text: &str) -> Vec<(String, u32, u32)> {
    text.split(';')
        .map(|entry| {
            let (name, rest) = entry.split_once('@').unwrap();
            let (offset, size) = rest.split_once('+').unwrap();
            let n = |t: &str| u32::from_str_radix(t.trim_start_matches("0x"), 16).unwrap();
            (name.to_owned(), n(offset), n(size))
        })
        .collect()
}

#[test]
fn csv_tables_resolve_and_encode_like_gen_esp32part() {
    let rows = support::manifest("partitions");
    assert_eq!(rows.len(), 3);
    for row in rows {
        let dir = support::vectors("partitions");
        let from_csv = vesper::files::partition_table(&dir.join(&row["csv"])).unwrap();
        let from_bin = vesper::files::partition_table(&dir.join(&row["bin"])).unwrap();
        let layout: Vec<(String, u32, u32)> = from_csv
            .partitions()
            .iter()
            .map(|p| (p.name(), region(p).offset, region(p).size))
            .collect();
        assert_eq!(layout, resolved(&row["resolved"]), "{}", row["name"]);
        assert_eq!(
            from_csv.partitions(),
            from_bin.partitions(),
            "{}",
            row["name"]
        );
        let expected = std::fs::read(dir.join(&row["bin"])).unwrap();
        assert_eq!(
            from_csv.to_bin().unwrap(),
            expected,
            "{} binary",
            row["name"]
        );
        from_csv.check_fits(4 << 20).unwrap();
    }
}

#[test]
fn nvs_partition_is_found_by_name_and_type_checked() {
    let table = vesper::files::partition_table(
        &support::vectors("partitions").join("pt_4mb_implicit_offsets.csv"),
    )
    .unwrap();
    let nvs = table.nvs("nvs").unwrap();
    assert_eq!((nvs.offset, nvs.size), (0x9000, 0x6000));
    let mfg = table.nvs("mfg_nvs").unwrap();
    assert_eq!((mfg.offset, mfg.size), (0x320000, 0x3000));
    assert!(
        table
            .nvs("otadata")
            .unwrap_err()
            .to_string()
            .contains("not an NVS data partition")
    );
    assert!(
        table
            .nvs("missing")
            .unwrap_err()
            .to_string()
            .contains("no partition named `missing`")
    );
    let two_mb =
        vesper::files::partition_table(&support::vectors("partitions").join("pt_2mb_ota.csv"))
            .unwrap();
    assert_eq!(two_mb.nvs("nvs").unwrap().size, 0x4000);
    assert!(
        two_mb
            .check_fits(1 << 20)
            .unwrap_err()
            .to_string()
            .contains("beyond the 1048576-byte")
    );
}

#[test]
fn repository_tables_are_the_seed_tables() {
    for (ours, vector) in [
        ("custom_4mb.csv", "pt_4mb_ota.csv"),
        ("custom_2mb.csv", "pt_2mb_ota.csv"),
    ] {
        let a = std::fs::read(support::root().join("partitions").join(ours)).unwrap();
        let b = std::fs::read(support::vectors("partitions").join(vector)).unwrap();
        assert_eq!(a, b, "partitions/{ours}");
    }
    let table =
        vesper::files::partition_table(&support::root().join("partitions/custom_4mb.csv")).unwrap();
    assert_eq!(table.nvs("nvs").unwrap().offset, 0x9000);
    assert_eq!(table.nvs("nvs").unwrap().size, 0x6000);
}

#[test]
fn show_prints_the_resolved_layout_from_csv_and_binary() {
    let dir = tempfile::tempdir().unwrap();
    for file in ["pt_4mb_implicit_offsets.csv", "pt_4mb_implicit_offsets.bin"] {
        let path = support::vectors("partitions").join(file);
        let out = vesper(
            dir.path(),
            &[
                "partitions",
                "show",
                path.to_str().unwrap(),
                "--flash-size",
                "4MB",
            ],
        );
        assert!(out.status.success(), "{}", support::stderr(&out));
        let text = support::stdout(&out);
        assert!(
            text.contains("factory") && text.contains("0x20000") && text.contains("0x100000"),
            "{text}"
        );
        assert!(
            text.contains("mfg_nvs") && text.contains("0x320000") && text.contains("readonly"),
            "{text}"
        );
        assert!(
            text.contains("nvs partition `nvs`: offset 0x9000, size 0x6000"),
            "{text}"
        );
    }
    let too_small = vesper(
        dir.path(),
        &[
            "partitions",
            "show",
            support::vectors("partitions")
                .join("pt_4mb_ota.csv")
                .to_str()
                .unwrap(),
            "--flash-size",
            "2MB",
        ],
    );
    assert!(!too_small.status.success());
    assert!(
        support::stderr(&too_small).contains("beyond the 2097152-byte"),
        "{}",
        support::stderr(&too_small)
    );
}

#[test]
fn broken_tables_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "overlap.csv",
            "nvs, data, nvs, 0x9000, 0x6000,\nota, data, ota, 0xa000, 0x2000,\nfactory, app, factory, 0x10000, 1M,\n",
            "overlapping",
        ),
        (
            "noapp.csv",
            "nvs, data, nvs, 0x9000, 0x6000,\n",
            "No partition of type 'app'",
        ),
        (
            "badtype.csv",
            "nvs, dada, nvs, 0x9000, 0x6000,\nfactory, app, factory, 0x10000, 1M,\n",
            "badtype.csv",
        ),
        ("empty.csv", "", "is empty"),
    ];
    for (name, text, expected) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let out = vesper(dir.path(), &["partitions", "show", path.to_str().unwrap()]);
        assert!(!out.status.success(), "{name}");
        assert!(
            support::stderr(&out).contains(expected),
            "{name}: {}",
            support::stderr(&out)
        );
    }
    let mut bin = std::fs::read(support::vectors("partitions").join("pt_4mb_ota.bin")).unwrap();
    bin[40] ^= 0xFF;
    let path = dir.path().join("tampered.bin");
    std::fs::write(&path, bin).unwrap();
    let out = vesper(dir.path(), &["partitions", "show", path.to_str().unwrap()]);
    assert!(
        support::stderr(&out).contains("checksum"),
        "{}",
        support::stderr(&out)
    );
}

/// Found by `scripts/fuzz` (target `partition_table`): esp-idf-part 0.6 panics on a binary table
/// entry with a data subtype it does not know (here 0x70), or unknown flag bits. Such a table is
/// refused with an error naming the entry; it never crashes the program.
#[test]
fn binary_tables_with_unknown_subtypes_or_flags_are_errors_not_panics() {
    let good = std::fs::read(support::vectors("partitions").join("pt_4mb_ota.bin")).unwrap();
    assert!(PartitionTable::parse(&good, "good").is_ok());
    let entry = |i: usize| i * 32;
    let mut data_subtype = good.clone();
    data_subtype[entry(0) + 3] = 0x70;
    let mut app_subtype = good.clone();
    let app = (0..good.len() / 32)
        .find(|&i| good[entry(i)..].starts_with(&[0xAA, 0x50, 0x00]))
        .expect("an app entry");
    app_subtype[entry(app) + 3] = 0x7F;
    let mut flags = good.clone();
    flags[entry(0) + 28] = 0x80;
    for (name, bytes) in [
        ("data subtype", data_subtype),
        ("app subtype", app_subtype),
        ("flags", flags),
    ] {
        let err = PartitionTable::parse(&bytes, name).expect_err(name);
        assert!(err.to_string().contains("entry"), "{name}: {err}");
    }
    let fuzzed = std::fs::read(
        support::root().join("fuzz/corpus/partition_table/regression-unknown-data-subtype"),
    )
    .unwrap();
    assert!(PartitionTable::parse(&fuzzed, "fuzzed").is_err());
    // The command line says so too, instead of panicking.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.bin"), &fuzzed).unwrap();
    let out = vesper(dir.path(), &["partitions", "show", "bad.bin"]);
    assert!(!out.status.success());
    let stderr = support::stderr(&out);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("entry 2"), "{stderr}");
}
