//! The binary partition table at 0x8000, read as ESP-IDF's bootloader reads it
//! (`esp_partition_info_t`: 32-byte entries, magic `AA 50`, ended by an MD5 entry or erased flash).

/// Flash offset of the partition table on every ESP32 family chip.
pub const OFFSET: usize = 0x8000;
/// The table's largest size (ESP-IDF's `ESP_PARTITION_TABLE_MAX_LEN`).
pub const MAX_LEN: usize = 0xC00;

const ENTRY_MAGIC: [u8; 2] = [0xAA, 0x50];
const MD5_MAGIC: [u8; 2] = [0xEB, 0xEB];
const ENTRY_LEN: usize = 32;

/// Partition type `app`.
pub const TYPE_APP: u8 = 0x00;
/// Partition type `data`.
pub const TYPE_DATA: u8 = 0x01;
/// Data subtype `nvs`.
pub const SUBTYPE_NVS: u8 = 0x02;

/// One entry of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub ty: u8,
    pub subtype: u8,
    pub offset: u32,
    pub size: u32,
}

impl Entry {
    pub fn end(&self) -> usize {
        self.offset as usize + self.size as usize
    }

    /// `app`, `data` or the number, as the bootloader's log prints it.
    pub fn type_name(&self) -> String {
        match self.ty {
            TYPE_APP => "app".into(),
            TYPE_DATA => "data".into(),
            other => format!("0x{other:02x}"),
        }
    }
}

/// Reads the entries of the table in `flash`; an error says why the bootloader would stop.
pub fn read(flash: &[u8]) -> Result<Vec<Entry>, String> {
    let table = flash
        .get(OFFSET..OFFSET + MAX_LEN)
        .ok_or("the flash is smaller than the partition table's place")?;
    let mut entries = Vec::new();
    for (index, raw) in table.chunks_exact(ENTRY_LEN).enumerate() {
        match [raw[0], raw[1]] {
            ENTRY_MAGIC => entries.push(entry(raw)),
            MD5_MAGIC | [0xFF, 0xFF] => break,
            other => {
                return Err(format!(
                    "entry {index} has magic {:02x}{:02x}, not aa50",
                    other[0], other[1]
                ));
            }
        }
    }
    if entries.is_empty() {
        return Err("the partition table is empty".into());
    }
    Ok(entries)
}

fn entry(raw: &[u8]) -> Entry {
    let word = |at: usize| u32::from_le_bytes([raw[at], raw[at + 1], raw[at + 2], raw[at + 3]]);
    let label = &raw[12..28];
    let len = label.iter().position(|&b| b == 0).unwrap_or(label.len());
    Entry {
        name: String::from_utf8_lossy(&label[..len]).into_owned(),
        ty: raw[2],
        subtype: raw[3],
        offset: word(4),
        size: word(8),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An entry written by hand from `esp_partition_info_t`.
    fn raw_entry(ty: u8, subtype: u8, offset: u32, size: u32, name: &str) -> Vec<u8> {
        let mut e = vec![0xAA, 0x50, ty, subtype];
        e.extend(offset.to_le_bytes());
        e.extend(size.to_le_bytes());
        let mut label = [0u8; 16];
        label[..name.len()].copy_from_slice(name.as_bytes());
        e.extend(label);
        e.extend([0u8; 4]);
        e
    }

    #[test]
    fn reads_entries_until_erased_flash() {
        let mut flash = vec![0xFF; 0x9000];
        let mut table = raw_entry(TYPE_DATA, SUBTYPE_NVS, 0x9000, 0x6000, "nvs");
        table.extend(raw_entry(TYPE_APP, 0x00, 0x10000, 0x100000, "factory"));
        flash[OFFSET..OFFSET + table.len()].copy_from_slice(&table);
        let entries = read(&flash).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].name, "nvs");
        assert_eq!((entries[0].offset, entries[0].size), (0x9000, 0x6000));
        assert_eq!(entries[1].type_name(), "app");
        assert_eq!(entries[1].end(), 0x110000);
    }

    #[test]
    fn refuses_garbage_and_an_erased_table() {
        let mut flash = vec![0xFF; 0x9000];
        assert_eq!(read(&flash).unwrap_err(), "the partition table is empty");
        flash[OFFSET] = 0x12;
        assert!(read(&flash).unwrap_err().contains("magic 12ff"));
        assert!(read(&[0u8; 16]).is_err());
    }
}
