//! The listener over AMQP, for a RabbitMQ cluster: RabbitMQ 3.10's MQTT plugin speaks MQTT
//! 3.1.1 only, so there is no shared subscription to split device messages between backend
//! instances. Instead every instance consumes the one durable queue `SERVICE.heartbeats`,
//! bound to `amq.topic` (where the MQTT plugin publishes) with the device topics as routing
//! keys: competing consumers, so each message is handled by one instance, and acknowledged only
//! once written. The nodes of `[serve.broker] amqp` are tried in turn; when one stops, the
//! instance reconnects to the next and the queue's mirror there (the policy of
//! `deploy/rabbitmq/definitions.json`) still holds what was not acknowledged.

use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicQosOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::uri::{AMQPUri, AMQPUserInfo};
use lapin::{Channel, Connection, ConnectionProperties};
use tokio::sync::{mpsc, watch};

use super::Received;
use crate::SharedState;
use crate::dialects::rabbitmq::{MQTT_EXCHANGE, mqtt_topic};
use vesper_core::acl::Topics;

/// Deliveries an instance holds unacknowledged: a few writer batches, so a stopped instance
/// hands back little and the others share the load.
const PREFETCH: u16 = 2048;

/// Longest wait between attempts: the queue keeps the messages meanwhile, and a reconnect to a
/// node of one's own cluster is cheap, so the consumer comes back within seconds of a node.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The queue every instance consumes: the service account's own (RabbitMQ's resource check
/// allows the service account its `NAME.` queues).
pub fn queue_name(service_account: &str) -> String {
    format!("{service_account}.heartbeats")
}

/// The routing keys the queue is bound with: the device topics as the MQTT plugin turns them
/// into AMQP routing keys (`rabbit_mqtt_util:to_amqp`: `/` becomes `.`, `+` becomes `*`).
pub fn routing_keys(topics: &Topics) -> [String; 2] {
    [&topics.data, &topics.status].map(|template| {
        super::mqtt::subscription(template)
            .replace('/', ".")
            .replace('+', "*")
    })
}

/// Consumes until `stop`, reconnecting (to the next node) with backoff.
pub(super) async fn consume(
    state: &SharedState,
    nodes: &[String],
    tx: mpsc::Sender<Received>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(250);
    for node in nodes.iter().cycle() {
        let session = tokio::select! {
            ended = session(state, node, &tx) => ended,
            _ = crate::stopped(&mut stop) => return,
        };
        state
            .broker_connected
            .store(false, std::sync::atomic::Ordering::Relaxed);
        match session {
            Ok(()) => {
                backoff = Duration::from_millis(250);
                tracing::warn!(node = %node, "heartbeat consumer ended; reconnecting");
            }
            Err(e) => {
                tracing::warn!(node = %node, error = %e, retry_in = ?backoff, "heartbeat consumer disconnected");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = crate::stopped(&mut stop) => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection to one node: declare and bind the queue, then hand every delivery to the
/// writer until the connection or the consumer ends.
async fn session(
    state: &SharedState,
    node: &str,
    tx: &mpsc::Sender<Received>,
) -> Result<(), lapin::Error> {
    let account = state.config.serve.service_account.as_str();
    let mut uri: AMQPUri = node
        .parse()
        .map_err(|e: String| lapin::Error::from(std::io::Error::other(e)))?;
    uri.authority.userinfo = AMQPUserInfo {
        username: account.to_owned(),
        password: state.secret.service_password(account).expose().to_owned(),
    };
    let connection = Connection::connect_uri(uri, ConnectionProperties::default()).await?;
    let queue = queue_name(account);
    let channel = open_queue(&connection, &queue).await?;
    let topics = &state.config.mqtt.topics;
    for key in routing_keys(topics) {
        channel
            .queue_bind(
                queue.as_str().into(),
                MQTT_EXCHANGE.into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    channel
        .basic_qos(PREFETCH, BasicQosOptions::default())
        .await?;
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    state
        .broker_connected
        .store(true, std::sync::atomic::Ordering::Relaxed);
    tracing::info!(node = %node, queue = %queue, "heartbeat consumer connected");
    while let Some(delivery) = consumer.next().await {
        let delivery = delivery?;
        let topic = mqtt_topic(delivery.routing_key.as_str());
        let read =
            vesper_core::sightings::read(topics, &topic, &delivery.data, &vesper_store::now());
        match read {
            Ok(Some(sighting)) => {
                state
                    .metrics
                    .device_messages
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let received = Received {
                    sighting,
                    delivery: Some(delivery.acker),
                };
                if tx.send(received).await.is_err() {
                    break; // the writer is gone: shutting down
                }
            }
            other => {
                if let Err(e) = other {
                    tracing::info!(error = %e, "malformed device message ignored");
                }
                // Nothing to write: done with it.
                let _ = delivery.acker.ack(Default::default()).await;
            }
        }
    }
    Ok(())
}

/// A channel on which the queue exists: as the operator declared it (a mirrored classic queue
/// from the shipped definitions, or a quorum queue on three nodes or more), else declared here
/// as a durable classic queue.
async fn open_queue(connection: &Connection, queue: &str) -> Result<Channel, lapin::Error> {
    let probe = connection.create_channel().await?;
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    if probe
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await
        .is_ok()
    {
        return Ok(probe);
    }
    // The failed passive declaration closed that channel.
    let channel = connection.create_channel().await?;
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await?;
    Ok(channel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_is_bound_with_the_device_topics_as_routing_keys() {
        assert_eq!(
            routing_keys(&Topics::default()),
            ["vesper.*.data".to_owned(), "vesper.*.status".to_owned()]
        );
        assert_eq!(queue_name("vesper-backend"), "vesper-backend.heartbeats");
    }
}
