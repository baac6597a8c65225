//! ESP-IDF partition tables (CSV or binary), parsed by `esp-idf-part`, which produces the same
//! binary as ESP-IDF's `gen_esp32part.py`.
//!
//! The station needs one thing above all from a table: where the board's `nvs` partition is and
//! how big it is, because the per-device NVS image must be exactly that size at exactly that
//! offset. Nothing in Vesper hard-codes 0x9000.

use std::fmt::Write as _;

use esp_idf_part::{DataType, SubType, Type};

pub use esp_idf_part::Partition;

/// Offset of the partition table in flash on every ESP32 family chip (ESP-IDF default).
pub const TABLE_OFFSET: u32 = 0x8000;

/// Magic bytes at the start of every binary partition table entry.
const BINARY_MAGIC: [u8; 2] = [0xAA, 0x50];

/// Name of the NVS partition that holds a device's provisioning data, unless a board says otherwise.
pub const DEFAULT_NVS_PARTITION: &str = "nvs";

/// Errors of partition tables.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    #[error("partition table {origin}: {source}")]
    Parse {
        origin: String,
        source: esp_idf_part::Error,
    },
    #[error("partition table {origin} is empty")]
    Empty { origin: String },
    #[error("partition table {origin}: entry {index} has {what}")]
    BadEntry {
        origin: String,
        index: usize,
        what: String,
    },
    #[error("partition table {origin}: CSV is not UTF-8 text")]
    NotUtf8 { origin: String },
    #[error("partition table {origin} has no partition named `{name}`")]
    Missing { origin: String, name: String },
    #[error(
        "partition `{name}` in {origin} is {ty}/{subtype}, not an NVS data partition (data/nvs)"
    )]
    NotNvs {
        origin: String,
        name: String,
        ty: String,
        subtype: String,
    },
    #[error(
        "partition table {origin} ends at 0x{end:x}, beyond the {flash_size}-byte (0x{flash_size:x}) flash"
    )]
    ExceedsFlash {
        origin: String,
        end: u64,
        flash_size: u64,
    },
}

/// Size of one binary table entry.
const ENTRY: usize = 32;

/// Checks what esp-idf-part 0.6 would otherwise panic on in a binary table (found by fuzzing):
/// an app or data subtype it does not know, or flag bits it does not know.
fn check_binary_entries(bytes: &[u8], origin: &str) -> Result<(), PartitionError> {
    use esp_idf_part::{AppType, DataType, Flags};
    let bad = |index: usize, what: String| PartitionError::BadEntry {
        origin: origin.to_owned(),
        index,
        what,
    };
    for (index, entry) in bytes.chunks_exact(ENTRY).enumerate() {
        if !entry.starts_with(&BINARY_MAGIC) {
            break;
        }
        let (ty, subtype) = (entry[2], entry[3]);
        let known = match ty {
            0x00 => AppType::from_repr(usize::from(subtype)).is_some(),
            0x01 => DataType::from_repr(usize::from(subtype)).is_some(),
            _ => true,
        };
        if !known {
            return Err(bad(
                index,
                format!("an unknown subtype 0x{subtype:02x} for type 0x{ty:02x}"),
            ));
        }
        let flags = u32::from_le_bytes(entry[28..32].try_into().expect("4 bytes"));
        if Flags::from_bits(flags).is_none() {
            return Err(bad(index, format!("unknown flags 0x{flags:08x}")));
        }
    }
    Ok(())
}

/// Checks what esp-idf-part 0.6 would otherwise panic on in a CSV table (found by fuzzing): an
/// `app` or `data` entry whose subtype, by name or number, is not one of that type's (`ota_1,
/// app, 1, ...` or `x, app, nvs, ...`). Lines it cannot split are left to the parser's errors.
fn check_csv_entries(text: &str, origin: &str) -> Result<(), PartitionError> {
    use esp_idf_part::{AppType, DataType};
    use std::str::FromStr as _;
    let lines = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'));
    for (index, line) in lines.enumerate() {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let (Some(ty), Some(subtype)) = (fields.get(1), fields.get(2)) else {
            continue;
        };
        let number = parse_number(subtype).and_then(|n| u8::try_from(n).ok());
        let value = AppType::from_str(subtype)
            .map(|t| t as u8)
            .or_else(|_| DataType::from_str(subtype).map(|t| t as u8))
            .ok()
            .or(number);
        let Some(value) = value else { continue };
        let known = match (*ty, parse_number(ty)) {
            ("app", _) | (_, Some(0)) => AppType::from_repr(usize::from(value)).is_some(),
            ("data", _) | (_, Some(1)) => DataType::from_repr(usize::from(value)).is_some(),
            _ => true,
        };
        if !known {
            return Err(PartitionError::BadEntry {
                origin: origin.to_owned(),
                index,
                what: format!("a subtype `{subtype}` that is not one of type `{ty}`'s"),
            });
        }
    }
    Ok(())
}

