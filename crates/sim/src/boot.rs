//! What the simulated board does after a reset: read its partition table and NVS from flash,
//! check the app image, print a console log like a real ESP32, and run the "firmware": log in to
//! MQTT with the credentials from NVS and send heartbeats.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serialport::TTYPort;
use vesper_core::device::{self, ConsoleLine};

use super::{Fault, SimConfig, SimEvent};
use crate::readers::{app_image, nvs, partition_table};

/// The NVS namespace the firmware keeps its identity in (DESIGN.md section 3).
const NAMESPACE: &str = "vesper";
/// The partition the firmware opens with `nvs_flash_init()`.
const NVS_PARTITION: &str = "nvs";
/// Where the serial number goes in a topic template.
const SN_PLACEHOLDER: &str = "{sn}";

/// The outcome of a boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootReport {
    /// The app started.
    pub ok: bool,
    /// Why it did not.
    pub error: Option<String>,
    pub app_offset: Option<u32>,
    pub firmware_version: Option<String>,
    /// Keys of the `vesper` NVS namespace and their values (strings and integers as text).
    pub nvs: BTreeMap<String, String>,
}

impl BootReport {
    pub fn serial_number(&self) -> Option<&str> {
        self.nvs.get("serial_number").map(String::as_str)
    }
}

/// Reads the flash as the second-stage bootloader and the firmware would.
pub fn boot(flash: &[u8], mac: [u8; 6], bad_app: bool) -> (BootReport, String) {
    let mut log = String::from(
        "ets Jul 29 2019 12:21:46\r\n\r\nrst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)\r\n\
         I (31) boot: ESP-IDF v5.1.2 2nd stage bootloader (vesper sim)\r\n",
    );
    let mut report = BootReport {
        ok: false,
        error: None,
        app_offset: None,
        firmware_version: None,
        nvs: BTreeMap::new(),
    };
    let fail = |mut report: BootReport, mut log: String, reason: String| {
        log.push_str(&format!("E (60) boot: {reason}\r\n"));
        report.error = Some(reason);
        (report, log)
    };
    let erased = flash
        .get(partition_table::OFFSET..partition_table::OFFSET + 32)
        .is_some_and(|b| b.iter().all(|&b| b == 0xFF));
    if erased {
        return fail(
            report,
            log,
            "the partition table at 0x8000 is erased: flash the full bundle".into(),
        );
    }
    let table = match partition_table::read(flash) {
        Ok(t) => t,
        Err(e) => {
            return fail(
                report,
                log,
                format!("no valid partition table at 0x8000: {e}"),
            );
        }
    };
    log.push_str("I (45) boot: Partition Table:\r\n");
    for (i, p) in table.iter().enumerate() {
        log.push_str(&format!(
            "I (52) boot: {i:2} {:<16} {:<6} {:<8} {:08x} {:08x}\r\n",
            p.name,
            p.type_name(),
            p.subtype,
            p.offset,
            p.size
        ));
    }
    let Some(app) = table
        .iter()
        .filter(|p| p.ty == partition_table::TYPE_APP)
        .min_by_key(|p| p.offset)
    else {
        return fail(report, log, "no app partition".into());
    };
    report.app_offset = Some(app.offset);
    let image = flash
        .get(app.offset as usize..app.end().min(flash.len()))
        .unwrap_or_default();
    let version = match app_image::read_version(image) {
        Ok(_) if bad_app => Err(app_image::ImageProblem::Magic(0xFF)),
        other => other,
    };
    match version {
        Ok(version) => report.firmware_version = version,
        Err(app_image::ImageProblem::Magic(magic)) => {
            return fail(
                report,
                log,
                format!(
                    "image at 0x{:x} has invalid magic byte (0x{magic:02x}); nothing to boot",
                    app.offset
                ),
            );
        }
    }
    log.push_str(&format!(
        "I (120) boot: Loaded app from partition at offset 0x{:x}\r\n",
        app.offset
    ));
    log.push_str(&format!(
        "I (200) cpu_start: Application information: version {}\r\nI (210) wifi: mac {}\r\n",
        report.firmware_version.as_deref().unwrap_or("unknown"),
        mac.iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    ));
    let nvs_partition = table.iter().find(|p| {
        p.name == NVS_PARTITION
            && p.ty == partition_table::TYPE_DATA
            && p.subtype == partition_table::SUBTYPE_NVS
    });
    if let Some(part) = nvs_partition
        && let Some(bytes) = flash.get(part.offset as usize..part.end())
    {
        report.nvs = nvs::read_namespace(bytes, NAMESPACE);
    }
    match report.serial_number() {
        Some(sn) if sn.parse::<vesper_core::serial::SerialNumber>().is_err() => {
            let reason = format!("NVS serial_number `{sn}` is not a serial number");
            return fail(report, log, reason);
        }
        // The firmware's own console lines (DESIGN.md section 3), as the real firmware prints them.
        Some(sn) => {
            let mac_text = mac
                .iter()
                .map(|b| format!("{b:02X}"))
                .collect::<Vec<_>>()
                .join(":");
            let line = ConsoleLine::Boot {
                serial_number: sn,
                hw_type: report.nvs.get("hw_type").map_or("?", String::as_str),
                hw_version: report.nvs.get("hw_version").map_or("?", String::as_str),
                firmware: report.firmware_version.as_deref().unwrap_or("unknown"),
                mac: &mac_text,
                chip: "esp32",
            };
            log.push_str(&format!("{line}\r\n"));
        }
        None => {
            return fail(
                report,
                log,
                "NVS namespace `vesper` has no serial_number: the device is not provisioned".into(),
            );
        }
    }
    report.ok = true;
    (report, log)
}

