//! SLIP framing (RFC 1055) as the ESP serial bootloader uses it: frames between 0xC0 bytes,
//! 0xC0 and 0xDB escaped. The decoder takes bytes in any pieces.

/// The byte that opens and closes every frame.
pub const END: u8 = 0xC0;
const ESC: u8 = 0xDB;
const ESC_END: u8 = 0xDC;
const ESC_ESC: u8 = 0xDD;

/// Encodes one frame.
pub fn encode(frame: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(frame.len() + 8);
    out.push(END);
    for &b in frame {
        match b {
            END => out.extend_from_slice(&[ESC, ESC_END]),
            ESC => out.extend_from_slice(&[ESC, ESC_ESC]),
            b => out.push(b),
        }
    }
    out.push(END);
    out
}

/// Collects frames from a byte stream.
#[derive(Default)]
pub struct Decoder {
    frame: Vec<u8>,
    in_frame: bool,
    escaped: bool,
}

impl Decoder {
    /// Feeds bytes; returns the frames they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        for &b in bytes {
            match (b, self.escaped) {
                (END, _) => {
                    if self.in_frame && !self.frame.is_empty() {
                        frames.push(std::mem::take(&mut self.frame));
                    }
                    self.in_frame = true;
                    self.escaped = false;
                }
                _ if !self.in_frame => {}
                (ESC, false) => self.escaped = true,
                (ESC_END, true) => {
                    self.frame.push(END);
                    self.escaped = false;
                }
                (ESC_ESC, true) => {
                    self.frame.push(ESC);
                    self.escaped = false;
                }
                (b, _) => {
                    self.frame.push(b);
                    self.escaped = false;
                }
            }
        }
        frames
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_in_pieces() {
        let frame = vec![0x00, 0xC0, 0xDB, 0x01, 0xC0];
        let encoded = encode(&frame);
        assert_eq!(
            encoded,
            [0xC0, 0x00, 0xDB, 0xDC, 0xDB, 0xDD, 0x01, 0xDB, 0xDC, 0xC0]
        );
        let mut d = Decoder::default();
        let mut frames = Vec::new();
        for b in b"noise".iter().chain(&encoded).chain(&encoded) {
            frames.extend(d.feed(&[*b]));
        }
        assert_eq!(frames, [frame.clone(), frame]);
    }
}
