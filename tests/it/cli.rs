//! The command line as a technician or a script uses it: serial numbers, passwords, NVS images,
//! and above all the errors for bad input.

use std::path::Path;

use vesper::serial::SerialNumber;

use crate::support::{self, expected_password, stderr, stdout, vesper, vesper_env};

#[test]
fn sn_new_prints_distinct_valid_numbers_for_the_date() {
    let dir = tempfile::tempdir().unwrap();
    let out = vesper(
        dir.path(),
        &[
            "sn",
            "new",
            "--type",
            "BP",
            "--rev",
            "01",
            "--count",
            "500",
            "--date",
            "2026-12-31",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<String> = stdout(&out).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 500);
    let unique: std::collections::HashSet<&String> = lines.iter().collect();
    assert_eq!(unique.len(), 500);
    for line in &lines {
        let sn: SerialNumber = line.parse().unwrap();
        assert!(line.starts_with("PV-26L31-BP01R-"), "{line}");
        assert_eq!(
            sn.date(),
            chrono::NaiveDate::from_ymd_opt(2026, 12, 31).unwrap()
        );
    }
}

#[test]
fn sn_new_defaults_to_one_number_today() {
    let dir = tempfile::tempdir().unwrap();
    let out = vesper(dir.path(), &["sn", "new", "--type", "BC", "--rev", "02"]);
    assert!(out.status.success());
    let sn: SerialNumber = stdout(&out).trim().parse().unwrap();
    let today = chrono::Utc::now().date_naive();
    assert!(
        sn.date() == today || sn.date() == today.pred_opt().unwrap(),
        "date {}",
        sn.date()
    );
}

#[test]
fn sn_new_rejects_bad_arguments_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 5] = [
        (&["--type", "bc", "--rev", "02"], "two upper-case letters"),
        (&["--type", "BC", "--rev", "2"], "two digits"),
        (
            &["--type", "BC", "--rev", "02", "--date", "2026-02-30"],
            "not a date",
        ),
        (
            &["--type", "BC", "--rev", "02", "--date", "2100-01-01"],
            "two-digit year",
        ),
        (&["--type", "BC", "--rev", "02", "--count", "0"], "0"),
    ];
    for (args, expected) in cases {
        let mut all = vec!["sn", "new"];
        all.extend_from_slice(args);
        let out = vesper(dir.path(), &all);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            stderr(&out).contains(expected),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(stdout(&out).is_empty(), "nothing printed on error");
    }
}

#[test]
fn sn_check_names_the_wrong_part_of_each_bad_number() {
    let dir = tempfile::tempdir().unwrap();
    let good = vesper(
        dir.path(),
        &[
            "sn",
            "check",
            "PV-26A18-BC02R-X7KQA",
            "PV-24B29-BP01R-ZZ234",
        ],
    );
    assert!(good.status.success());
    assert!(stdout(&good).is_empty());

    let cases = [
        ("PV-26A18-BC02R-X7KQ", "length is 19"),
        ("PV-2XA18-BC02R-X7KQA", "year `2X`"),
        ("PV-26M18-BC02R-X7KQA", "month letter `M`"),
        (
            "PV-26B30-BC02R-X7KQA",
            "day 30 does not exist in February 2026",
        ),
        ("PV-26A18-B202R-X7KQA", "board type `B2`"),
        ("PV-26A18-BCX2R-X7KQA", "revision `X2`"),
        ("PV-26A18-BC02Q-X7KQA", "literal `R`"),
        ("PV-26A18-BC02R-X7KQO", "suffix `X7KQO` has `O`"),
    ];
    let mut args = vec!["sn", "check", "PV-26A18-BC02R-X7KQA"];
    args.extend(cases.iter().map(|(sn, _)| *sn));
    let out = vesper(dir.path(), &args);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), cases.len(), "one line per bad SN:\n{text}");
    for ((sn, expected), line) in cases.iter().zip(&lines) {
        assert!(line.contains(sn) && line.contains(expected), "{sn}: {line}");
    }
}

