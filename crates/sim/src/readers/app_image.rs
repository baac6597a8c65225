//! The application image header, read as the bootloader and `esp_app_get_description()` read it:
//! `esp_image_header_t` (24 bytes, magic 0xE9), the first segment header (8 bytes), then
//! `esp_app_desc_t` (magic 0xABCD5432, the version string at its byte 16).

/// First byte of an ESP image.
pub const IMAGE_MAGIC: u8 = 0xE9;
/// Magic of `esp_app_desc_t`.
const APP_DESC_MAGIC: u32 = 0xABCD_5432;
/// Where `esp_app_desc_t` starts: after the image header and the first segment header.
const APP_DESC_AT: usize = 24 + 8;
/// The version field: `char version[32]` after magic, secure_version and two reserved words.
const VERSION_AT: usize = APP_DESC_AT + 16;
const VERSION_LEN: usize = 32;

/// Why an image does not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageProblem {
    /// The first byte is not 0xE9.
    Magic(u8),
}

/// The app's version from its description, if the image has one; an error if it is no image.
pub fn read_version(image: &[u8]) -> Result<Option<String>, ImageProblem> {
    match image.first() {
        Some(&IMAGE_MAGIC) => {}
        other => return Err(ImageProblem::Magic(other.copied().unwrap_or(0xFF))),
    }
    let Some(desc) = image.get(APP_DESC_AT..VERSION_AT + VERSION_LEN) else {
        return Ok(None);
    };
    if u32::from_le_bytes([desc[0], desc[1], desc[2], desc[3]]) != APP_DESC_MAGIC {
        return Ok(None);
    }
    let field = &image[VERSION_AT..VERSION_AT + VERSION_LEN];
    let len = field.iter().position(|&b| b == 0).unwrap_or(VERSION_LEN);
    Ok(Some(String::from_utf8_lossy(&field[..len]).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_version_of_an_app_description() {
        let mut image = vec![0u8; 256];
        image[0] = 0xE9;
        image[32..36].copy_from_slice(&0xABCD_5432u32.to_le_bytes());
        image[48..53].copy_from_slice(b"1.4.2");
        assert_eq!(read_version(&image), Ok(Some("1.4.2".into())));
        image[32] = 0;
        assert_eq!(read_version(&image), Ok(None));
        image[0] = 0xFF;
        assert_eq!(read_version(&image), Err(ImageProblem::Magic(0xFF)));
        assert_eq!(read_version(&[]), Err(ImageProblem::Magic(0xFF)));
    }
}
