//! Runs the station's [`Task`]s in the background and reports back with [`Action`]s: API calls
//! through the typed client, firmware downloads, flash jobs (one blocking thread per board),
//! and verification by the first heartbeat.

use std::collections::HashMap;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc::UnboundedSender;

use super::action::{Action, Job, Owner, Task};
use super::ports::{is_pty, wizard_ports};
use vesper_client::{ApiClient, ClientError};
use vesper_core::config::Config;
use vesper_core::model::Board;
use vesper_core::model::{Device, DeviceFilter, FlashReport, Status};
use vesper_flash::{self as flashing, Bundle, FlashEvent, FlashOptions, FlashPlan};
use vesper_labels::{self as labels, Format, Stock};

/// Matches shown by the wizard's search.
const MATCHES: u32 = 20;

/// Runs tasks; cheap to clone (one per task).
#[derive(Clone)]
pub struct Runner {
    client: ApiClient,
    config: Arc<Config>,
    tx: UnboundedSender<Action>,
    /// Firmware bundles already fetched, by `board/version`.
    bundles: Arc<tokio::sync::Mutex<HashMap<String, Arc<Bundle>>>>,
    /// Where saved labels go.
    labels_dir: PathBuf,
}

impl Runner {
    pub fn new(
        client: ApiClient,
        config: Arc<Config>,
        tx: UnboundedSender<Action>,
        labels_dir: PathBuf,
    ) -> Runner {
        Runner {
            client,
            config,
            tx,
            bundles: Arc::default(),
            labels_dir,
        }
    }

    fn send(&self, action: Action) {
        let _ = self.tx.send(action);
    }

    fn failed(&self, what: &str, e: impl std::fmt::Display) {
        self.send(Action::Failed(format!("{what}: {e}")));
    }

    /// Starts `task` in the background.
    pub fn spawn(&self, task: Task) {
        let runner = self.clone();
        tokio::spawn(async move { runner.run(task).await });
    }

    async fn run(self, task: Task) {
        let c = &self.client;
        match task {
            Task::Health => self.send(Action::Health(c.health().await.map_err(|e| e.to_string()))),
            Task::Stats => match c.stats().await {
                Ok(s) => self.send(Action::Stats(s)),
                Err(e) => self.failed("cannot load the figures", e),
            },
            Task::Batches => match c.batches(200).await {
                Ok(list) => self.send(Action::Batches(list)),
                Err(e) => self.failed("cannot list batches", e),
            },
            Task::Batch(id) => match c.batch_record(&id).await {
                Ok(b) => self.send(Action::BatchLoaded(b)),
                Err(e) => self.failed(&format!("cannot load batch {id}"), e),
            },
            Task::CreateBatch(order) => match c.create_batch(&order).await {
                Ok(b) => self.send(Action::BatchCreated(b)),
                Err(e) => self.failed("cannot create the batch", e),
            },
            Task::Devices { request, filter } => match c.devices(&filter).await {
                Ok(page) => self.send(Action::DevicePage { request, page }),
                Err(e) => {
                    self.send(Action::DevicePageFailed { request });
                    self.failed("cannot list devices", e)
                }
            },
            Task::Device(sn) => match c.device(&sn).await {
                Ok(d) => self.send(Action::DeviceLoaded(d)),
                Err(e) => self.failed(&format!("cannot load {sn}"), e),
            },
            Task::SetStatus { sn, status } => match c.set_status(&sn, status).await {
                Ok(d) => self.send(Action::DeviceChanged(d)),
                Err(e) => self.failed(&format!("cannot change {sn}"), e),
            },
            Task::Assign { sn, email } => match c.assign(&sn, &email).await {
                Ok(d) => self.send(Action::DeviceChanged(d)),
                Err(e) => self.failed(&format!("cannot assign {sn}"), e),
            },
            Task::Search { request, text } => {
                let filter = DeviceFilter {
                    text: Some(text),
                    limit: Some(MATCHES),
                    ..Default::default()
                };
                match c.devices(&filter).await {
                    Ok(page) => self.send(Action::Matches {
                        request,
                        devices: page.devices,
                    }),
                    Err(e) => self.failed("search failed", e),
                }
            }
            Task::Labels { batch, print } => self.batch_labels(&batch, print).await,
            Task::DeviceLabel(device) => self.device_label(&device),
            Task::ClaimNext { owner, job, batch } => {
                let claimant = Task::claimant(&self.config.station, owner);
                let result = c.claim_next(&batch, &claimant).await;
                self.claimed(owner, job, result);
            }
            Task::Claim { owner, job, sn } => {
                let claimant = Task::claimant(&self.config.station, owner);
                let result = c.claim(&sn, &claimant).await;
                self.claimed(owner, job, result);
            }
            Task::Release { sn, owner } => {
                let claimant = Task::claimant(&self.config.station, owner);
                if let Err(e) = c.release(&sn, &claimant).await {
                    self.failed(&format!("cannot give {sn} back"), e);
                }
            }
            Task::Flash {
                owner,
                job,
                device,
                port,
            } => self.flash(owner, job, &device, port).await,
            Task::Verify {
                owner,
                job,
                sn,
                port,
                chip,
                mac,
                firmware_version,
            } => {
                let report = FlashReport {
                    chip,
                    mac,
                    firmware_version,
                    station: self.config.station.clone(),
                    force: false,
                };
                self.verify(owner, job, &sn, &port, report).await
            }
            Task::ListPorts => {
                let slots = self.config.station_settings.slots.clone();
                let ports = tokio::task::spawn_blocking(move || wizard_ports(&slots))
                    .await
                    .unwrap_or_default();
                self.send(Action::Ports(ports));
            }
        }
    }