/// Runs the partition table parser, turning a panic inside it into an error: a table is input a
/// technician or a firmware upload supplies, and must never crash the program.
fn guarded<T>(
    origin: &str,
    parse: impl FnOnce() -> Result<T, esp_idf_part::Error>,
) -> Result<Result<T, esp_idf_part::Error>, PartitionError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(parse)).map_err(|_| {
        PartitionError::BadEntry {
            origin: origin.to_owned(),
            index: 0,
            what: "a form the parser cannot read".into(),
        }
    })
}

/// Where a partition lives in flash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub offset: u32,
    pub size: u32,
}

impl Region {
    pub fn end(&self) -> u64 {
        u64::from(self.offset) + u64::from(self.size)
    }

    /// Whether two regions share at least one byte.
    pub fn overlaps(&self, other: &Region) -> bool {
        u64::from(self.offset) < other.end() && u64::from(other.offset) < self.end()
    }
}

/// A parsed, validated partition table and where it came from (for messages).
#[derive(Debug, Clone)]
pub struct PartitionTable {
    origin: String,
    table: esp_idf_part::PartitionTable,
}

impl PartitionTable {
    /// Parses a table from CSV text or binary bytes; `origin` names it in messages.
    pub fn parse(bytes: &[u8], origin: &str) -> Result<Self, PartitionError> {
        let origin = origin.to_owned();
        if bytes.is_empty() {
            return Err(PartitionError::Empty { origin });
        }
        let parsed = if bytes.starts_with(&BINARY_MAGIC) {
            check_binary_entries(bytes, &origin)?;
            guarded(&origin, || {
                esp_idf_part::PartitionTable::try_from_bytes(bytes.to_vec())
            })?
        } else {
            let text = std::str::from_utf8(bytes).map_err(|_| PartitionError::NotUtf8 {
                origin: origin.clone(),
            })?;
            check_csv_entries(text, &origin)?;
            guarded(&origin, || esp_idf_part::PartitionTable::try_from_str(text))?
        };
        match parsed {
            Ok(table) if table.partitions().is_empty() => Err(PartitionError::Empty { origin }),
            Ok(table) => Ok(Self { origin, table }),
            Err(source) => Err(PartitionError::Parse { origin, source }),
        }
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn partitions(&self) -> &[Partition] {
        self.table.partitions()
    }

    /// The binary form (3072 bytes, with its MD5 entry), as flashed at [`TABLE_OFFSET`].
    pub fn to_bin(&self) -> Result<Vec<u8>, PartitionError> {
        self.table.to_bin().map_err(|source| PartitionError::Parse {
            origin: self.origin.clone(),
            source,
        })
    }

    /// The first byte after the last partition.
    pub fn end(&self) -> u64 {
        self.partitions()
            .iter()
            .map(|p| region(p).end())
            .max()
            .unwrap_or(0)
    }

    /// Checks that the table fits in a flash chip of `flash_size` bytes.
    pub fn check_fits(&self, flash_size: u64) -> Result<(), PartitionError> {
        let end = self.end();
        if end > flash_size {
            return Err(PartitionError::ExceedsFlash {
                origin: self.origin.clone(),
                end,
                flash_size,
            });
        }
        Ok(())
    }

    /// The NVS data partition called `name` (normally `nvs`).
    pub fn nvs(&self, name: &str) -> Result<Region, PartitionError> {
        let partition = self
            .table
            .find(name)
            .ok_or_else(|| PartitionError::Missing {
                origin: self.origin.clone(),
                name: name.to_owned(),
            })?;
        if partition.ty() != Type::Data || partition.subtype() != SubType::Data(DataType::Nvs) {
            return Err(PartitionError::NotNvs {
                origin: self.origin.clone(),
                name: name.to_owned(),
                ty: partition.ty().to_string(),
                subtype: partition.subtype().to_string(),
            });
        }
        Ok(region(partition))
    }

    /// The app partitions (factory, ota_0, ...), lowest offset first: where an app image goes.
    pub fn apps(&self) -> Vec<Region> {
        let mut apps: Vec<Region> = self
            .table
            .partitions()
            .iter()
            .filter(|p| p.ty() == Type::App)
            .map(region)
            .collect();
        apps.sort_by_key(|r| r.offset);
        apps
    }

    /// The `otadata` partition (which app slot boots), if the table has OTA slots.
    pub fn otadata(&self) -> Option<Region> {
        self.table
            .partitions()
            .iter()
            .find(|p| p.subtype() == SubType::Data(DataType::Ota))
            .map(region)
    }

    /// A human table of the resolved layout, one partition per line.
    pub fn describe(&self) -> String {
        let mut out = format!(
            "{:<16} {:<6} {:<9} {:>10} {:>10} {:>10}  flags\n",
            "name", "type", "subtype", "offset", "size", "end"
        );
        for p in self.partitions() {
            let r = region(p);
            let _ = writeln!(
                out,
                "{:<16} {:<6} {:<9} {:>10} {:>10} {:>10}  {}",
                p.name(),
                p.ty().to_string(),
                p.subtype().to_string(),
                format!("0x{:x}", r.offset),
                format!("0x{:x}", r.size),
                format!("0x{:x}", r.end()),
                flags(p),
            );
        }
        out
    }
}

/// The region a partition occupies.
pub fn region(p: &Partition) -> Region {
    Region {
        offset: p.offset(),
        size: p.size(),
    }
}

fn flags(p: &Partition) -> String {
    let mut names = Vec::new();
    if p.flags().contains(esp_idf_part::Flags::ENCRYPTED) {
        names.push("encrypted");
    }
    if p.flags().contains(esp_idf_part::Flags::READONLY) {
        names.push("readonly");
    }
    names.join(":")
}

/// Parses a flash or partition size: `4MB`, `4M`, `512K`, `0x400000` or `4194304`.
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let upper = t.to_ascii_uppercase();
    let (number, unit) =
        if let Some(n) = upper.strip_suffix("MB").or_else(|| upper.strip_suffix('M')) {
            (n.to_owned(), 1024 * 1024)
        } else if let Some(n) = upper.strip_suffix("KB").or_else(|| upper.strip_suffix('K')) {
            (n.to_owned(), 1024)
        } else {
            (upper, 1)
        };
    let value = parse_number(&number)?;
    value.checked_mul(unit)
}

