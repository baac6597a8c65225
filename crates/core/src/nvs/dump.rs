//! Reading an NVS image back: pages, states, items, checksums, and the CSV that regenerates it.
//!
//! `decode` never fails: a damaged image is described, not refused, because the point of a dump
//! is often to find out what went wrong on a board. Every page state and every checksum
//! mismatch is reported.

use std::fmt::Write as _;
use std::path::Path;

use super::csv::{Source, ap_pmk_info, sta_extras};
use super::format::{
    ENTRIES_PER_PAGE, ENTRY_SIZE, FIRST_ENTRY_OFFSET, ItemType, PAGE_SIZE, PageState, Version,
    crc32,
};
use super::writer::item_crc;

/// One page as found in the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageReport {
    pub index: usize,
    pub state: PageState,
    pub sequence: u32,
    pub version: Option<Version>,
    pub header_crc_ok: bool,
    /// Slots marked written in the bitmap.
    pub written: usize,
    /// Slots marked erased in the bitmap.
    pub erased: usize,
}

/// A decoded value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemValue {
    /// An integer of one of the eight primitive types.
    Int { ty: ItemType, value: i128 },
    /// A string's bytes as stored (normally UTF-8 text and a final NUL).
    Str(Vec<u8>),
    /// A whole blob: a v1 BLOB item, or v2 chunks joined through their BLOB_IDX.
    Blob(Vec<u8>),
}

/// One key/value as the firmware would see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub page: usize,
    pub slot: usize,
    /// Namespace index (0 for namespace definitions).
    pub namespace: u8,
    pub key: String,
    pub value: ItemValue,
}

/// Everything `decode` found.
#[derive(Debug, Clone, Default)]
pub struct Dump {
    pub len: usize,
    pub version: Option<Version>,
    pub pages: Vec<PageReport>,
    pub items: Vec<Item>,
    /// Damage: checksum mismatches, impossible spans, broken blobs.
    pub errors: Vec<String>,
}

/// A raw entry before blob chunks are joined.
enum Raw {
    Item(Item),
    Chunk {
        item: Item,
        index: u8,
    },
    BlobIndex {
        item: Item,
        size: u32,
        count: u8,
        start: u8,
    },
}

/// Decodes an image of any length; trailing bytes that do not fill a page are reported.
pub fn decode(image: &[u8]) -> Dump {
    let mut dump = Dump {
        len: image.len(),
        ..Dump::default()
    };
    if image.len() % PAGE_SIZE != 0 {
        dump.errors.push(format!(
            "image is {} bytes, not a whole number of {PAGE_SIZE}-byte pages; the last {} bytes are ignored",
            image.len(),
            image.len() % PAGE_SIZE
        ));
    }
    let mut raw = Vec::new();
    for (index, page) in image.chunks_exact(PAGE_SIZE).enumerate() {
        let report = decode_page(index, page, &mut raw, &mut dump.errors);
        if report.state != PageState::Uninitialized {
            match (dump.version, report.version) {
                (None, v) => dump.version = v,
                (Some(a), Some(b)) if a != b => dump.errors.push(format!(
                    "page {index}: format version {} differs from version {} of earlier pages",
                    b.number(),
                    a.number()
                )),
                _ => {}
            }
        }
        dump.pages.push(report);
    }
    dump.items = join_blobs(raw, &mut dump.errors);
    dump
}

fn slot_state(page: &[u8], slot: usize) -> u8 {
    (page[32 + slot / 4] >> (2 * (slot % 4))) & 0b11
}

