//! Runs the station's [`Task`]s in the background and reports back with [`Action`]s: API calls
//! through the typed client, and boards through the provisioning [`Pipeline`], whose events
//! become actions addressed to the slot or the wizard that owns the board.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::mpsc::UnboundedSender;

use super::action::{Action, Job, Owner, Task};
use super::ports::wizard_ports;
use crate::provision::{ClaimRefused, Emit, Pipeline, ProvisionEvent, Step, write_atomic};
use vesper_client::ApiClient;
use vesper_core::config::Config;
use vesper_core::model::{Device, DeviceFilter, FlashReport};
use vesper_flash::FlashEvent;
use vesper_labels::{self as labels, Format, Stock};

/// Matches shown by the wizard's search.
const MATCHES: u32 = 20;

/// Runs tasks; cheap to clone (one per task).
#[derive(Clone)]
pub struct Runner {
    client: ApiClient,
    config: Arc<Config>,
    pipeline: Pipeline,
    tx: UnboundedSender<Action>,
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
            pipeline: Pipeline::new(client.clone(), config.clone()),
            client,
            config,
            tx,
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
                let result = self.pipeline.claim_next(&batch, &claimant).await;
                self.claimed(owner, job, result);
            }
            Task::Claim { owner, job, sn } => {
                let claimant = Task::claimant(&self.config.station, owner);
                let result = self.pipeline.claim(&sn, &claimant).await;
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
            } => {
                let emit = self.reporter(owner, job, &port);
                let _ = self.pipeline.provision(&device, &port, emit).await;
            }
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
                let emit = self.reporter(owner, job, &port);
                let _ = self.pipeline.verify(&sn, &port, report, emit).await;
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

    fn claimed(&self, owner: Owner, job: Job, result: Result<Device, ClaimRefused>) {
        match result {
            Ok(device) => self.send(Action::Claimed { owner, job, device }),
            Err(refused) => self.send(Action::ClaimRefused {
                owner,
                job,
                reason: refused.reason,
                batch_done: refused.batch_done,
            }),
        }
    }

    /// Turns the pipeline's events about the board of `owner`'s job `job` into actions.
    fn reporter(&self, owner: Owner, job: Job, port: &str) -> impl Emit {
        let (tx, port) = (self.tx.clone(), port.to_owned());
        move |event| {
            let action = match event {
                ProvisionEvent::Claimed { device } => Action::Claimed {
                    owner,
                    job,
                    device: *device,
                },
                ProvisionEvent::Prepared { firmware, parts } => Action::Prepared {
                    owner,
                    job,
                    firmware,
                    parts,
                },
                ProvisionEvent::Flash { flash } => Action::Flash {
                    owner,
                    job,
                    event: flash,
                },
                ProvisionEvent::Console { line } => Action::Console { owner, job, line },
                ProvisionEvent::Verified { device } => Action::Verified {
                    owner,
                    job,
                    device: *device,
                },
                // The flash engine reports its own failures as flash events.
                ProvisionEvent::Failed {
                    step: Step::Flash, ..
                }
                | ProvisionEvent::Reported { .. } => return,
                ProvisionEvent::Failed {
                    step: Step::Claim | Step::Plan,
                    reason,
                } => Action::Flash {
                    owner,
                    job,
                    event: FlashEvent::Failed {
                        port: port.clone(),
                        error: reason,
                    },
                },
                ProvisionEvent::Failed {
                    step: Step::Report | Step::Verify,
                    reason,
                } => Action::VerifyFailed { owner, job, reason },
            };
            let _ = tx.send(action);
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
}