/// What the simulated board reports in its heartbeats: a board on the bench, freshly powered on.
const SIM_VITALS: device::Vitals = device::Vitals {
    rssi: -55,
    heap_free: 176_000,
    reset_reason: device::ResetReason::PowerOn,
};

/// The running "firmware": an MQTT client that sends heartbeats, and in factory mode answers
/// the station's test commands.
pub struct Firmware {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
    commands: std::sync::mpsc::Sender<String>,
}

impl Firmware {
    /// Starts the firmware of a good boot, if a broker is configured.
    pub fn start(
        report: &BootReport,
        config: &SimConfig,
        faults: Vec<Fault>,
        events: Arc<Mutex<Vec<(Instant, SimEvent)>>>,
        mut console: Option<TTYPort>,
    ) -> Option<Firmware> {
        if !report.ok {
            return None;
        }
        let (host, port) = config.broker.clone()?;
        let sn = report.serial_number()?.to_owned();
        let user = report
            .nvs
            .get("mqtt_user")
            .cloned()
            .unwrap_or_else(|| sn.clone());
        let mut password = report.nvs.get("mqtt_pass").cloned().unwrap_or_default();
        if faults.contains(&Fault::WrongPassword) {
            password = "0".repeat(32);
        }
        let topic = |template: &str| template.replace(SN_PLACEHOLDER, &sn);
        let (data_topic, status_topic, control_topic) = (
            topic(&config.data_topic),
            topic(&config.status_topic),
            topic(&config.control_topic),
        );
        let every = config.heartbeat_every;
        let version = report
            .firmware_version
            .clone()
            .unwrap_or_else(|| "unknown".into());
        let silent = faults.contains(&Fault::NoHeartbeat);
        // Factory mode: only when the station wrote `factory_test` = 1 into the NVS.
        let factory = (report.nvs.get("factory_test").map(String::as_str) == Some("1"))
            .then(|| config.factory.clone());
        let mac = config.mac;
        let seed = u64::from_be_bytes([0, 0, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]]);
        let (commands, phases) = std::sync::mpsc::channel::<String>();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            // As the firmware logs in (DESIGN.md section 3): client id = SN, keepalive 60 s,
            // a retained last will {"online":false} on the status topic.
            let mut options = rumqttc::MqttOptions::new(sn.clone(), host, port);
            options.set_credentials(user, password);
            options.set_keep_alive(Duration::from_secs(device::KEEPALIVE_SECONDS));
            options.set_last_will(rumqttc::LastWill::new(
                status_topic.clone(),
                device::STATUS_OFFLINE_PAYLOAD,
                rumqttc::QoS::AtLeastOnce,
                true,
            ));
            let (client, mut connection) = rumqttc::Client::new(options, 16);
            let started = Instant::now();
            let mut next = Instant::now();
            let record = |e: SimEvent| {
                events
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((Instant::now(), e))
            };
            let mut connected = false;
            let mut print = |text: String| {
                if let Some(port) = console.as_mut() {
                    let _ = port.write_all(format!("{text}\r\n").as_bytes());
                }
                record(SimEvent::Console(text));
            };
            print(ConsoleLine::WifiConnected { ip: "127.0.0.1" }.to_string());
            while !flag.load(Ordering::Relaxed) {
                while let Ok(phase) = phases.try_recv() {
                    for line in factory.iter().flat_map(|f| f.answer(&phase, seed)) {
                        print(line);
                    }
                }
                let mut say = |line: ConsoleLine| print(line.to_string());
                match connection.recv_timeout(Duration::from_millis(50)) {
                    Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_)))) => {
                        connected = true;
                        say(ConsoleLine::MqttConnected);
                        let online = device::status_online_payload(&version);
                        let _ = client.try_publish(
                            status_topic.clone(),
                            rumqttc::QoS::AtLeastOnce,
                            true,
                            online,
                        );
                        let _ =
                            client.try_subscribe(control_topic.clone(), rumqttc::QoS::AtLeastOnce);
                        next = Instant::now();
                    }
                    Ok(Ok(_)) | Err(_) => {}
                    Ok(Err(rumqttc::ConnectionError::ConnectionRefused(code))) => {
                        say(ConsoleLine::MqttRefused {
                            code: connack_code(code),
                        });
                        record(SimEvent::MqttRefused {
                            serial_number: sn.clone(),
                            reason: format!("{code:?}"),
                        });
                        return;
                    }
                    Ok(Err(_)) => {
                        if connected {
                            say(ConsoleLine::Error {
                                what: "mqtt disconnected (the connection was lost)",
                            });
                        }
                        connected = false;
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
                if connected && !silent && Instant::now() >= next {
                    let payload = device::heartbeat_payload(
                        &version,
                        started.elapsed().as_secs(),
                        SIM_VITALS,
                    );
                    if client
                        .try_publish(
                            data_topic.clone(),
                            rumqttc::QoS::AtLeastOnce,
                            false,
                            payload,
                        )
                        .is_ok()
                    {
                        say(ConsoleLine::HeartbeatSent);
                        record(SimEvent::HeartbeatSent {
                            serial_number: sn.clone(),
                        });
                    }
                    next = Instant::now() + every;
                }
            }
            let _ = client.disconnect();
        });
        Some(Firmware {
            stop,
            thread,
            commands,
        })
    }

    /// The station sent `vesper test PHASE` on the console.
    pub fn command(&self, phase: String) {
        let _ = self.commands.send(phase);
    }

    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

/// rumqttc's CONNACK return code as its number on the wire (MQTT 3.1.1 section 3.2.2.3).
fn connack_code(code: rumqttc::ConnectReturnCode) -> u8 {
    match code {
        rumqttc::ConnectReturnCode::Success => 0,
        rumqttc::ConnectReturnCode::RefusedProtocolVersion => 1,
        rumqttc::ConnectReturnCode::BadClientId => 2,
        rumqttc::ConnectReturnCode::ServiceUnavailable => 3,
        rumqttc::ConnectReturnCode::BadUserNamePassword => 4,
        rumqttc::ConnectReturnCode::NotAuthorized => 5,
    }
}
