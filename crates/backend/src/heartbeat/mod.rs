//! The heartbeat listener: the backend takes every device's data and status messages from the
//! broker, as its service account, and turns them into registry updates. A device's first
//! heartbeat moves it `flashed -> provisioned`; every message stamps `last_seen`.
//!
//! Messages arrive over MQTT ([`mqtt`], mosquitto) or, on a RabbitMQ cluster, over AMQP
//! ([`amqp`], competing consumers of one durable queue). Either way the listener reconnects with
//! backoff and never blocks the API: messages go through a bounded queue to one writer that
//! applies them in batches (one transaction per batch), then tells listeners. An AMQP message is
//! acknowledged only after its batch is committed, so a backend that dies mid-batch loses nothing:
//! the broker hands the message to another instance.

mod amqp;
mod mqtt;

use lapin::Acker;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use tokio::sync::{mpsc, watch};

use super::SharedState;
use super::control::BrokerCommands;
use vesper_core::config::Broker;
use vesper_store::Sighting;

pub use mqtt::{MAX_PACKET, SHARE_GROUP};

/// Audit actor of provisioning by heartbeat.
pub const ACTOR: &str = "mqtt-heartbeat";

/// Most messages queued for the writer; beyond that new MQTT messages are dropped (they only
/// refresh `last_seen`, and devices repeat heartbeats). AMQP deliveries are bounded by the
/// consumer's prefetch long before this.
const QUEUE: usize = 20_000;

/// Most sightings applied in one transaction.
const BATCH: usize = 512;

/// A device message read into a sighting, with how to settle it with the broker once written.
struct Received {
    sighting: Sighting,
    /// The AMQP delivery to acknowledge after the commit (MQTT QoS 1 is acknowledged by the
    /// client library on arrival).
    delivery: Option<Acker>,
}

impl Received {
    fn unacknowledged(sighting: Sighting) -> Self {
        Self {
            sighting,
            delivery: None,
        }
    }
}

/// Runs until `stop`: the broker connection and the writer. Over MQTT the same connection
/// publishes the broker control commands; over AMQP there is no mosquitto plugin to read them
/// and they are counted as unsent.
pub async fn run(
    state: SharedState,
    broker: Broker,
    commands: BrokerCommands,
    stop: watch::Receiver<bool>,
) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let writer = tokio::spawn(write_sightings(state.clone(), rx));
    if broker.amqp.is_empty() {
        mqtt::listen(&state, &broker, tx, commands, stop).await;
    } else {
        drop(commands);
        amqp::consume(&state, &broker.amqp, tx, stop).await;
    }
    let _ = writer.await;
}

/// Applies queued sightings in batches (one transaction each), settles their deliveries, and
/// announces the changes. A batch that cannot be written is handed back to the broker (AMQP) to
/// be delivered again, here or to another instance.
async fn write_sightings(state: SharedState, mut rx: mpsc::Receiver<Received>) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let (sightings, deliveries): (Vec<Sighting>, Vec<Option<Acker>>) =
            batch.drain(..).map(|r| (r.sighting, r.delivery)).unzip();
        let written = state.store.record_sightings(&sightings, ACTOR).await;
        settle(deliveries.into_iter().flatten(), written.is_ok()).await;
        match written {
            Ok(events) => {
                for event in events.iter().filter(|e| e.kind == "provisioned") {
                    tracing::info!(sn = %event.serial_number, "device provisioned by its first heartbeat");
                }
                super::announce(&state, events).await;
            }
            Err(e) => tracing::error!(error = %e, "cannot record heartbeats"),
        }
    }
}

/// Acknowledges written deliveries, or returns unwritten ones to the queue. A delivery whose
/// connection is gone needs nothing: the broker requeues it.
async fn settle(deliveries: impl Iterator<Item = Acker>, written: bool) {
    for delivery in deliveries {
        let settled = if written {
            delivery.ack(BasicAckOptions::default()).await
        } else {
            delivery
                .nack(BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                })
                .await
        };
        if let Err(e) = settled {
            tracing::debug!(error = %e, "delivery not settled; the broker delivers it again");
        }
    }
}
