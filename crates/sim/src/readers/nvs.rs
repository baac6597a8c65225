//! An NVS partition read as ESP-IDF's `nvs_flash` reads it at boot, from the format in
//! Espressif's documentation ("Non-Volatile Storage Library", NVS Internals): 4096-byte pages of a
//! 32-byte header, a 32-byte entry-state bitmap and 126 32-byte entries; entries checked by CRC;
//! namespaces as `u8` entries in namespace 0; strings spanning the entries after their header.

use std::collections::BTreeMap;

const PAGE: usize = 4096;
const ENTRIES_AT: usize = 64;
const ENTRY: usize = 32;
const ENTRIES_PER_PAGE: usize = 126;

const PAGE_ACTIVE: u32 = 0xFFFF_FFFE;
const PAGE_FULL: u32 = 0xFFFF_FFFC;

/// Entry state in the bitmap: two bits per entry.
const STATE_WRITTEN: u8 = 0b10;

const TYPE_U8: u8 = 0x01;
const TYPE_I8: u8 = 0x11;
const TYPE_U16: u8 = 0x02;
const TYPE_I16: u8 = 0x12;
const TYPE_U32: u8 = 0x04;
const TYPE_I32: u8 = 0x14;
const TYPE_U64: u8 = 0x08;
const TYPE_I64: u8 = 0x18;
const TYPE_STR: u8 = 0x21;
const TYPE_BLOB_IDX: u8 = 0x48;

/// A value as the firmware would print it: text for strings and integers, a size for blobs.
pub type Values = BTreeMap<String, String>;

/// The keys of `namespace` and their values; entries whose CRC does not match are ignored, as
/// `nvs_flash` ignores them.
pub fn read_namespace(partition: &[u8], namespace: &str) -> Values {
    let mut pages: Vec<(u32, &[u8])> = partition
        .chunks_exact(PAGE)
        .filter(|page| matches!(word(page, 0), PAGE_ACTIVE | PAGE_FULL))
        .filter(|page| crc(&page[4..28]) == word(page, 28))
        .map(|page| (word(page, 4), page))
        .collect();
    pages.sort_by_key(|(sequence, _)| *sequence);
    let entries: Vec<Entry> = pages.iter().flat_map(|(_, page)| entries(page)).collect();
    let index = entries
        .iter()
        .find(|e| e.namespace == 0 && e.ty == TYPE_U8 && e.key == namespace)
        .map(|e| e.data[0]);
    let mut values = Values::new();
    let Some(index) = index.filter(|&i| i != 0) else {
        return values;
    };
    for e in entries.iter().filter(|e| e.namespace == index) {
        if let Some(text) = e.render() {
            values.insert(e.key.clone(), text);
        }
    }
    values
}

struct Entry {
    namespace: u8,
    ty: u8,
    key: String,
    data: [u8; 8],
    /// The bytes of the entries a string spans.
    payload: Vec<u8>,
}

impl Entry {
    fn render(&self) -> Option<String> {
        let d = &self.data;
        let int = |n: usize| {
            let mut b = [0u8; 8];
            b[..n].copy_from_slice(&d[..n]);
            u64::from_le_bytes(b)
        };
        Some(match self.ty {
            TYPE_U8 | TYPE_U16 | TYPE_U32 | TYPE_U64 => {
                int(usize::from(self.ty & 0x0F)).to_string()
            }
            TYPE_I8 => (d[0] as i8).to_string(),
            TYPE_I16 => i16::from_le_bytes([d[0], d[1]]).to_string(),
            TYPE_I32 => i32::from_le_bytes([d[0], d[1], d[2], d[3]]).to_string(),
            TYPE_I64 => i64::from_le_bytes(*d).to_string(),
            TYPE_STR => {
                let size = usize::from(u16::from_le_bytes([d[0], d[1]]));
                let bytes = self.payload.get(..size)?;
                if crc(bytes) != word(d, 4) {
                    return None;
                }
                let text = bytes.strip_suffix(&[0]).unwrap_or(bytes);
                String::from_utf8_lossy(text).into_owned()
            }
            TYPE_BLOB_IDX => format!("<{} bytes>", word(d, 0)),
            _ => return None,
        })
    }
}

/// The written, CRC-valid entries of one page.
fn entries(page: &[u8]) -> Vec<Entry> {
    let bitmap = &page[32..64];
    let state = |i: usize| (bitmap[i / 4] >> ((i % 4) * 2)) & 0b11;
    let mut out = Vec::new();
    let mut i = 0;
    while i < ENTRIES_PER_PAGE {
        if state(i) != STATE_WRITTEN {
            i += 1;
            continue;
        }
        let raw = &page[ENTRIES_AT + i * ENTRY..ENTRIES_AT + (i + 1) * ENTRY];
        let span = usize::from(raw[2]).max(1);
        let header_crc = {
            let mut covered = Vec::with_capacity(28);
            covered.extend_from_slice(&raw[..4]);
            covered.extend_from_slice(&raw[8..]);
            crc(&covered)
        };
        if header_crc == word(raw, 4) && i + span <= ENTRIES_PER_PAGE {
            let key = &raw[8..24];
            let len = key.iter().position(|&b| b == 0).unwrap_or(16);
            let tail = ENTRIES_AT + (i + 1) * ENTRY..ENTRIES_AT + (i + span) * ENTRY;
            out.push(Entry {
                namespace: raw[0],
                ty: raw[1],
                key: String::from_utf8_lossy(&key[..len]).into_owned(),
                data: raw[24..32].try_into().expect("8 bytes"),
                payload: page[tail].to_vec(),
            });
        }
        i += span;
    }
    out
}

fn word(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// The CRC-32 of ESP-IDF's ROM (`esp_rom_crc32_le` with an initial value of 0xFFFFFFFF), bit by
/// bit, as written in the ROM's documentation.
fn crc(bytes: &[u8]) -> u32 {
    let mut value: u32 = 0;
    for &byte in bytes {
        value ^= u32::from(byte);
        for _ in 0..8 {
            value = if value & 1 == 1 {
                (value >> 1) ^ 0xEDB8_8320
            } else {
                value >> 1
            };
        }
    }
    !value
}
