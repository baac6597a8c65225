//! The firmware's build inputs that CI cannot run (PlatformIO's Xtensa toolchain is not
//! installable here): the `extra_scripts` hook that keeps `pio run -t upload` from writing
//! boot_app0.bin into the NVS partition, run with Python on both seed tables and judged by the
//! partition tables as esp-idf-part (gen_esp32part.py's port) resolves them; and the pinned
//! platform.

use std::process::Command;

use vesper::partitions::PartitionTable;

use crate::support::{python, root, stderr, stdout};

/// What the hook's functions answer for `csv_text`: the otadata offset, and where it puts each
/// of the Arduino framework's FLASH_EXTRA_IMAGES (bootloader, table, boot_app0 at 0xe000).
fn hook(csv_text: &str) -> (u32, Vec<(u32, String)>) {
    let script = r#"
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("hook", sys.argv[1])
hook = importlib.util.module_from_spec(spec)
spec.loader.exec_module(hook)
table = sys.stdin.read()
images = [("0x1000", "/b/bootloader.bin"), ("0x8000", "/b/partitions.bin"),
          ("0xe000", "/fw/tools/partitions/boot_app0.bin")]
print(json.dumps({"otadata": hook.otadata_offset(table),
                  "images": [[int(at, 16), path] for at, path in hook.retarget(images, hook.otadata_offset(table))]}))
"#;
    let mut child = Command::new(python())
        .args(["-c", script])
        .arg(root().join("firmware/tools/otadata_offset.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(csv_text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let answer: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let images = answer["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i[0].as_u64().unwrap() as u32,
                i[1].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (answer["otadata"].as_u64().unwrap() as u32, images)
}

#[test]
fn the_upload_hook_puts_boot_app0_at_otadata_and_never_into_nvs_on_both_seed_tables() {
    for (table, otadata) in [
        ("partitions/custom_4mb.csv", 0xf000),
        ("partitions/custom_2mb.csv", 0xd000),
    ] {
        let text = std::fs::read_to_string(root().join(table)).unwrap();
        let parsed = PartitionTable::parse(text.as_bytes(), table).unwrap();
        let nvs = parsed.nvs("nvs").unwrap();
        assert_eq!(parsed.otadata().unwrap().offset, otadata, "{table}");
        let (offset, images) = hook(&text);
        assert_eq!(offset, otadata, "{table}");
        let boot_app0 = images
            .iter()
            .find(|(_, p)| p.ends_with("boot_app0.bin"))
            .unwrap();
        assert_eq!(boot_app0.0, otadata, "{table}");
        // Arduino's 0xe000 lies inside custom_4mb.csv's NVS: what the hook prevents.
        if table.ends_with("custom_4mb.csv") {
            assert!(u64::from(nvs.offset) <= 0xe000 && 0xe000 < nvs.end());
        }
        // Each image's size: the bootloader up to the table, the table, and otadata's two sectors.
        for ((at, path), size) in images.iter().zip([0x7000u64, 0x1000, 0x2000]) {
            let end = u64::from(*at) + size;
            assert!(
                end <= u64::from(nvs.offset) || u64::from(*at) >= nvs.end(),
                "{path} at 0x{at:x} overlaps nvs in {table}"
            );
        }
        // The bootloader and the table stay where the framework put them.
        assert_eq!(images[0], (0x1000, "/b/bootloader.bin".to_owned()));
        assert_eq!(images[1], (0x8000, "/b/partitions.bin".to_owned()));
    }
}

#[test]
fn the_upload_hook_resolves_empty_offsets_as_gen_esp32part_does() {
    let text = "# Name, Type, SubType, Offset, Size, Flags\nnvs, data, nvs, , 0x5000,\n\
                otadata, data, ota, , 0x2000,\nphy_init, data, phy, , 0x1000,\n\
                ota_0, app, ota_0, , 1M,\nota_1, app, ota_1, , 1M,\n";
    let parsed = PartitionTable::parse(text.as_bytes(), "gaps.csv").unwrap();
    let (offset, _) = hook(text);
    assert_eq!(offset, parsed.otadata().unwrap().offset);
    assert_eq!(offset, 0xe000);
}

#[test]
fn the_platform_is_pinned_to_one_release_and_the_hook_is_wired() {
    let ini = std::fs::read_to_string(root().join("firmware/platformio.ini")).unwrap();
    let platform = ini
        .lines()
        .find(|l| l.starts_with("platform = ") && !l.contains("native"))
        .unwrap();
    // An exact release archive, not `espressif32` (whatever is newest) nor a range.
    assert!(
        platform.contains("/releases/download/") && platform.ends_with(".zip"),
        "{platform}"
    );
    assert!(
        !ini.contains("platform = espressif32"),
        "an unpinned platform is left"
    );
    assert!(ini.contains("extra_scripts = post:tools/otadata_offset.py"));
}
