//! Constants and codes of the ESP-IDF NVS on-flash format (see `vectors/nvs/FORMAT.md`).

/// Bytes in one flash page.
pub const PAGE_SIZE: usize = 4096;
/// Bytes in one entry slot (and in the page header).
pub const ENTRY_SIZE: usize = 32;
/// Entry slots per page.
pub const ENTRIES_PER_PAGE: usize = 126;
/// Offset of slot 0 in a page: after the 32-byte header and the 32-byte state bitmap.
pub const FIRST_ENTRY_OFFSET: usize = 64;
/// Longest key in characters.
pub const MAX_KEY_LEN: usize = 15;

/// NVS format version, written in every page header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Version {
    /// Version 1: blobs are single items limited to one page.
    V1,
    /// Version 2 (default): blobs are split into chunks across pages.
    #[default]
    V2,
}

impl Version {
    /// The version byte at offset 8 of a page header.
    pub fn header_byte(self) -> u8 {
        match self {
            Version::V1 => 0xFF,
            Version::V2 => 0xFE,
        }
    }

    pub fn from_header_byte(byte: u8) -> Option<Self> {
        match byte {
            0xFF => Some(Version::V1),
            0xFE => Some(Version::V2),
            _ => None,
        }
    }

    /// The number used on the command line (`--version 1|2`).
    pub fn number(self) -> u8 {
        match self {
            Version::V1 => 1,
            Version::V2 => 2,
        }
    }

    pub fn from_number(n: u8) -> Option<Self> {
        match n {
            1 => Some(Version::V1),
            2 => Some(Version::V2),
            _ => None,
        }
    }

    /// Largest payload of a single-page item (a string, or a v1 blob), NUL included.
    pub fn max_single_item(self) -> usize {
        match self {
            Version::V1 => 1984,
            Version::V2 => 4000,
        }
    }
}

/// Item type codes (byte 1 of an item header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ItemType {
    U8 = 0x01,
    I8 = 0x11,
    U16 = 0x02,
    I16 = 0x12,
    U32 = 0x04,
    I32 = 0x14,
    U64 = 0x08,
    I64 = 0x18,
    Sz = 0x21,
    Blob = 0x41,
    BlobData = 0x42,
    BlobIndex = 0x48,
}

impl ItemType {
    pub fn from_code(code: u8) -> Option<Self> {
        use ItemType::*;
        [
            U8, I8, U16, I16, U32, I32, U64, I64, Sz, Blob, BlobData, BlobIndex,
        ]
        .into_iter()
        .find(|t| *t as u8 == code)
    }

    /// The CSV encoding name of a primitive type.
    pub fn primitive_name(self) -> Option<&'static str> {
        use ItemType::*;
        Some(match self {
            U8 => "u8",
            I8 => "i8",
            U16 => "u16",
            I16 => "i16",
            U32 => "u32",
            I32 => "i32",
            U64 => "u64",
            I64 => "i64",
            _ => return None,
        })
    }
}

/// Page states (the first word of a page header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PageState {
    Uninitialized,
    Active,
    Full,
    Freeing,
    Corrupt,
    Invalid(u32),
}

impl PageState {
    pub fn word(self) -> u32 {
        match self {
            PageState::Uninitialized => 0xFFFF_FFFF,
            PageState::Active => 0xFFFF_FFFE,
            PageState::Full => 0xFFFF_FFFC,
            PageState::Freeing => 0xFFFF_FFF8,
            PageState::Corrupt => 0,
            PageState::Invalid(word) => word,
        }
    }

    pub fn from_word(word: u32) -> Self {
        [
            Self::Uninitialized,
            Self::Active,
            Self::Full,
            Self::Freeing,
            Self::Corrupt,
        ]
        .into_iter()
        .find(|s| s.word() == word)
        .unwrap_or(Self::Invalid(word))
    }

    pub fn name(self) -> String {
        match self {
            PageState::Uninitialized => "UNINITIALIZED".into(),
            PageState::Active => "ACTIVE".into(),
            PageState::Full => "FULL".into(),
            PageState::Freeing => "FREEING".into(),
            PageState::Corrupt => "CORRUPT".into(),
            PageState::Invalid(word) => format!("INVALID(0x{word:08x})"),
        }
    }
}

/// The CRC32 of every NVS checksum: zlib's `crc32(data, 0xFFFFFFFF)` (register starts at 0).
pub fn crc32(data: &[u8]) -> u32 {
    crc32_of(&[data])
}

/// [`crc32`] of several slices, as if they were one.
pub fn crc32_of(parts: &[&[u8]]) -> u32 {
    let mut hasher = crc32fast::Hasher::new_with_initial(0xFFFF_FFFF);
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_check_values_from_format_md() {
        assert_eq!(crc32(b"123456789"), 0xD202_D277);
        assert_eq!(crc32(b""), 0xFFFF_FFFF);
    }
}