    fn claimed(&self, owner: Owner, job: Job, result: Result<Device, ClientError>) {
        match result {
            Ok(device) => self.send(Action::Claimed { owner, job, device }),
            Err(e) => self.send(Action::ClaimRefused {
                owner,
                job,
                reason: e.reason(),
                batch_done: e.is_conflict("batch_done"),
            }),
        }
    }

    async fn batch_labels(&self, batch: &str, print: bool) {
        let pdf = match self.client.labels_pdf(batch).await {
            Ok(pdf) => pdf,
            Err(e) => return self.failed(&format!("cannot make the labels of {batch}"), e),
        };
        let path = self.labels_dir.join(format!("{batch}-labels.pdf"));
        self.save_and_print(&path, &pdf, print).await;
    }

    fn device_label(&self, device: &Device) {
        let labels_config = &self.config.labels;
        let data = labels::from_device(device);
        let result = Stock::find(&labels_config.stock, &labels_config.stocks)
            .map_err(|e| e.to_string())
            .and_then(|stock| {
                labels::render(&[data], &stock, Format::Pdf, 0).map_err(|e| e.to_string())
            });
        let path = self
            .labels_dir
            .join(format!("{}-label.pdf", device.serial_number));
        let runner = self.clone();
        tokio::spawn(async move {
            match result {
                Ok((pdf, _)) => runner.save_and_print(&path, &pdf, true).await,
                Err(e) => runner.failed("cannot make the label", e),
            }
        });
    }

    async fn save_and_print(&self, path: &Path, pdf: &[u8], print: bool) {
        if let Err(e) = write_atomic(path, pdf) {
            return self.failed(&format!("cannot save {}", path.display()), e);
        }
        if !print || self.config.labels.printer.is_none() {
            return self.send(Action::Notice(format!(
                "labels saved to {}",
                path.display()
            )));
        }
        let (pdf, labels_config) = (pdf.to_vec(), self.config.labels.clone());
        let sent = tokio::task::spawn_blocking(move || {
            labels::send_to_printer(&pdf, Format::Pdf, &labels_config)
        })
        .await;
        match sent {
            Ok(Ok(printer)) => self.send(Action::Notice(format!(
                "labels sent to {printer} (and saved to {})",
                path.display()
            ))),
            Ok(Err(e)) => self.failed(
                &format!("saved to {}, but printing failed", path.display()),
                e,
            ),
            Err(e) => self.failed("printing failed", e),
        }
    }

