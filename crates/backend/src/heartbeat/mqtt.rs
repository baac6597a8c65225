//! The listener over MQTT (mosquitto with the plugin): the service account subscribes to every
//! device's data and status topics, alone with a persistent session on SQLite, or as one member
//! of the shared subscription `$share/vesper-backend/...` when instances share PostgreSQL. The
//! same connection publishes the broker control commands (`$CONTROL/vesper/v1`).

use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, Transport};
use tokio::sync::{mpsc, watch};

use super::Received;
use crate::SharedState;
use crate::control::BrokerCommands;
use vesper_core::acl::{CONTROL_TOPIC, TopicTemplate};
use vesper_core::config::Broker;

/// The MQTT filter that matches a topic template for every device (`vesper/+/data`).
pub(super) fn subscription(template: &TopicTemplate) -> String {
    template
        .to_string()
        .replace(vesper_core::acl::SN_PLACEHOLDER, "+")
}

/// The shared-subscription group of every backend instance on one database: the broker hands
/// each device message to one member of the group.
pub const SHARE_GROUP: &str = "vesper-backend";

/// How the listener meets the broker: alone (one backend on SQLite), or as one member of the
/// group of instances sharing a PostgreSQL registry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Membership {
    client_id: String,
    /// Whether the broker keeps the session (and queues heartbeats) while the backend is away.
    persistent: bool,
    /// The subscription's prefix: empty, or `$share/vesper-backend/`.
    prefix: String,
}

impl Membership {
    fn new(account: &str, shared: bool) -> Self {
        if shared {
            // Each instance its own id, and a clean session: a stopped instance leaves the
            // group at once, so the broker never queues a share of the messages for it.
            let suffix: String = rand::Rng::sample_iter(rand::rng(), rand::distr::Alphanumeric)
                .take(8)
                .map(char::from)
                .collect();
            Self {
                client_id: format!("{account}-hb-{suffix}"),
                persistent: false,
                prefix: format!("$share/{SHARE_GROUP}/"),
            }
        } else {
            // A stable client id and a persistent session: while the backend restarts, the
            // broker keeps the QoS 1 heartbeats for it (up to its max_queued_messages).
            Self {
                client_id: format!("{account}-heartbeats"),
                persistent: true,
                prefix: String::new(),
            }
        }
    }
}

/// Largest packet the listener accepts from the broker. Devices may send at most 8 KiB (the
/// shipped broker configs set `max_packet_size`); a larger message is skipped with a log line.
pub const MAX_PACKET: usize = 64 * 1024;

pub(super) async fn listen(
    state: &SharedState,
    broker: &Broker,
    tx: mpsc::Sender<Received>,
    mut commands: BrokerCommands,
    mut stop: watch::Receiver<bool>,
) {
    let account = state.config.serve.service_account.clone();
    let password = state.secret.service_password(&account);
    let shared = state.store.engine() == vesper_store::Engine::Postgres;
    let membership = Membership::new(&account, shared);
    let mut options = MqttOptions::new(
        membership.client_id.clone(),
        broker.host.clone(),
        broker.port,
    );
    options.set_credentials(account, password.expose().to_owned());
    options.set_keep_alive(Duration::from_secs(30));
    options.set_clean_session(!membership.persistent);
    options.set_max_packet_size(MAX_PACKET, MAX_PACKET);
    if broker.tls {
        options.set_transport(Transport::tls_with_default_config());
    }
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    let topics = state.config.mqtt.topics.clone();
    let mut backoff = Duration::from_millis(250);
    // Commands taken from the queue and not yet accepted by the client's own (bounded) request
    // queue: kept, never dropped, and offered again after each event the loop handles.
    let mut pending: std::collections::VecDeque<crate::control::BrokerCommand> =
        std::collections::VecDeque::new();
    let mut connected = false;
    loop {
        while let Some(command) = pending.front() {
            match client.try_publish(CONTROL_TOPIC, QoS::AtLeastOnce, false, command.payload()) {
                Ok(()) => {
                    pending.pop_front();
                    commands.handed_over();
                }
                Err(_) => break, // the client's queue is full: it drains as the loop polls
            }
        }
        let event = tokio::select! {
            e = eventloop.poll() => e,
            // Only while connected: a command arriving must not cancel a connection attempt
            // (the queue keeps them until then).
            Some(command) = commands.recv(), if connected && pending.len() < 1024 => {
                pending.push_back(command);
                continue;
            }
            _ = crate::stopped(&mut stop) => {
                let _ = client.disconnect().await;
                return;
            }
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                connected = true;
                backoff = Duration::from_millis(250);
                tracing::info!(broker = %format!("{}:{}", broker.host, broker.port), client_id = %membership.client_id, shared, "heartbeat listener connected");
                for template in [&topics.data, &topics.status] {
                    let filter = format!("{}{}", membership.prefix, subscription(template));
                    if let Err(e) = client.subscribe(filter, QoS::AtLeastOnce).await {
                        tracing::warn!(error = %e, "cannot subscribe");
                    }
                }
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                if ack
                    .return_codes
                    .iter()
                    .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                {
                    tracing::error!(
                        "the broker refused the heartbeat subscription; does its auth plugin ask this backend?"
                    );
                } else {
                    state
                        .broker_connected
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                match vesper_core::sightings::read(
                    &topics,
                    &p.topic,
                    &p.payload,
                    &vesper_store::now(),
                ) {
                    Ok(Some(sighting)) => {
                        state
                            .metrics
                            .device_messages
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if tx.try_send(Received::unacknowledged(sighting)).is_err() {
                            tracing::warn!("heartbeat queue full; a sighting was dropped");
                        }
                    }
                    Ok(None) => {}
                    Err(e) => tracing::info!(error = %e, "malformed device message ignored"),
                }
            }
            Ok(_) => {}
            Err(e) => {
                connected = false;
                state
                    .broker_connected
                    .store(false, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(error = %e, retry_in = ?backoff, "heartbeat listener disconnected");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = crate::stopped(&mut stop) => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listener_subscribes_to_every_device() {
        assert_eq!(
            subscription(&vesper_core::acl::Topics::default().data),
            "vesper/+/data"
        );
    }

    #[test]
    fn instances_on_a_shared_registry_join_one_group_each_with_its_own_id() {
        let alone = Membership::new("vesper-backend", false);
        assert_eq!(
            (
                alone.client_id.as_str(),
                alone.persistent,
                alone.prefix.as_str()
            ),
            ("vesper-backend-heartbeats", true, "")
        );
        let (a, b) = (
            Membership::new("vesper-backend", true),
            Membership::new("vesper-backend", true),
        );
        assert_eq!(a.prefix, "$share/vesper-backend/");
        assert!(!a.persistent);
        assert_ne!(a.client_id, b.client_id);
        let id = vesper_core::clientid::Login::Service("vesper-backend");
        vesper_core::clientid::check(id, &a.client_id, "vesper-backend").unwrap();
    }
}