fn decode_page(
    index: usize,
    page: &[u8],
    raw: &mut Vec<Raw>,
    errors: &mut Vec<String>,
) -> PageReport {
    let word = u32::from_le_bytes(page[0..4].try_into().expect("4 bytes"));
    let state = PageState::from_word(word);
    let sequence = u32::from_le_bytes(page[4..8].try_into().expect("4 bytes"));
    let stored_crc = u32::from_le_bytes(page[28..32].try_into().expect("4 bytes"));
    let mut report = PageReport {
        index,
        state,
        sequence,
        version: Version::from_header_byte(page[8]),
        header_crc_ok: crc32(&page[4..28]) == stored_crc,
        written: 0,
        erased: 0,
    };
    if state == PageState::Uninitialized {
        if page.iter().any(|&b| b != 0xFF) {
            errors.push(format!(
                "page {index}: UNINITIALIZED but not erased (holds data)"
            ));
        }
        return report;
    }
    if !report.header_crc_ok {
        errors.push(format!(
            "page {index}: header CRC mismatch (stored 0x{stored_crc:08x}, computed 0x{:08x})",
            crc32(&page[4..28])
        ));
    }
    if let PageState::Invalid(word) = state {
        errors.push(format!("page {index}: invalid state word 0x{word:08x}"));
    }
    if report.version.is_none() {
        errors.push(format!(
            "page {index}: unknown format version byte 0x{:02x}",
            page[8]
        ));
    }
    for slot in 0..ENTRIES_PER_PAGE {
        match slot_state(page, slot) {
            0b10 => report.written += 1,
            0b00 => report.erased += 1,
            _ => {}
        }
    }
    let mut slot = 0;
    while slot < ENTRIES_PER_PAGE {
        if slot_state(page, slot) != 0b10 {
            slot += 1;
            continue;
        }
        slot += decode_entry(index, slot, page, raw, errors);
    }
    report
}

/// Decodes the entry at `slot`; returns how many slots to advance.
fn decode_entry(
    page_index: usize,
    slot: usize,
    page: &[u8],
    raw: &mut Vec<Raw>,
    errors: &mut Vec<String>,
) -> usize {
    let at = FIRST_ENTRY_OFFSET + slot * ENTRY_SIZE;
    let entry = &page[at..at + ENTRY_SIZE];
    let here = format!("page {page_index} slot {slot}");
    let stored = u32::from_le_bytes(entry[4..8].try_into().expect("4 bytes"));
    if item_crc(entry) != stored {
        errors.push(format!(
            "{here}: item header CRC mismatch (stored 0x{stored:08x}, computed 0x{:08x})",
            item_crc(entry)
        ));
        return 1;
    }
    let key_bytes = &entry[8..24];
    let key_len = key_bytes.iter().position(|&b| b == 0).unwrap_or(16);
    let key = String::from_utf8_lossy(&key_bytes[..key_len]).into_owned();
    let Some(ty) = ItemType::from_code(entry[1]) else {
        errors.push(format!(
            "{here}: key `{key}` has unknown type 0x{:02x}",
            entry[1]
        ));
        return 1;
    };
    let span = entry[2] as usize;
    if span == 0 || slot + span > ENTRIES_PER_PAGE {
        errors.push(format!("{here}: key `{key}` has impossible span {span}"));
        return 1;
    }
    let item = |value| Item {
        page: page_index,
        slot,
        namespace: entry[0],
        key: key.clone(),
        value,
    };
    let data = &entry[24..32];
    if let Some(width) = ty.primitive_name().map(|_| (ty as u8 & 0x0F) as usize) {
        let mut le = [0u8; 16];
        le[..width].copy_from_slice(&data[..width]);
        let unsigned = u128::from_le_bytes(le);
        let value = if ty as u8 & 0x10 != 0 {
            let shift = 128 - 8 * width as u32;
            ((unsigned << shift) as i128) >> shift
        } else {
            unsigned as i128
        };
        raw.push(Raw::Item(item(ItemValue::Int { ty, value })));
        return span;
    }
    if ty == ItemType::BlobIndex {
        let size = u32::from_le_bytes(data[0..4].try_into().expect("4 bytes"));
        raw.push(Raw::BlobIndex {
            item: item(ItemValue::Blob(Vec::new())),
            size,
            count: data[4],
            start: data[5],
        });
        return span;
    }
    let size = u16::from_le_bytes([data[0], data[1]]) as usize;
    if size > (span - 1) * ENTRY_SIZE {
        errors.push(format!(
            "{here}: key `{key}` claims {size} bytes but spans only {} data slots",
            span - 1
        ));
        return span;
    }
    let payload = &page[at + ENTRY_SIZE..at + ENTRY_SIZE + size];
    let stored_data_crc = u32::from_le_bytes(data[4..8].try_into().expect("4 bytes"));
    if crc32(payload) != stored_data_crc {
        errors.push(format!(
            "{here}: key `{key}` data CRC mismatch (stored 0x{stored_data_crc:08x}, computed 0x{:08x})",
            crc32(payload)
        ));
        return span;
    }
    raw.push(match ty {
        ItemType::Sz => Raw::Item(item(ItemValue::Str(payload.to_vec()))),
        ItemType::Blob => Raw::Item(item(ItemValue::Blob(payload.to_vec()))),
        _ => Raw::Chunk {
            item: item(ItemValue::Blob(payload.to_vec())),
            index: entry[3],
        },
    });
    span
}