#[test]
fn mqtt_password_uses_the_secret_from_the_environment() {
    const SECRET: &str = "vesper-test-secret-0123456789abcdef";
    let dir = tempfile::tempdir().unwrap();
    let out = vesper_env(
        dir.path(),
        &["mqtt", "password", "PV-26L31-BP01R-ZZ234"],
        &[("MQTT_SECRET", SECRET)],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!("{}\n", expected_password(SECRET, "PV-26L31-BP01R-ZZ234"))
    );

    let service = vesper_env(
        dir.path(),
        &["mqtt", "password", "--service", "vesper-backend"],
        &[("MQTT_SECRET", SECRET)],
    );
    assert_eq!(
        stdout(&service).trim(),
        expected_password(SECRET, "service:vesper-backend")
    );

    let missing = vesper(dir.path(), &["mqtt", "password", "PV-26L31-BP01R-ZZ234"]);
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("MQTT_SECRET"),
        "{}",
        stderr(&missing)
    );
    assert!(stdout(&missing).is_empty());

    let empty = vesper_env(
        dir.path(),
        &["mqtt", "password", "PV-26L31-BP01R-ZZ234"],
        &[("MQTT_SECRET", "")],
    );
    assert!(stderr(&empty).contains("empty"), "{}", stderr(&empty));

    // The design's short vector secret is refused: too short to resist an offline guess.
    let weak = vesper_env(
        dir.path(),
        &["mqtt", "password", "PV-26L31-BP01R-ZZ234"],
        &[("MQTT_SECRET", "vesper-test-secret")],
    );
    assert!(!weak.status.success());
    assert!(
        stderr(&weak).contains("at least 32 bytes")
            && stderr(&weak).contains("vesper mqtt secret new"),
        "{}",
        stderr(&weak)
    );
    assert!(stdout(&weak).is_empty());

    let bad = vesper_env(
        dir.path(),
        &["mqtt", "password", "PV-26L31-BP01R-ZZ23"],
        &[("MQTT_SECRET", SECRET)],
    );
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("length is 19"), "{}", stderr(&bad));
}

#[test]
fn mqtt_secret_new_prints_a_usable_random_secret() {
    let dir = tempfile::tempdir().unwrap();
    let first = vesper(dir.path(), &["mqtt", "secret", "new"]);
    let second = vesper(dir.path(), &["mqtt", "secret", "new"]);
    assert!(first.status.success(), "{}", stderr(&first));
    let (a, b) = (stdout(&first), stdout(&second));
    let a = a.trim_end_matches('\n');
    assert_eq!(a.len(), 64, "{a:?}");
    assert!(a.bytes().all(|c| c.is_ascii_hexdigit()), "{a:?}");
    assert_ne!(a, b.trim_end(), "two secrets are different");
    let used = vesper_env(
        dir.path(),
        &["mqtt", "password", "PV-26L31-BP01R-ZZ234"],
        &[("MQTT_SECRET", a)],
    );
    assert!(used.status.success(), "{}", stderr(&used));
    assert_eq!(
        stdout(&used).trim(),
        expected_password(a, "PV-26L31-BP01R-ZZ234")
    );
}