/// Parses a decimal or `0x` hexadecimal number.
pub fn parse_number(text: &str) -> Option<u64> {
    let t = text.trim();
    match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => t.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_csv_subtype_of_another_type_is_an_error_not_a_panic() {
        // Found by `scripts/fuzz` (partition_table): esp-idf-part panics on these.
        for line in [
            "ota_1, app, 1, , 1M",
            "x, app, nvs, , 1M",
            "x, 0, 0x99, , 1M",
            "n, data, 0x7f, , 0x3000",
            "n, data, ota_0, , 0x3000",
        ] {
            let text = format!("nvs, data, nvs, 0x9000, 0x6000\n{line}\n");
            let error = PartitionTable::parse(text.as_bytes(), "t.csv").unwrap_err();
            assert!(
                error.to_string().contains("entry 1 has a subtype"),
                "{line}: {error}"
            );
        }
        let fine = "nvs, data, nvs, 0x9000, 0x6000\nfactory, app, factory, 0x10000, 1M\nx, 0x40, 7, , 4K\n";
        assert!(PartitionTable::parse(fine.as_bytes(), "t.csv").is_ok());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4MB"), Some(4 << 20));
        assert_eq!(parse_size("2M"), Some(2 << 20));
        assert_eq!(parse_size("512K"), Some(512 << 10));
        assert_eq!(parse_size("0x6000"), Some(0x6000));
        assert_eq!(parse_size("24576"), Some(24576));
        assert_eq!(parse_size("4 MB"), Some(4 << 20));
        assert_eq!(parse_size("four"), None);
        assert_eq!(parse_size(""), None);
        assert_eq!(parse_size("0x"), None);
    }

    #[test]
    fn regions_overlap() {
        let a = Region {
            offset: 0x9000,
            size: 0x6000,
        };
        assert!(a.overlaps(&Region {
            offset: 0xe000,
            size: 0x1000
        }));
        assert!(!a.overlaps(&Region {
            offset: 0xf000,
            size: 0x1000
        }));
        assert!(!a.overlaps(&Region {
            offset: 0x8000,
            size: 0x1000
        }));
    }

    #[test]
    fn empty_and_garbage_tables_are_errors() {
        assert!(matches!(
            PartitionTable::parse(b"", "x"),
            Err(PartitionError::Empty { .. })
        ));
        assert!(matches!(
            PartitionTable::parse(b"\xaa", "x"),
            Err(PartitionError::NotUtf8 { .. })
        ));
        assert!(PartitionTable::parse(b"\xaa\x50\x01", "x").is_err());
        assert!(PartitionTable::parse(b"nvs, data, nvs, zz, 0x6000\n", "x").is_err());
    }
}