/// Replaces v2 chunks and their index by one blob item at the index's place.
fn join_blobs(raw: Vec<Raw>, errors: &mut Vec<String>) -> Vec<Item> {
    let mut chunks: Vec<Option<(Item, u8)>> = Vec::new();
    let mut items = Vec::new();
    for entry in raw {
        match entry {
            Raw::Item(item) => items.push(item),
            Raw::Chunk { item, index } => chunks.push(Some((item, index))),
            Raw::BlobIndex {
                mut item,
                size,
                count,
                start,
            } => {
                let mut bytes = Vec::with_capacity(size as usize);
                for wanted in start..start.saturating_add(count) {
                    let found = chunks.iter_mut().find(|c| {
                        c.as_ref().is_some_and(|(c, i)| {
                            *i == wanted && c.namespace == item.namespace && c.key == item.key
                        })
                    });
                    match found.and_then(Option::take) {
                        Some((chunk, _)) => {
                            if let ItemValue::Blob(b) = chunk.value {
                                bytes.extend_from_slice(&b);
                            }
                        }
                        None => {
                            errors.push(format!("blob `{}`: chunk {wanted} is missing", item.key))
                        }
                    }
                }
                if bytes.len() != size as usize {
                    errors.push(format!(
                        "blob `{}`: index says {size} bytes, chunks hold {}",
                        item.key,
                        bytes.len()
                    ));
                }
                item.value = ItemValue::Blob(bytes);
                items.push(item);
            }
        }
    }
    for (chunk, index) in chunks.into_iter().flatten() {
        errors.push(format!(
            "blob `{}`: chunk {index} (page {} slot {}) has no index entry",
            chunk.key, chunk.page, chunk.slot
        ));
    }
    items
}

/// The CSV that regenerates a dump, and warnings about what a CSV cannot express.
pub struct CsvDump {
    pub csv: String,
    pub warnings: Vec<String>,
}