#[test]
fn mqtt_acl_answers_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let allow = vesper(
        dir.path(),
        &[
            "mqtt",
            "acl",
            "PV-26A18-BC02R-X7KQA",
            "vesper/PV-26A18-BC02R-X7KQA/data",
            "2",
        ],
    );
    assert_eq!(
        (stdout(&allow).trim(), allow.status.code()),
        ("allow", Some(0))
    );
    let deny = vesper(
        dir.path(),
        &["mqtt", "acl", "PV-26A18-BC02R-X7KQA", "vesper/+/data", "4"],
    );
    assert_eq!(
        (stdout(&deny).trim(), deny.status.code()),
        ("deny", Some(1))
    );
    let owner = vesper(
        dir.path(),
        &[
            "mqtt",
            "acl",
            "uid-42",
            "vesper/PV-26A18-BC02R-X7KQA/control",
            "2",
            "--owns",
            "PV-26A18-BC02R-X7KQA",
        ],
    );
    assert_eq!(stdout(&owner).trim(), "allow");
    let bad_acc = vesper(
        dir.path(),
        &["mqtt", "acl", "service", "vesper/+/data", "3"],
    );
    assert!(stderr(&bad_acc).contains("acc 3"), "{}", stderr(&bad_acc));
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn nvs_generate_errors_name_the_row_and_leave_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let header = "key,type,encoding,value\nns,namespace,,\n";
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "long key",
            format!("{header}a_very_long_key_x,data,u8,1\n"),
            "0x6000",
            "case.csv:3: key `a_very_long_key_x`: key `a_very_long_key_x` is longer than 15",
        ),
        (
            "odd hex",
            format!("{header}h,data,hex2bin,abc\n"),
            "0x6000",
            "case.csv:3: key `h`: hex2bin value has an odd number of digits",
        ),
        (
            "bad hex",
            format!("{header}h,data,hex2bin,zz\n"),
            "0x6000",
            "case.csv:3: key `h`: hex2bin value: `zz`",
        ),
        (
            "bad base64",
            format!("{header}b,data,base64,abc\n"),
            "0x6000",
            "case.csv:3: key `b`: base64 value: invalid base64: incorrect padding",
        ),
        (
            "unknown encoding",
            format!("{header}x,data,float,1.5\n"),
            "0x6000",
            "case.csv:3: key `x`: encoding `float` is not supported",
        ),
        (
            "unknown type",
            format!("{header}x,dta,u8,1\n"),
            "0x6000",
            "case.csv:3: key `x`: type `dta` is not one of namespace, data, file",
        ),
        (
            "out of range",
            format!("{header}x,data,u8,256\n"),
            "0x6000",
            "case.csv:3: key `x`: 256 is out of range for u8 (0..=255)",
        ),
        (
            "negative unsigned",
            format!("{header}x,data,u32,-1\n"),
            "0x6000",
            "-1 is out of range for u32",
        ),
        (
            "not an integer",
            format!("{header}x,data,u16,0x10\n"),
            "0x6000",
            "case.csv:3: key `x`: `0x10` is not a decimal integer",
        ),
        (
            "missing value",
            format!("{header}x,data\n"),
            "0x6000",
            "case.csv:3: key `x`: the `encoding` field is missing",
        ),
        (
            "missing column",
            "key,type,value\nns,namespace,\n".into(),
            "0x6000",
            "`encoding` is missing",
        ),
        (
            "unterminated quote",
            format!("{header}x,data,string,\"abc\ny,data,u8,1\n"),
            "0x6000",
            "case.csv:3: a quoted field is never closed",
        ),
        (
            "string too long for a page",
            format!("{header}s,data,string,{}\n", "s".repeat(3968)),
            "0x6000",
            "cannot fit in one page",
        ),
        (
            "string over 4000",
            format!("{header}s,data,string,{}\n", "s".repeat(4000)),
            "0x6000",
            "more than the 4000 bytes",
        ),
        (
            "does not fit",
            format!("{header}b,data,hex2bin,{}\n", "ab".repeat(20000)),
            "0x6000",
            "needs more than the 5 data pages",
        ),
        (
            "size not page multiple",
            format!("{header}x,data,u8,1\n"),
            "0x6001",
            "not a multiple of 4096",
        ),
        (
            "size too small",
            format!("{header}x,data,u8,1\n"),
            "0",
            "below the minimum",
        ),
        (
            "size not a number",
            format!("{header}x,data,u8,1\n"),
            "big",
            "SIZE `big` is not a number",
        ),
        (
            "missing file",
            format!("{header}f,file,binary,nope.bin\n"),
            "0x6000",
            "case.csv:3: key `f`: cannot read file",
        ),
        (
            "non-ascii key",
            format!("{header}clé,data,u8,1\n"),
            "0x6000",
            "must be ASCII",
        ),
        (
            "non-ascii binary",
            format!("{header}b,data,binary,clé\n"),
            "0x6000",
            "must be ASCII text",
        ),
        (
            "upper-case string",
            format!("{header}s,data,STRING,abc\n"),
            "0x6000",
            "must be written in lower case",
        ),
        (
            "nul in line",
            format!("{header}s,data,string,a\0b\n"),
            "0x6000",
            "case.csv:3: line contains a NUL",
        ),
        (
            "bad fill",
            format!("{header}f,data,blob_fill(4;00),ab\n"),
            "0x6000",
            "is malformed",
        ),
    ];
    for (name, csv, size, expected) in cases {
        let input = write(dir.path(), "case.csv", &csv);
        let output = dir.path().join("out.bin");
        let out = vesper(
            dir.path(),
            &["nvs", "generate", &input, output.to_str().unwrap(), size],
        );
        assert!(!out.status.success(), "{name}: should fail");
        assert!(
            stderr(&out).contains(expected),
            "{name}: expected `{expected}` in: {}",
            stderr(&out)
        );
        assert!(!output.exists(), "{name}: an output file was left behind");
    }
    let not_utf8 = dir.path().join("latin1.csv");
    std::fs::write(
        &not_utf8,
        b"key,type,encoding,value\nns,namespace,,\nx,data,string,caf\xe9\n",
    )
    .unwrap();
    let out = vesper(
        dir.path(),
        &[
            "nvs",
            "generate",
            not_utf8.to_str().unwrap(),
            "out.bin",
            "0x6000",
        ],
    );
    assert!(
        stderr(&out).contains("latin1.csv: not UTF-8 text (at byte 56)"),
        "{}",
        stderr(&out)
    );
}

