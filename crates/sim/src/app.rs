//! A realistic ESP32 application image, for the simulated board's benchmarks and the demo.
//!
//! Flashing time depends on how well the image compresses (espflash and esptool send it deflated),
//! so an image of zeros or a short repeating pattern makes any flasher look fast. A real ESP-IDF
//! app deflates to about 55-65 % of its size with zlib; this one is built like one, from a fixed
//! seed (the same bytes every time): code (24-bit Xtensa-like instructions drawn from a
//! vocabulary, some with varied operand bits), read-only strings (log messages), and constant
//! tables (bytes that do not compress).

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

/// An app image of `len` bytes (at least 80) carrying `version` in its app description.
pub fn realistic_app(len: usize, version: &str) -> Vec<u8> {
    let words: Vec<&str> = WORDS.split_whitespace().collect();
    let mut seq = Seq(0x5EED);
    let vocabulary: Vec<u32> = (0..VOCABULARY)
        .map(|_| (seq.next() & 0xFF_FFFF) as u32)
        .collect();
    let mut image = Vec::with_capacity(len + 64);
    while image.len() < len.max(80) {
        let kind = seq.below(100);
        if kind < CODE {
            for _ in 0..16 {
                let mut word = vocabulary[seq.below(VOCABULARY as u64) as usize];
                if seq.below(OPERAND_NOISE) == 0 {
                    word ^= ((seq.next() & 0xF) as u32) << 4;
                }
                image.extend_from_slice(&word.to_le_bytes()[..3]);
            }
        } else if kind < STRINGS {
            let tag = words[seq.below(words.len() as u64) as usize];
            let count = 3 + seq.below(6);
            let message: Vec<&str> = (0..count)
                .map(|_| words[seq.below(words.len() as u64) as usize])
                .collect();
            image.extend_from_slice(format!("{tag}: {} %d\0", message.join(" ")).as_bytes());
        } else {
            image.extend((0..48).map(|_| (seq.next() >> 8) as u8));
        }
    }
    image.truncate(len.max(80));
    image[0] = IMAGE_MAGIC;
    image[32..36].copy_from_slice(&APP_DESC_MAGIC.to_le_bytes());
    image[48..80].fill(0);
    let n = version.len().min(32);
    image[48..48 + n].copy_from_slice(&version.as_bytes()[..n]);
    image
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
