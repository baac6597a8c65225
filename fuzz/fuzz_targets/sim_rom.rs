//! The simulated board's SLIP decoder and ROM command handler, fed any bytes as a host could
//! send them over the serial line: frames and replies, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vesper_sim::rom::Rom;
use vesper_sim::slip::Decoder;

fuzz_target!(|bytes: &[u8]| {
    let mut rom = Rom::new(256 * 1024, [0x24, 0x0A, 0xC4, 0, 0, 1], Vec::new());
    let mut decoder = Decoder::default();
    // Feed in two pieces, as a serial line delivers bytes in any chunks.
    let split = bytes.len() / 2;
    for piece in [&bytes[..split], &bytes[split..]] {
        for frame in decoder.feed(piece) {
            let _ = rom.handle(&frame);
        }
    }
});