/// No run removes a file it did not create (issue 25, finding 8): a failed run leaves an earlier
/// output as it was and says so, and a forgotten SIZE is caught before anything is touched (it
/// used to delete the last CSV, read as the "output").
#[test]
fn nvs_generate_never_removes_a_file_it_did_not_write() {
    let dir = tempfile::tempdir().unwrap();
    let header = "key,type,encoding,value\nns,namespace,,\n";
    let good = write(dir.path(), "good.csv", &format!("{header}x,data,u8,1\n"));
    let bad = write(dir.path(), "bad.csv", &format!("{header}x,data,u8,1000\n"));
    let device = write(
        dir.path(),
        "device.csv",
        "key,type,encoding,value\ny,data,u8,2\n",
    );
    let out = dir.path().join("device.bin");
    assert!(
        vesper(
            dir.path(),
            &["nvs", "generate", &good, out.to_str().unwrap(), "0x3000"]
        )
        .status
        .success()
    );
    let earlier = std::fs::read(&out).unwrap();
    let failed = vesper(
        dir.path(),
        &["nvs", "generate", &bad, out.to_str().unwrap(), "0x3000"],
    );
    assert!(!failed.status.success());
    assert_eq!(
        std::fs::read(&out).unwrap(),
        earlier,
        "the earlier image is untouched"
    );
    assert!(
        stderr(&failed).contains("left as it was"),
        "{}",
        stderr(&failed)
    );

    // `vesper nvs generate good.csv device.csv out.bin`: SIZE forgotten.
    let device_text = std::fs::read(&device).unwrap();
    let forgot = vesper(
        dir.path(),
        &["nvs", "generate", &good, &device, out.to_str().unwrap()],
    );
    assert!(!forgot.status.success());
    assert!(
        stderr(&forgot).contains("did you forget SIZE?"),
        "{}",
        stderr(&forgot)
    );
    assert_eq!(
        std::fs::read(&device).unwrap(),
        device_text,
        "device.csv survives"
    );
    assert_eq!(std::fs::read(&out).unwrap(), earlier);
    // An output that is one of the inputs, or a .csv, is refused before any write.
    for output in [good.as_str(), device.as_str()] {
        let refused = vesper(dir.path(), &["nvs", "generate", &good, output, "0x3000"]);
        assert!(!refused.status.success());
        assert!(
            stderr(&refused).contains("OUTPUT.bin"),
            "{}",
            stderr(&refused)
        );
    }
    assert_eq!(std::fs::read(&device).unwrap(), device_text);
}

#[test]
fn nvs_file_rows_are_relative_to_the_csv_folder_and_inputs_chain() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("inputs");
    std::fs::create_dir(&sub).unwrap();
    std::fs::write(sub.join("cert.der"), [0u8, 1, 2, 255]).unwrap();
    write(
        &sub,
        "a.csv",
        "key,type,encoding,value\nns,namespace,,\ncert,file,binary,cert.der\n",
    );
    write(&sub, "b.csv", "key,type,encoding,value\nafter,data,u8,9\n");
    let elsewhere = tempfile::tempdir().unwrap();
    let out = vesper(
        elsewhere.path(),
        &[
            "nvs",
            "generate",
            sub.join("a.csv").to_str().unwrap(),
            sub.join("b.csv").to_str().unwrap(),
            "out.bin",
            "12288",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let image = std::fs::read(elsewhere.path().join("out.bin")).unwrap();
    let decoded = vesper::nvs::dump::decode(&image);
    let items: Vec<(&str, u8)> = decoded
        .items
        .iter()
        .map(|i| (i.key.as_str(), i.namespace))
        .collect();
    assert_eq!(
        items,
        [("ns", 0), ("cert", 1), ("after", 1)],
        "state carries over to the second CSV"
    );
    assert_eq!(
        decoded.items[1].value,
        vesper::nvs::dump::ItemValue::Blob(vec![0, 1, 2, 255])
    );
}

#[test]
fn nvs_dump_output_regenerates_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let csv = write(
        dir.path(),
        "in.csv",
        "key,type,encoding,value\nvesper,namespace,,\nname,data,string,\"comma, \"\"quote\"\" and\nnewline\"\nneg,data,i32,-5\nblob,data,base64,AAEC\n#k,data,u8,1\n",
    );
    assert!(
        vesper(dir.path(), &["nvs", "generate", &csv, "a.bin", "0x4000"])
            .status
            .success()
    );
    let dumped = vesper(dir.path(), &["nvs", "dump", "a.bin", "-o", "dump.csv"]);
    assert!(dumped.status.success(), "{}", stderr(&dumped));
    assert!(
        stderr(&dumped).contains("reproduces a.bin byte for byte"),
        "{}",
        stderr(&dumped)
    );
    let text = std::fs::read_to_string(dir.path().join("dump.csv")).unwrap();
    assert!(
        text.contains("neg,data,i32,-5\nblob,data,hex2bin,000102\n"),
        "{text}"
    );
    assert!(
        vesper(
            dir.path(),
            &["nvs", "generate", "dump.csv", "b.bin", "0x4000"]
        )
        .status
        .success()
    );
    assert_eq!(
        std::fs::read(dir.path().join("a.bin")).unwrap(),
        std::fs::read(dir.path().join("b.bin")).unwrap()
    );
}

