//! Firmware bundles as ESP Web Tools manifests describe them, and the facts about ESP images and
//! chips that every reader of a bundle needs.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model::{Board, Chip};

/// First byte of every ESP application and bootloader image.
pub const IMAGE_MAGIC: u8 = 0xE9;

/// One part of a bundle, as the manifest lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct Part {
    /// File name, relative to the manifest (or an absolute URL in API answers).
    pub path: String,
    pub offset: u32,
    pub size: u64,
    pub sha256: String,
}

/// One chip family's parts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct Build {
    #[serde(rename = "chipFamily")]
    pub chip_family: String,
    pub parts: Vec<Part>,
}

/// An ESP Web Tools manifest with a size and SHA-256 for every part, as `vesper firmware
/// publish` writes it. It is also a release's `latest.json`, so it carries the application's
/// `size`, `sha256` and `url` at the top level too: what a device's OTA reads (DESIGN.md
/// section 3).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    pub builds: Vec<Build>,
    /// Which part is the application (also published as `v{version}.bin`).
    pub app: String,
    /// The application's size in bytes (releases published before this field: 0).
    #[serde(default)]
    pub size: u64,
    /// The application's SHA-256, lower-case hex.
    #[serde(default)]
    pub sha256: String,
    /// Where the application image is, relative to the manifest: `v{version}.bin`.
    #[serde(default)]
    pub url: String,
}

/// A part's offset as manifests write it: a number, or a string such as `"0x10000"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offset(pub u32);

impl<'de> Deserialize<'de> for Offset {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Number(u32),
            Text(String),
        }
        match Written::deserialize(d)? {
            Written::Number(n) => Ok(Offset(n)),
            Written::Text(text) => crate::partitions::parse_number(&text)
                .and_then(|n| u32::try_from(n).ok())
                .map(Offset)
                .ok_or_else(|| serde::de::Error::custom(format!("`{text}` is not an offset"))),
        }
    }
}

/// An ESP Web Tools manifest as any tool writes it (ESPHome, PlatformIO scripts, ESP Web
/// Tools' documentation): only `builds[].parts[]` with `path` and `offset` are needed; `size`
/// and `sha256` are checked when present. Our own manifests read as this too, with `app` set.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct BundleManifest {
    pub name: Option<String>,
    pub version: Option<String>,
    pub builds: Vec<BundleBuild>,
    /// Our manifests name their application part; plain ones do not (it is found by offset).
    pub app: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct BundleBuild {
    #[serde(rename = "chipFamily")]
    pub chip_family: Option<String>,
    pub parts: Vec<BundlePart>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct BundlePart {
    pub path: String,
    pub offset: Offset,
    pub size: Option<u64>,
    pub sha256: Option<String>,
}

impl From<Manifest> for BundleManifest {
    fn from(m: Manifest) -> Self {
        BundleManifest {
            name: Some(m.name),
            version: Some(m.version),
            builds: m
                .builds
                .into_iter()
                .map(|b| BundleBuild {
                    chip_family: Some(b.chip_family),
                    parts: b
                        .parts
                        .into_iter()
                        .map(|p| BundlePart {
                            path: p.path,
                            offset: Offset(p.offset),
                            size: Some(p.size),
                            sha256: (!p.sha256.is_empty()).then_some(p.sha256),
                        })
                        .collect(),
                })
                .collect(),
            app: Some(m.app),
        }
    }
}

impl BundleManifest {
    /// The build for a chip (ESP Web Tools manifests may hold one per chip family).
    pub fn build_for(&self, chip: Chip) -> Option<&BundleBuild> {
        let family = chip_family(chip);
        self.builds
            .iter()
            .find(|b| b.chip_family.as_deref() == Some(family))
    }
}

/// ESP Web Tools' name for a chip.
pub fn chip_family(chip: Chip) -> &'static str {
    match chip {
        Chip::Esp32 => "ESP32",
        Chip::Esp32s2 => "ESP32-S2",
        Chip::Esp32s3 => "ESP32-S3",
        Chip::Esp32c2 => "ESP32-C2",
        Chip::Esp32c3 => "ESP32-C3",
        Chip::Esp32c6 => "ESP32-C6",
        Chip::Esp32h2 => "ESP32-H2",
    }
}

/// The SHA-256 of `bytes` as manifests write it: 64 lower-case hex digits.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What an ESP-IDF app image says about itself: the `esp_app_desc_t` after the 24-byte image
/// header and the first 8-byte segment header (magic 0xABCD5432, `char version[32]` at byte 16,
/// `char project_name[32]` at byte 48), as `esp_app_get_description()` reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppDescription {
    pub version: String,
    pub project_name: String,
}

