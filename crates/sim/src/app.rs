//! A realistic ESP32 application image, for the simulated board's benchmarks and the demo.
//!
//! Flashing time depends on how well the image compresses (espflash and esptool send it deflated),
//! so an image of zeros or a short repeating pattern makes any flasher look fast. A real ESP-IDF
//! app deflates to about 55-65 % of its size with zlib; this one is built like one, from a fixed
//! seed (the same bytes every time): code (24-bit Xtensa-like instructions drawn from a
//! vocabulary, some with varied operand bits), read-only strings (log messages), and constant
//! tables (bytes that do not compress).

use sha2::{Digest as _, Sha256};

/// First byte of an ESP image.
const IMAGE_MAGIC: u8 = 0xE9;
/// Magic of `esp_app_desc_t`, after the image header (24 bytes) and the first segment header.
const APP_DESC_MAGIC: u32 = 0xABCD_5432;

/// Distinct instruction encodings in the code sections.
const VOCABULARY: usize = 200;
/// Out of 100 chunks: this many are code, then strings up to `STRINGS`, the rest tables.
const CODE: u64 = 64;
const STRINGS: u64 = 90;
/// One instruction in this many has its operand bits varied.
const OPERAND_NOISE: u64 = 6;

/// Words of the log messages in the read-only strings.
const WORDS: &str = "error wifi mqtt connect timeout heap task queue event handler init config nvs \
    partition ota update version sensor value read write failed ok status boot reset retry socket";

/// xorshift64: small, fast, and the same sequence on every machine.
struct Seq(u64);

impl Seq {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// An ESP32 app image of `len` bytes (rounded up to a multiple of 16, at least 512) carrying
/// `version` in its app description, laid out as ESP-IDF builds one (esptool's "Firmware Image
/// Format"): the 24-byte header (DIO, 4 MB, 40 MHz; chip ESP32; a SHA-256 appended), a DROM
/// segment starting with `esp_app_desc_t`, an IROM segment of code, the checksum byte and the
/// SHA-256 of all that comes before it. Espressif's `esptool image-info` reads it as valid.
pub fn realistic_app(len: usize, version: &str) -> Vec<u8> {
    let len = len.max(512).next_multiple_of(16);
    // Header, two segment headers, checksum byte and hash around the segments' data.
    let data = (len - 24 - 16 - 1 - 32) / 4 * 4;
    let pad = len - 24 - 16 - 1 - 32 - data;
    let drom = (data / 3) / 4 * 4;
    let body = content(data);
    let mut image = Vec::with_capacity(len);
    image.extend_from_slice(&[IMAGE_MAGIC, 2, 0x02, 0x20]);
    image.extend_from_slice(&ENTRY.to_le_bytes());
    // Extended header: WP pin unused, default drive, chip id 0 (ESP32), revisions 0..3.99,
    // reserved, hash appended.
    image.extend_from_slice(&[0xEE, 0, 0, 0, 0, 0, 0, 0, 0, 0x8F, 0x01, 0, 0, 0, 0, 1]);
    for (address, part) in [(DROM, &body[..drom]), (IROM, &body[drom..])] {
        image.extend_from_slice(&address.to_le_bytes());
        image.extend_from_slice(&(part.len() as u32).to_le_bytes());
        image.extend_from_slice(part);
    }
    // The app description (`esp_app_desc_t`, 256 bytes) at the start of the first segment
    // (file offset 32): magic, version, project name, build time and date, IDF version.
    image[32..288].fill(0);
    image[32..36].copy_from_slice(&APP_DESC_MAGIC.to_le_bytes());
    for (at, text) in [
        (48, version),
        (80, "vesper-demo"),
        (112, "00:00:00"),
        (128, "Nov 30 2026"),
        (144, "v5.1.2"),
    ] {
        let n = text.len().min(31);
        image[at..at + n].copy_from_slice(&text.as_bytes()[..n]);
    }
    let segments_data = image[32..32 + drom]
        .iter()
        .chain(&image[32 + drom + 8..])
        .fold(CHECKSUM_SEED, |sum, b| sum ^ b);
    image.extend(std::iter::repeat_n(0, pad));
    image.push(segments_data);
    let hash = Sha256::digest(&image);
    image.extend_from_slice(&hash);
    debug_assert_eq!(image.len(), len);
    image
}

/// Where the segments load: flash-mapped data (DROM) and code (IROM), and the entry point.
const DROM: u32 = 0x3F40_0020;
const IROM: u32 = 0x400D_0020;
const ENTRY: u32 = 0x400D_1000;
/// The image checksum starts from this value and XORs every byte of segment data.
const CHECKSUM_SEED: u8 = 0xEF;

/// `len` bytes of code, strings and tables, from a fixed seed.
fn content(len: usize) -> Vec<u8> {
    let words: Vec<&str> = WORDS.split_whitespace().collect();
    let mut seq = Seq(0x5EED);
    let vocabulary: Vec<u32> = (0..VOCABULARY)
        .map(|_| (seq.next() & 0xFF_FFFF) as u32)
        .collect();
    let mut out = Vec::with_capacity(len + 64);
    while out.len() < len {
        let kind = seq.below(100);
        if kind < CODE {
            for _ in 0..16 {
                let mut word = vocabulary[seq.below(VOCABULARY as u64) as usize];
                if seq.below(OPERAND_NOISE) == 0 {
                    word ^= ((seq.next() & 0xF) as u32) << 4;
                }
                out.extend_from_slice(&word.to_le_bytes()[..3]);
            }
        } else if kind < STRINGS {
            let tag = words[seq.below(words.len() as u64) as usize];
            let count = 3 + seq.below(6);
            let message: Vec<&str> = (0..count)
                .map(|_| words[seq.below(words.len() as u64) as usize])
                .collect();
            out.extend_from_slice(format!("{tag}: {} %d\0", message.join(" ")).as_bytes());
        } else {
            out.extend((0..48).map(|_| (seq.next() >> 8) as u8));
        }
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn deflated_ratio(data: &[u8]) -> f64 {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(data).unwrap();
        z.finish().unwrap().len() as f64 / data.len() as f64
    }

    #[test]
    fn it_deflates_like_a_real_app_and_is_always_the_same() {
        for len in [256 << 10, 900 << 10, 1536 << 10] {
            let app = realistic_app(len, "1.4.2");
            assert_eq!(app.len(), len);
            let ratio = deflated_ratio(&app);
            assert!(
                (0.55..=0.65).contains(&ratio),
                "{len} bytes deflate to {:.1} %",
                ratio * 100.0
            );
            assert_eq!(app, realistic_app(len, "1.4.2"), "deterministic");
        }
        let app = realistic_app(4096, "1.4.2");
        assert_eq!(app[0], 0xE9);
        assert_eq!(&app[48..53], b"1.4.2");
        assert_eq!(app[53], 0);
    }
}