    /// The newest firmware bundle of a board, fetched from the backend once and cached.
    async fn bundle(&self, board: &Board) -> Result<Arc<Bundle>, String> {
        let manifest = self
            .client
            .firmware(&board.hw_type.to_string(), &board.hw_version.to_string())
            .await
            .map_err(|e| format!("no firmware for {}: {e}", board.name))?;
        let version = manifest["version"].as_str().unwrap_or_default().to_owned();
        let manifest_url = manifest["manifest_url"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let key = format!("{}/{version}", board.name);
        let mut cache = self.bundles.lock().await;
        if let Some(b) = cache.get(&key) {
            return Ok(b.clone());
        }
        let dir = self
            .config
            .station_settings
            .firmware_cache
            .join(&board.name)
            .join(format!("v{version}"));
        let bundle = match Bundle::load(&dir).ok().filter(|b| b.parts().is_ok()) {
            Some(b) => b,
            None => self.download(&manifest, &manifest_url, &dir).await?,
        };
        let bundle = Arc::new(bundle);
        cache.insert(key, bundle.clone());
        Ok(bundle)
    }

    /// Downloads a release (its manifest and parts) into `dir`, checking every part.
    async fn download(
        &self,
        manifest: &Value,
        manifest_url: &str,
        dir: &Path,
    ) -> Result<Bundle, String> {
        let fail = |e: String| format!("cannot download the firmware: {e}");
        let original = self
            .client
            .download(manifest_url)
            .await
            .map_err(|e| fail(e.to_string()))?;
        std::fs::create_dir_all(dir).map_err(|e| fail(format!("{}: {e}", dir.display())))?;
        let parts = manifest["builds"][0]["parts"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for part in parts {
            let url = part["path"].as_str().unwrap_or_default();
            let name = url.rsplit('/').next().unwrap_or_default();
            if name.is_empty() || name.starts_with('.') {
                return Err(fail(format!("bad part URL {url}")));
            }
            let bytes = self
                .client
                .download(url)
                .await
                .map_err(|e| fail(e.to_string()))?;
            write_atomic(&dir.join(name), &bytes).map_err(|e| fail(e.to_string()))?;
        }
        write_atomic(&dir.join("manifest.json"), &original).map_err(|e| fail(e.to_string()))?;
        let bundle = Bundle::load(dir).map_err(|e| fail(e.to_string()))?;
        bundle.parts().map_err(|e| fail(e.to_string()))?;
        Ok(bundle)
    }

    /// Builds the flash plan (firmware + this device's NVS image) and flashes it.
    async fn plan(&self, device: &Device) -> Result<(FlashPlan, FlashOptions), String> {
        let board = self
            .config
            .board(&device.board)
            .map_err(|e| e.to_string())?
            .clone();
        let nvs = self
            .client
            .nvs_image(&device.serial_number)
            .await
            .map_err(|e| format!("cannot get the NVS image: {e}"))?;
        let bundle = self.bundle(&board).await?;
        let plan = FlashPlan::new(&board, &bundle, nvs).map_err(|e| e.to_string())?;
        let options = FlashOptions {
            baud: self.config.station_settings.baud,
            chip: flashing::espflash_chip(board.chip),
            ..FlashOptions::default()
        };
        Ok((plan, options))
    }

    async fn flash(&self, owner: Owner, job: Job, device: &Device, port: String) {
        let report = |event| Action::Flash { owner, job, event };
        let (plan, mut options) = match self.plan(device).await {
            Ok(p) => p,
            Err(error) => return self.send(report(FlashEvent::Failed { port, error })),
        };
        options.reset = !is_pty(&port);
        self.send(Action::Prepared {
            owner,
            job,
            firmware: plan.firmware_version.clone(),
            parts: plan
                .parts
                .iter()
                .map(|p| (p.name.clone(), p.data.len()))
                .collect(),
        });
        let tx = self.tx.clone();
        let (client, sn, runtime) = (
            self.client.clone(),
            device.serial_number.clone(),
            tokio::runtime::Handle::current(),
        );
        let _ = tokio::task::spawn_blocking(move || {
            let check = |mac: &str| runtime.block_on(board_is_free(&client, mac, &sn));
            let (events, rx) = std::sync::mpsc::channel();
            std::thread::scope(|s| {
                s.spawn(|| {
                    let _ = flashing::flash_checked(&port, &plan, &options, &events, &check);
                    drop(events);
                });
                for event in rx {
                    let _ = tx.send(Action::Flash { owner, job, event });
                }
            });
        })
        .await;
    }

    /// Reports the flash, then waits for the first heartbeat while showing the boot log.
    async fn verify(&self, owner: Owner, job: Job, sn: &str, port: &str, report: FlashReport) {
        if let Err(e) = self.client.flashed(sn, &report).await {
            return self.send(Action::VerifyFailed {
                owner,
                job,
                reason: format!("the backend did not record the flash: {}", e.reason()),
            });
        }
        let stop = Arc::new(AtomicBool::new(false));
        let console = {
            let (stop, tx, port) = (stop.clone(), self.tx.clone(), port.to_owned());
            std::thread::spawn(move || {
                read_console(&port, &stop, |line| {
                    let _ = tx.send(Action::Console { owner, job, line });
                })
            })
        };
        let timeout = self.config.station_settings.verify_timeout;
        let result = self
            .client
            .wait_for_status(sn, Status::Provisioned, timeout)
            .await;
        stop.store(true, Ordering::Relaxed);
        let _ = tokio::task::spawn_blocking(move || console.join()).await;
        match result {
            Ok((true, device)) => self.send(Action::Verified { owner, job, device }),
            Ok((false, device)) if device.status == Status::Revoked => self.send(Action::VerifyFailed {
                owner,
                job,
                reason: format!("{sn} was revoked while waiting"),
            }),
            Ok((false, _)) => self.send(Action::VerifyFailed {
                owner,
                job,
                reason: format!(
                    "no heartbeat within {} s: the board did not reach the broker. Check its Wi-Fi, \
                     the broker address it was given (mqtt.host) and the boot log",
                    timeout.as_secs()
                ),
            }),
            Err(e) => self.send(Action::VerifyFailed {
                owner,
                job,
                reason: format!("cannot ask the backend: {e}"),
            }),
        }
    }
}

/// Refuses a board whose MAC the registry already binds to another serial number: writing it
/// would overwrite an identity in use (a finished board plugged in again by mistake). When the
/// backend cannot say, the board is refused too.
async fn board_is_free(client: &ApiClient, mac: &str, sn: &str) -> Result<(), String> {
    let filter = DeviceFilter {
        text: Some(mac.to_owned()),
        limit: Some(10),
        ..Default::default()
    };
    let page = client.devices(&filter).await.map_err(|e| {
        format!(
            "cannot ask the backend whether this board already has a serial number: {}",
            e.reason()
        )
    })?;
    let owner = page.devices.iter().find(|d| {
        d.serial_number != sn
            && d.mac
                .as_deref()
                .is_some_and(|m| m.eq_ignore_ascii_case(mac))
    });
    match owner {
        Some(d) => Err(format!(
            "this board (MAC {mac}) is already {} ({}): nothing was written; set it aside and \
             plug in a new board",
            d.serial_number,
            d.status.as_str()
        )),
        None => Ok(()),
    }
}

/// Reads the board's serial console (115200 baud) line by line until `stop`.
fn read_console(port: &str, stop: &AtomicBool, mut line: impl FnMut(String)) {
    // A simulated board boots when the flasher closes its port: give it time to notice.
    std::thread::sleep(Duration::from_millis(300));
    let Ok(mut serial) = serialport::new(port, 115_200)
        .timeout(Duration::from_millis(100))
        .open_native()
    else {
        return;
    };
    // Keep EN and IO0 released, so opening the console does not reset the board.
    let _ = serialport::SerialPort::write_data_terminal_ready(&mut serial, false);
    let _ = serialport::SerialPort::write_request_to_send(&mut serial, false);
    let mut reader = std::io::BufReader::new(serial);
    let mut buf = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) => std::thread::sleep(Duration::from_millis(50)),
            Ok(_) => {
                if buf.ends_with(b"\n") {
                    let text = String::from_utf8_lossy(&buf).trim_end().to_owned();
                    if !text.is_empty() {
                        line(text);
                    }
                    buf.clear();
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return,
        }
    }
}

/// Writes a file whole or not at all: a temporary file, synced, renamed into place.
fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = atomic_write_file::AtomicWriteFile::open(path)?;
    std::io::Write::write_all(&mut file, bytes)?;
    file.commit()
}