/// Why `version` cannot name a release, or `None`: releases are semantic versions
/// (semver.org: `1.0.1`, `2.0.0-rc.1`, `1.0.0+build.5`) of at most 64 characters. A version is a
/// folder and link name in the OTA tree (`v{version}/`, `v{version}.bin`), so nothing else may
/// pass: `1.5.0.bin` would squat the link of 1.5.0.
pub fn release_version_problem(version: &str) -> Option<String> {
    if version.len() > 64 {
        // The start of it, cut at a character (a byte index could fall inside one).
        let start: String = version.chars().take(16).collect();
        return Some(format!("version `{start}...` is longer than 64 characters"));
    }
    match semver::Version::parse(version) {
        Ok(_) => None,
        Err(e) => Some(format!(
            "version `{version}` is not a semantic version (e.g. 1.0.1 or 2.0.0-rc.1): {e}"
        )),
    }
}

/// The app description of `image`; `None` for images without one.
pub fn app_description(image: &[u8]) -> Option<AppDescription> {
    const DESC_AT: usize = 24 + 8;
    const DESC_MAGIC: u32 = 0xABCD_5432;
    if image.first() != Some(&IMAGE_MAGIC) {
        return None;
    }
    let desc = image.get(DESC_AT..DESC_AT + 80)?;
    if u32::from_le_bytes(desc[..4].try_into().ok()?) != DESC_MAGIC {
        return None;
    }
    let text = |field: &[u8]| -> Option<String> {
        let len = field.iter().position(|&b| b == 0).unwrap_or(field.len());
        std::str::from_utf8(&field[..len]).ok().map(str::to_owned)
    };
    let version = text(&desc[16..48])?;
    (!version.is_empty()).then_some(AppDescription {
        version,
        project_name: text(&desc[48..80])?,
    })
}

/// The version an ESP-IDF app image carries in its `esp_app_desc_t`; `None` for images without one.
pub fn app_version(image: &[u8]) -> Option<String> {
    app_description(image).map(|d| d.version)
}

/// Where a part goes on `board`, from its file name as ESP-IDF and PlatformIO builds name them:
/// `*bootloader*` at the chip's bootloader offset, `*partition*` at the table's, `*boot_app0*` /
/// `*otadata*` at the otadata partition, anything else at the first app partition.
pub fn offset_by_name(board: &Board, name: &str) -> Option<u32> {
    let lower = name.to_ascii_lowercase();
    if lower.contains("bootloader") {
        Some(bootloader_offset(board.chip))
    } else if lower.contains("partition") {
        Some(crate::partitions::TABLE_OFFSET)
    } else if lower.contains("boot_app0") || lower.contains("otadata") {
        board.table.otadata().map(|r| r.offset)
    } else {
        board.table.apps().first().map(|r| r.offset)
    }
}

/// Where the second-stage bootloader goes on a chip.
pub fn bootloader_offset(chip: Chip) -> u32 {
    match chip {
        Chip::Esp32 | Chip::Esp32s2 => 0x1000,
        _ => 0x0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overlong_version_with_a_wide_character_is_refused_not_a_panic() {
        // Found by `scripts/fuzz` (release_manifest): byte 16 fell inside `ԑ` (2 bytes).
        let version = format!("111111111111111\u{0511}{}", "1".repeat(60));
        let problem = release_version_problem(&version).unwrap();
        assert!(problem.starts_with("version `111111111111111\u{0511}...` is longer than 64"));
        assert!(release_version_problem(&"é".repeat(40)).is_some());
        assert_eq!(release_version_problem("1.0.1"), None);
    }

    #[test]
    fn the_version_of_an_app_image() {
        // esp_image_header_t, a segment header, then esp_app_desc_t, laid out by hand.
        let mut image = vec![0u8; 128];
        image[0] = 0xE9;
        image[32..36].copy_from_slice(&[0x32, 0x54, 0xCD, 0xAB]);
        image[48..55].copy_from_slice(b"2.10.0\0");
        assert_eq!(app_version(&image).as_deref(), Some("2.10.0"));
        image[32] = 0;
        assert_eq!(app_version(&image), None);
        assert_eq!(app_version(&[0xE9; 40]), None);
        assert_eq!(app_version(&[]), None);
    }

    #[test]
    fn a_plain_esp_web_tools_manifest_reads() {
        // As ESP Web Tools' documentation shows one: no sizes, no sums, offsets as numbers.
        let text = r#"{"name":"ESPHome","version":"2024.6.0","new_install_prompt_erase":true,
            "builds":[{"chipFamily":"ESP32","parts":[{"path":"bootloader.bin","offset":4096},
            {"path":"partitions.bin","offset":32768},{"path":"firmware.bin","offset":"0x10000"}]}]}"#;
        let m: BundleManifest = serde_json::from_str(text).unwrap();
        assert_eq!(m.app, None);
        let build = m.build_for(Chip::Esp32).unwrap();
        assert_eq!(build.parts[2].offset, Offset(0x10000));
        assert_eq!(build.parts[0].size, None);
        assert!(m.build_for(Chip::Esp32s3).is_none());
        let bad = text.replace("\"0x10000\"", "\"ten\"");
        let err = serde_json::from_str::<BundleManifest>(&bad).unwrap_err();
        assert!(err.to_string().contains("`ten` is not an offset"), "{err}");
    }
}
