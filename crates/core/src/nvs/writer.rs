//! The NVS page writer: places items exactly where `nvs_partition_gen.py` 0.3.0 places them.
//!
//! The rules are in `vectors/nvs/FORMAT.md` section 6; the comments below name the rule each
//! branch follows. The whole image is one pre-filled buffer, so building a device image costs one
//! allocation and a handful of CRCs.

use super::NvsError;
use super::format::{
    ENTRIES_PER_PAGE, ENTRY_SIZE, FIRST_ENTRY_OFFSET, ItemType, MAX_KEY_LEN, PAGE_SIZE, PageState,
    Version, crc32, crc32_of,
};
use std::borrow::Cow;

/// Largest namespace index an item header can hold.
const MAX_NAMESPACES: usize = 255;

/// Where a partition of `size` bytes keeps its data, and whether it has a reserve page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Bytes in the partition (a multiple of 4096, at least 4096).
    pub size: usize,
    /// Pages that may hold data: all but the reserve page in read/write mode.
    pub data_pages: usize,
    /// Read-only mode (`size < 0x3000`): no reserve page and, as in Espressif's tool, no padding.
    pub read_only: bool,
}

impl Geometry {
    /// Checks a partition size the way Espressif's tool does.
    pub fn new(size: u64) -> Result<Self, NvsError> {
        if size % PAGE_SIZE as u64 != 0 {
            return Err(NvsError::SizeNotPageMultiple(size));
        }
        if size < PAGE_SIZE as u64 {
            return Err(NvsError::SizeTooSmall(size));
        }
        let size = usize::try_from(size).map_err(|_| NvsError::SizeTooLarge(size))?;
        if size > 256 * 1024 * 1024 {
            return Err(NvsError::SizeTooLarge(size as u64));
        }
        let pages = size / PAGE_SIZE;
        let read_only = pages < 3;
        let data_pages = if read_only { pages } else { pages - 1 };
        Ok(Self {
            size,
            data_pages,
            read_only,
        })
    }
}

