//! Benchmark: 10,000 per-device NVS images built in memory (`cargo bench --bench nvs_device_image`).
//!
//! Prints the best of several rounds, per image: the NVS image alone (the figure compared with
//! Espressif's generator in the README) and with the MQTT password derivation included (what the
//! backend does per `/nvs.bin` request). Not a timed test: nothing here can fail on a slow machine.

use std::hint::black_box;
use std::time::{Duration, Instant};

use vesper::credentials::{DevicePassword, MasterSecret};
use vesper::nvs::{self, DeviceNvs, Setting};
use vesper::serial::{self, SerialNumber};

const DEVICES: usize = 10_000;
const ROUNDS: usize = 7;

fn best_of(rounds: usize, mut f: impl FnMut()) -> Duration {
    (0..rounds)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .min()
        .expect("at least one round")
}

fn main() {
    let date = chrono::NaiveDate::from_ymd_opt(2026, 1, 18).expect("date");
    let serials: Vec<SerialNumber> = serial::generate_distinct(
        "BC".parse().expect("type"),
        "02".parse().expect("rev"),
        date,
        DEVICES,
        &mut rand::rng(),
        |_| false,
    )
    .expect("serial numbers");
    let secret = MasterSecret::new("bench-secret-of-at-least-32-bytes", "bench").expect("secret");
    let passwords: Vec<_> = serials
        .iter()
        .map(|sn| secret.device_password(sn))
        .collect();
    let extra = vec![("psram".to_string(), Setting::U8(1))];
    let image = |sn: &SerialNumber, password: &DevicePassword| {
        let device = DeviceNvs {
            serial_number: sn,
            hw_type: "BC",
            hw_version: "02",
            mqtt_pass: password,
            mqtt_host: "mqtt.example.com",
            mqtt_port: 1883,
            network: Default::default(),
            extra: &extra,
        };
        nvs::device_image(0x6000, &device).expect("image")
    };

    let image_only = best_of(ROUNDS, || {
        for (sn, password) in serials.iter().zip(&passwords) {
            black_box(image(black_box(sn), password));
        }
    });
    let with_password = best_of(ROUNDS, || {
        for sn in &serials {
            let password = secret.device_password(black_box(sn));
            black_box(image(sn, &password));
        }
    });
    let per = |d: Duration| d.as_secs_f64() * 1e6 / DEVICES as f64;
    println!("nvs device image (0x6000, 8 keys), {DEVICES} images, best of {ROUNDS} rounds:");
    println!(
        "  image only:              {:8.3} ms total, {:6.3} us per image",
        image_only.as_secs_f64() * 1e3,
        per(image_only)
    );
    println!(
        "  with password derivation:{:8.3} ms total, {:6.3} us per image",
        with_password.as_secs_f64() * 1e3,
        per(with_password)
    );
}
