//! Every NVS vector made by Espressif's tool (tests/vectors/nvs), byte for byte, through the
//! library and through the command line; and every vector dumps back to a CSV that regenerates it.

use crate::support::sha256_hex;

use vesper::nvs::{self, PageState, Version, dump};

use crate::support::{self, vesper};

fn size(text: &str) -> u64 {
    vesper::partitions::parse_number(text).expect("size")
}

fn version(text: &str) -> Version {
    Version::from_number(text.parse().expect("version")).expect("1 or 2")
}

#[test]
fn library_output_equals_every_vector() {
    let rows = support::manifest("nvs");
    assert_eq!(rows.len(), 10);
    for row in rows {
        let dir = support::vectors("nvs");
        let expected = std::fs::read(dir.join(&row["bin"])).unwrap();
        assert_eq!(
            sha256_hex(&expected),
            row["sha256"],
            "{} vector file is intact",
            row["name"]
        );
        let ours = nvs::csv::generate_files(
            &[dir.join(&row["csv"])],
            size(&row["size"]),
            version(&row["version"]),
            &|p| std::fs::read(p),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", row["name"]));
        assert_eq!(ours.len(), expected.len(), "{}", row["name"]);
        assert!(
            ours == expected,
            "{}: first difference at {:?}",
            row["name"],
            ours.iter().zip(&expected).position(|(a, b)| a != b)
        );
    }
}

#[test]
fn command_line_output_equals_every_vector() {
    let out_dir = tempfile::tempdir().unwrap();
    for row in support::manifest("nvs") {
        let csv = support::vectors("nvs").join(&row["csv"]);
        let out = out_dir.path().join(format!("{}.bin", row["name"]));
        let result = vesper(
            out_dir.path(),
            &[
                "nvs",
                "generate",
                csv.to_str().unwrap(),
                out.to_str().unwrap(),
                &row["size"],
                "--version",
                &row["version"],
            ],
        );
        assert!(
            result.status.success(),
            "{}: {}",
            row["name"],
            support::stderr(&result)
        );
        let expected = std::fs::read(support::vectors("nvs").join(&row["bin"])).unwrap();
        assert!(std::fs::read(&out).unwrap() == expected, "{}", row["name"]);
    }
}

#[test]
fn every_vector_dumps_to_a_csv_that_regenerates_it() {
    for row in support::manifest("nvs") {
        let image = std::fs::read(support::vectors("nvs").join(&row["bin"])).unwrap();
        let decoded = dump::decode(&image);
        assert!(
            decoded.errors.is_empty(),
            "{}: {:?}",
            row["name"],
            decoded.errors
        );
        assert_eq!(decoded.version, Some(version(&row["version"])));
        let csv = dump::to_csv(&decoded, &row["name"]);
        assert!(
            csv.warnings.is_empty(),
            "{}: {:?}",
            row["name"],
            csv.warnings
        );
        assert_eq!(
            dump::round_trip_difference(&image, &decoded, &csv.csv),
            None,
            "{}",
            row["name"]
        );
    }
}

#[test]
fn dump_reads_back_the_values_of_the_seed_example() {
    let image = std::fs::read(support::vectors("nvs").join("p01_minimal.bin")).unwrap();
    let decoded = dump::decode(&image);
    let keys: Vec<(&str, u8)> = decoded
        .items
        .iter()
        .map(|i| (i.key.as_str(), i.namespace))
        .collect();
    assert_eq!(
        keys,
        [
            ("vesper", 0),
            ("serial_number", 1),
            ("hw_type", 1),
            ("hw_version", 1)
        ]
    );
    assert_eq!(
        decoded.items[1].value,
        dump::ItemValue::Str(b"PV-26A18-BC02R-X7KQA\0".to_vec())
    );
    assert_eq!(decoded.pages[0].state, PageState::Active);
    assert!(
        decoded.pages[1..]
            .iter()
            .all(|p| p.state == PageState::Uninitialized)
    );
    let csv = dump::to_csv(&decoded, "p01").csv;
    assert!(
        csv.contains("\nvesper,namespace,,\nserial_number,data,string,PV-26A18-BC02R-X7KQA\n"),
        "{csv}"
    );
}

#[test]
fn dump_reports_page_states_and_every_crc_error() {
    let mut image = std::fs::read(support::vectors("nvs").join("p07_150_strings.bin")).unwrap();
    let clean = dump::decode(&image);
    assert_eq!(
        clean.pages.iter().map(|p| p.state).collect::<Vec<_>>()[..3],
        [PageState::Full, PageState::Full, PageState::Active]
    );
    image[64 + 32 * 3 + 10] ^= 0x01; // a key byte of the item in page 0, slot 3
    image[4096 + 5] ^= 0x01; // page 1's sequence number, covered by its header CRC
    let first_on_page_2 = clean
        .items
        .iter()
        .find(|i| i.page == 2)
        .expect("an item on page 2");
    image[2 * 4096 + 64 + 32 * (first_on_page_2.slot + 1)] ^= 0x20; // its string payload
    let damaged = dump::decode(&image);
    let errors = damaged.errors.join("\n");
    assert!(
        errors.contains("page 0 slot 3: item header CRC mismatch"),
        "{errors}"
    );
    assert!(errors.contains("page 1: header CRC mismatch"), "{errors}");
    let on_page_2 = format!(
        "page 2 slot {}: key `{}` data CRC mismatch",
        first_on_page_2.slot, first_on_page_2.key
    );
    assert!(errors.contains(&on_page_2), "{errors}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("damaged.bin");
    std::fs::write(&path, &image).unwrap();
    let out = vesper(dir.path(), &["nvs", "dump", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "a damaged image exits 1");
    let stdout = support::stdout(&out);
    assert!(
        stdout.contains("# page 0: FULL, seq 0")
            && stdout.contains("# ERROR: page 1: header CRC mismatch"),
        "{stdout}"
    );
    assert!(
        support::stderr(&out).contains("problem(s) found in damaged.bin"),
        "{}",
        support::stderr(&out)
    );
}

#[test]
fn dump_of_a_truncated_or_garbage_file_does_not_panic() {
    let image = std::fs::read(support::vectors("nvs").join("p05_blob_hex_5000.bin")).unwrap();
    let truncated = dump::decode(&image[..4096 + 100]);
    assert!(
        truncated
            .errors
            .iter()
            .any(|e| e.contains("not a whole number"))
    );
    assert!(
        truncated
            .errors
            .iter()
            .any(|e| e.contains("has no index entry")),
        "{:?}",
        truncated.errors
    );
    let garbage: Vec<u8> = (0..8192u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    assert!(!dump::decode(&garbage).errors.is_empty());
    assert!(dump::decode(&[]).errors.is_empty());
}