/// A value as it is stored in one NVS item. Borrowed for one-off writes (a device image),
/// owned (`Value<'static>`) when kept in configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'a> {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    /// A string, stored with a terminating NUL (added here).
    Str(Cow<'a, str>),
    /// A blob: chunked BLOB_DATA + BLOB_IDX in version 2, one BLOB item in version 1.
    Blob(Cow<'a, [u8]>),
}

impl<'a> Value<'a> {
    /// A borrowed string value.
    pub fn str(s: &'a str) -> Self {
        Value::Str(Cow::Borrowed(s))
    }

    /// A borrowed blob value.
    pub fn blob(b: &'a [u8]) -> Self {
        Value::Blob(Cow::Borrowed(b))
    }
}

/// Builds an NVS partition image in memory.
///
/// Namespaces follow Espressif's generator, quirk included: every item goes to the namespace
/// *created* most recently, whichever was selected last (`A, B, A, key` stores `key` under B).
pub struct Writer {
    geometry: Geometry,
    version: Version,
    image: Vec<u8>,
    page: usize,
    slot: usize,
    namespaces: Vec<String>,
}

impl Writer {
    /// Starts an image for a partition of `size` bytes.
    pub fn new(size: u64, version: Version) -> Result<Self, NvsError> {
        let geometry = Geometry::new(size)?;
        let mut writer = Self {
            geometry,
            version,
            image: vec![0xFF; geometry.size],
            page: 0,
            slot: 0,
            namespaces: Vec::new(),
        };
        writer.write_page_header(0);
        Ok(writer)
    }

    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    pub fn version(&self) -> Version {
        self.version
    }

    /// Index that the next item will carry (0 before any namespace).
    pub fn current_namespace(&self) -> u8 {
        self.namespaces.len() as u8
    }

    /// Selects a namespace, writing its definition the first time its name appears.
    pub fn namespace(&mut self, name: &str) -> Result<u8, NvsError> {
        check_key(name)?;
        if let Some(i) = self.namespaces.iter().position(|n| n == name) {
            return Ok(i as u8 + 1);
        }
        if self.namespaces.len() == MAX_NAMESPACES {
            return Err(NvsError::TooManyNamespaces(name.to_owned()));
        }
        let index = self.namespaces.len() as u8 + 1;
        self.write_primitive(0, name, ItemType::U8, &[index])?;
        self.namespaces.push(name.to_owned());
        Ok(index)
    }

    /// Writes one item under the current namespace.
    pub fn put(&mut self, key: &str, value: &Value) -> Result<(), NvsError> {
        check_key(key)?;
        let ns = self.current_namespace();
        match value {
            Value::U8(v) => self.write_primitive(ns, key, ItemType::U8, &v.to_le_bytes()),
            Value::I8(v) => self.write_primitive(ns, key, ItemType::I8, &v.to_le_bytes()),
            Value::U16(v) => self.write_primitive(ns, key, ItemType::U16, &v.to_le_bytes()),
            Value::I16(v) => self.write_primitive(ns, key, ItemType::I16, &v.to_le_bytes()),
            Value::U32(v) => self.write_primitive(ns, key, ItemType::U32, &v.to_le_bytes()),
            Value::I32(v) => self.write_primitive(ns, key, ItemType::I32, &v.to_le_bytes()),
            Value::U64(v) => self.write_primitive(ns, key, ItemType::U64, &v.to_le_bytes()),
            Value::I64(v) => self.write_primitive(ns, key, ItemType::I64, &v.to_le_bytes()),
            Value::Str(s) => {
                let payload = Payload {
                    body: s.as_bytes(),
                    nul: true,
                };
                self.write_single_item(ns, key, ItemType::Sz, payload)
            }
            Value::Blob(bytes) => match self.version {
                Version::V1 => {
                    self.write_single_item(ns, key, ItemType::Blob, Payload::bytes(bytes))
                }
                Version::V2 => self.write_chunked_blob(ns, key, bytes),
            },
        }
    }

    /// The finished image: `size` bytes, or only the used pages in read-only mode.
    pub fn finish(mut self) -> Vec<u8> {
        if self.geometry.read_only {
            self.image.truncate((self.page + 1) * PAGE_SIZE);
        }
        self.image
    }

    /// Rule 1: a primitive or namespace item opens a new page only when no slot is left.
    fn write_primitive(
        &mut self,
        ns: u8,
        key: &str,
        ty: ItemType,
        le: &[u8],
    ) -> Result<(), NvsError> {
        if self.slot >= ENTRIES_PER_PAGE {
            self.open_page()?;
        }
        let mut data = [0xFF; 8];
        data[..le.len()].copy_from_slice(le);
        self.write_entry(ns, key, ty, 1, 0xFF, data, Payload::EMPTY);
        Ok(())
    }

    /// Rule 2: strings (and v1 blobs) live in one page and never end in slot 125.
    fn write_single_item(
        &mut self,
        ns: u8,
        key: &str,
        ty: ItemType,
        payload: Payload,
    ) -> Result<(), NvsError> {
        let max = self.version.max_single_item();
        if payload.len() > max {
            return Err(NvsError::ValueTooLong {
                key: key.to_owned(),
                len: payload.len(),
                max,
            });
        }
        let span = 1 + payload.len().div_ceil(ENTRY_SIZE);
        if self.slot >= ENTRIES_PER_PAGE || self.slot + span >= ENTRIES_PER_PAGE {
            self.open_page()?;
            if span >= ENTRIES_PER_PAGE {
                return Err(NvsError::ValueExceedsPage {
                    key: key.to_owned(),
                    len: payload.len(),
                });
            }
        }
        self.write_entry(ns, key, ty, span as u8, 0xFF, sized_data(payload), payload);
        Ok(())
    }

    /// Rule 3: a v2 blob fills the rest of each page with BLOB_DATA chunks, then a BLOB_IDX.
    fn write_chunked_blob(&mut self, ns: u8, key: &str, bytes: &[u8]) -> Result<(), NvsError> {
        if self.slot >= ENTRIES_PER_PAGE {
            self.open_page()?;
        }
        let mut rest = bytes;
        let mut chunks: u8 = 0;
        loop {
            let room = (ENTRIES_PER_PAGE - self.slot - 1) * ENTRY_SIZE;
            let (chunk, tail) = rest.split_at(room.min(rest.len()));
            let span = 1 + chunk.len().div_ceil(ENTRY_SIZE);
            self.write_entry(
                ns,
                key,
                ItemType::BlobData,
                span as u8,
                chunks,
                sized_data(Payload::bytes(chunk)),
                Payload::bytes(chunk),
            );
            chunks = chunks
                .checked_add(1)
                .ok_or_else(|| NvsError::ValueTooLong {
                    key: key.to_owned(),
                    len: bytes.len(),
                    max: 255 * 4000,
                })?;
            rest = tail;
            if !rest.is_empty() || room - chunk.len() < ENTRY_SIZE {
                self.open_page()?;
            }
            if rest.is_empty() {
                break;
            }
        }
        let mut data = [0xFF; 8];
        data[..4].copy_from_slice(&(bytes.len() as u32).to_le_bytes());
        data[4] = chunks;
        data[5] = 0;
        self.write_entry(ns, key, ItemType::BlobIndex, 1, 0xFF, data, Payload::EMPTY);
        Ok(())
    }

    /// Rule 4: the current page becomes FULL and the next one ACTIVE, unless it is the reserve page.
    fn open_page(&mut self) -> Result<(), NvsError> {
        self.set_page_state(self.page, PageState::Full);
        if self.page + 1 >= self.geometry.data_pages {
            return Err(NvsError::InsufficientSize {
                size: self.geometry.size,
                data_pages: self.geometry.data_pages,
            });
        }
        self.page += 1;
        self.slot = 0;
        self.write_page_header(self.page);
        Ok(())
    }

    fn write_page_header(&mut self, page: usize) {
        let base = page * PAGE_SIZE;
        let header = &mut self.image[base..base + 32];
        header[0..4].copy_from_slice(&PageState::Active.word().to_le_bytes());
        header[4..8].copy_from_slice(&(page as u32).to_le_bytes());
        header[8] = self.version.header_byte();
        let crc = crc32(&header[4..28]);
        header[28..32].copy_from_slice(&crc.to_le_bytes());
    }

    fn set_page_state(&mut self, page: usize, state: PageState) {
        let base = page * PAGE_SIZE;
        self.image[base..base + 4].copy_from_slice(&state.word().to_le_bytes());
    }

    /// Writes an item header at the cursor, its payload after it, and marks its slots written.
    #[allow(clippy::too_many_arguments)]
    fn write_entry(
        &mut self,
        ns: u8,
        key: &str,
        ty: ItemType,
        span: u8,
        chunk: u8,
        data: [u8; 8],
        payload: Payload,
    ) {
        let mut entry = [0u8; ENTRY_SIZE];
        entry[0] = ns;
        entry[1] = ty as u8;
        entry[2] = span;
        entry[3] = chunk;
        entry[8..8 + key.len()].copy_from_slice(key.as_bytes());
        entry[24..32].copy_from_slice(&data);
        let crc = item_crc(&entry);
        entry[4..8].copy_from_slice(&crc.to_le_bytes());

        let page_base = self.page * PAGE_SIZE;
        let at = page_base + FIRST_ENTRY_OFFSET + self.slot * ENTRY_SIZE;
        self.image[at..at + ENTRY_SIZE].copy_from_slice(&entry);
        let body_at = at + ENTRY_SIZE;
        self.image[body_at..body_at + payload.body.len()].copy_from_slice(payload.body);
        if payload.nul {
            self.image[body_at + payload.body.len()] = 0;
        }
        for slot in self.slot..self.slot + span as usize {
            self.image[page_base + 32 + slot / 4] &= !(1 << (2 * (slot % 4)));
        }
        self.slot += span as usize;
    }
}

/// CRC of an item header: bytes 0..4 and 8..32, skipping the CRC field itself.
pub fn item_crc(entry: &[u8]) -> u32 {
    let mut covered = [0u8; 28];
    covered[..4].copy_from_slice(&entry[..4]);
    covered[4..].copy_from_slice(&entry[8..32]);
    crc32(&covered)
}

/// Data field of a variable-length item: u16 size, `FF FF`, u32 CRC of the payload.
fn sized_data(payload: Payload) -> [u8; 8] {
    let mut data = [0xFF; 8];
    data[..2].copy_from_slice(&(payload.len() as u16).to_le_bytes());
    data[4..].copy_from_slice(&payload.crc().to_le_bytes());
    data
}

/// The bytes after an item header: a body and, for strings, the terminating NUL (kept apart so
/// that writing a string needs no copy).
#[derive(Clone, Copy)]
struct Payload<'a> {
    body: &'a [u8],
    nul: bool,
}

impl<'a> Payload<'a> {
    const EMPTY: Payload<'static> = Payload {
        body: &[],
        nul: false,
    };

    fn bytes(body: &'a [u8]) -> Self {
        Self { body, nul: false }
    }

    fn len(&self) -> usize {
        self.body.len() + usize::from(self.nul)
    }

    fn crc(&self) -> u32 {
        if self.nul {
            crc32_of(&[self.body, &[0]])
        } else {
            crc32(self.body)
        }
    }
}

/// Keys are at most 15 ASCII bytes without NUL (the firmware reads them as C strings).
pub fn check_key(key: &str) -> Result<(), NvsError> {
    if key.chars().count() > MAX_KEY_LEN {
        return Err(NvsError::KeyTooLong(key.to_owned()));
    }
    if !key.is_ascii() || key.contains('\0') {
        return Err(NvsError::KeyNotAscii(key.to_owned()));
    }
    Ok(())
}