/// Quotes a CSV field when Python's reader or the tool's `#` filter would otherwise misread it.
fn field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) || text.starts_with('#') {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Writes the dump as the generator's CSV dialect: strings as `string`, blobs as `hex2bin`, the
/// image's pages and damage as `#` comment lines, which the generator ignores.
pub fn to_csv(dump: &Dump, name: &str) -> CsvDump {
    let mut out = String::new();
    let mut warnings = Vec::new();
    let version = dump.version.unwrap_or_default();
    let _ = writeln!(
        out,
        "# NVS dump of {name}: {} bytes, {} pages, format version {}",
        dump.len,
        dump.pages.len(),
        version.number()
    );
    for p in &dump.pages {
        let _ = write!(out, "# page {}: {}", p.index, p.state.name());
        if p.state != PageState::Uninitialized {
            let _ = write!(
                out,
                ", seq {}, {} of {ENTRIES_PER_PAGE} slots written",
                p.sequence, p.written
            );
            if p.erased > 0 {
                let _ = write!(out, ", {} erased", p.erased);
            }
        }
        out.push('\n');
    }
    for e in &dump.errors {
        let _ = writeln!(out, "# ERROR: {e}");
    }
    let _ = writeln!(
        out,
        "# regenerate: vesper nvs generate THIS.csv OUT.bin 0x{:x} --version {}",
        dump.len,
        version.number()
    );
    out.push_str("key,type,encoding,value\n");

    let mut namespaces = 0u8;
    let mut skip = vec![false; dump.items.len()];
    mark_wifi_extras(&dump.items, &mut skip);
    for (i, item) in dump.items.iter().enumerate() {
        if skip[i] {
            continue;
        }
        if item.namespace == 0
            && matches!(
                item.value,
                ItemValue::Int {
                    ty: ItemType::U8,
                    ..
                }
            )
        {
            let ItemValue::Int { value, .. } = item.value else {
                unreachable!()
            };
            if value != i128::from(namespaces) + 1 {
                warnings.push(format!("namespace `{}` has index {value}; a CSV can only number namespaces 1, 2, 3, ... in order", item.key));
            }
            namespaces = namespaces.saturating_add(1);
            let _ = writeln!(out, "{},namespace,,", field(&item.key));
            continue;
        }
        if item.namespace != namespaces {
            warnings.push(format!(
                "key `{}` is in namespace {} but a CSV row always writes to the namespace created last ({namespaces})",
                item.key, item.namespace
            ));
        }
        let (encoding, value) = match &item.value {
            ItemValue::Int { ty, value } => (
                ty.primitive_name().unwrap_or("u8").to_owned(),
                value.to_string(),
            ),
            ItemValue::Blob(bytes) => ("hex2bin".to_owned(), hex(bytes)),
            ItemValue::Str(bytes) => string_field(&item.key, bytes, &mut warnings),
        };
        let _ = writeln!(
            out,
            "{},data,{encoding},{}",
            field(&item.key),
            field(&value)
        );
    }
    CsvDump { csv: out, warnings }
}

/// A string item as a CSV `string` value, or hex2bin (with a warning) when text cannot carry it.
fn string_field(key: &str, bytes: &[u8], warnings: &mut Vec<String>) -> (String, String) {
    let text = bytes
        .strip_suffix(&[0])
        .and_then(|t| std::str::from_utf8(t).ok());
    match text {
        Some(t) if !t.contains('\r') && !t.contains("\n#") => ("string".to_owned(), t.to_owned()),
        _ => {
            warnings.push(format!(
                "string `{key}` is not UTF-8 text with a final NUL (or holds CR or a line starting with #); dumped as hex2bin, which regenerates it as a blob"
            ));
            ("hex2bin".to_owned(), hex(bytes))
        }
    }
}

/// Marks the entries the generator adds by itself, so that regenerating does not add them twice.
fn mark_wifi_extras(items: &[Item], skip: &mut [bool]) {
    let extras = sta_extras();
    if let Some(first) = items
        .iter()
        .position(|i| i.key == "sta.ssid" || i.key == "sta.pswd")
    {
        let follows = extras.iter().enumerate().all(|(n, (key, bytes))| {
            items
                .get(first + 1 + n)
                .is_some_and(|i| i.key == *key && i.value == ItemValue::Blob(bytes.clone()))
        });
        if follows {
            skip[first + 1..first + 1 + extras.len()].fill(true);
        }
    }
    let text = |item: &Item| match &item.value {
        ItemValue::Str(b) => {
            String::from_utf8_lossy(b.strip_suffix(&[0]).unwrap_or(b)).into_owned()
        }
        ItemValue::Int { value, .. } => value.to_string(),
        ItemValue::Blob(b) => hex(b),
    };
    let (mut ssid, mut passwd, mut authmode) = (String::new(), String::new(), String::new());
    for (i, item) in items.iter().enumerate() {
        match item.key.as_str() {
            "ap.ssid" => ssid = text(item),
            "ap.passwd" => passwd = text(item),
            "ap.authmode" if text(item) != "0" => authmode = text(item),
            "ap.pmk_info" => {
                // Generated right before the ap.* row that completes the set.
                let Some(next) = items.get(i + 1) else {
                    continue;
                };
                let (mut s, mut p, mut a) = (ssid.clone(), passwd.clone(), authmode.clone());
                match next.key.as_str() {
                    "ap.ssid" => s = text(next),
                    "ap.passwd" => p = text(next),
                    "ap.authmode" if text(next) != "0" => a = text(next),
                    "ap.authmode" => {}
                    _ => continue,
                }
                if !s.is_empty()
                    && !p.is_empty()
                    && !a.is_empty()
                    && item.value == ItemValue::Blob(ap_pmk_info(&s, &p))
                {
                    skip[i] = true;
                }
            }
            _ => {}
        }
    }
}

/// Where regenerating an image from its dump differs from the image, if it does.
pub fn round_trip_difference(image: &[u8], dump: &Dump, csv: &str) -> Option<String> {
    let source = Source {
        path: Path::new("<dump>"),
        text: csv,
        base: Path::new("."),
    };
    match super::csv::generate(
        &[source],
        dump.len as u64,
        dump.version.unwrap_or_default(),
        &super::csv::no_files,
    ) {
        Err(e) => Some(format!("the dump does not regenerate: {e}")),
        Ok(again) if again == image => None,
        Ok(again) => {
            let at = again
                .iter()
                .zip(image)
                .position(|(a, b)| a != b)
                .unwrap_or(again.len().min(image.len()));
            Some(format!(
                "regenerating gives different bytes from offset 0x{at:x} (page {}, byte {})",
                at / PAGE_SIZE,
                at % PAGE_SIZE
            ))
        }
    }
}
