//! The embedded broker's reading of what clients send (`vesper demo`, `vesper flash --broker`):
//! MQTT 3.1.1 packets decoded from a byte stream with the same maximum size, as its
//! connections do (rumqttc's mqttbytes). A packet, "more bytes needed" or an error; never a
//! panic, and each packet read consumes bytes.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rumqttc::mqttbytes::Error;
use rumqttc::mqttbytes::v4::Packet;

/// The embedded broker's `MAX_PACKET` (src/broker.rs).
const MAX_PACKET: usize = 256 * 1024;

fuzz_target!(|data: &[u8]| {
    let mut stream = BytesMut::from(data);
    loop {
        let before = stream.len();
        match Packet::read(&mut stream, MAX_PACKET) {
            Ok(_) => assert!(stream.len() < before, "a packet consumed nothing"),
            Err(Error::InsufficientBytes(_)) | Err(_) => break,
        }
    }
});