#[test]
fn nvs_device_builds_the_image_for_the_board_of_the_serial_number() {
    let dir = tempfile::tempdir().unwrap();
    assert!(vesper(dir.path(), &["init"]).status.success());
    const SECRET: &str = "vesper-test-secret-0123456789abcdef";
    let secret = [("MQTT_SECRET", SECRET)];
    let out = vesper_env(
        dir.path(),
        &["nvs", "device", "PV-26A18-BC02R-X7KQA", "-o", "dev.bin"],
        &secret,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("flash it at 0x9000 (partition `nvs` of board bellcore-v2)"),
        "{}",
        stderr(&out)
    );
    let image = std::fs::read(dir.path().join("dev.bin")).unwrap();
    assert_eq!(image.len(), 0x6000);
    let decoded = vesper::nvs::dump::decode(&image);
    let find = |key: &str| {
        decoded
            .items
            .iter()
            .find(|i| i.key == key)
            .map(|i| i.value.clone())
    };
    use vesper::nvs::dump::ItemValue;
    assert_eq!(
        find("mqtt_pass"),
        Some(ItemValue::Str(
            format!("{}\0", expected_password(SECRET, "PV-26A18-BC02R-X7KQA")).into_bytes()
        ))
    );
    assert_eq!(
        find("mqtt_user"),
        Some(ItemValue::Str(b"PV-26A18-BC02R-X7KQA\0".to_vec()))
    );
    assert_eq!(
        find("mqtt_port"),
        Some(ItemValue::Int {
            ty: vesper::nvs::ItemType::U16,
            value: 8883
        })
    );
    assert_eq!(
        find("psram"),
        Some(ItemValue::Int {
            ty: vesper::nvs::ItemType::U8,
            value: 1
        })
    );
    assert!(
        !String::from_utf8_lossy(&image).contains(SECRET),
        "the master secret never reaches a device"
    );

    let v1 = vesper_env(
        dir.path(),
        &["nvs", "device", "PV-26A18-BC01R-X7KQA", "-o", "v1.bin"],
        &secret,
    );
    assert!(v1.status.success());
    assert_eq!(
        std::fs::metadata(dir.path().join("v1.bin")).unwrap().len(),
        0x4000,
        "bellcore-v1 has a 0x4000 nvs"
    );

    let wrong = vesper_env(
        dir.path(),
        &["nvs", "device", "PV-26A18-BP01R-X7KQA", "-o", "x.bin"],
        &secret,
    );
    assert!(
        stderr(&wrong).contains("no board in") && stderr(&wrong).contains("hw_type BP"),
        "{}",
        stderr(&wrong)
    );
    let mismatch = vesper_env(
        dir.path(),
        &[
            "nvs",
            "device",
            "PV-26A18-BC01R-X7KQA",
            "--board",
            "bellcore-v2",
            "-o",
            "x.bin",
        ],
        &secret,
    );
    assert!(
        stderr(&mismatch).contains("is a BC01 board, but board `bellcore-v2` is BC02"),
        "{}",
        stderr(&mismatch)
    );
    assert!(!dir.path().join("x.bin").exists());
    let _ = support::root();
}
