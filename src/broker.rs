//! A small embedded MQTT 3.1.1 broker, so `vesper demo` runs with no services installed.
//!
//! Every login and every publish, subscribe and delivery is asked of a [`Gate`]: in the demo
//! that is the backend's own credential and ACL code, the same answers mosquitto gets through
//! the go-auth HTTP routes. It is a demo broker on loopback, not a production one: sessions are
//! clean (a reconnecting client subscribes again, as the heartbeat listener does), QoS 1 and 2
//! are acknowledged but not retransmitted, and retained messages and wills are ignored. Deploy
//! mosquitto with the plugin or go-auth for real lines.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{
    ConnAck, ConnectReturnCode, Packet, PubAck, PubComp, PubRec, Publish, SubAck,
    SubscribeReasonCode, UnsubAck,
};
use rumqttc::mqttbytes::{self, QoS};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::acl::Access;

/// Largest packet accepted or sent.
const MAX_PACKET: usize = 256 * 1024;
/// Time a new connection has to send CONNECT.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages queued for a slow subscriber; beyond this, messages to it are dropped.
const QUEUE: usize = 1024;

/// A boxed future, for the object-safe [`Gate`].
pub type GateFuture<'a> = Pin<Box<dyn Future<Output = bool> + Send + 'a>>;

/// Who may log in and what they may do.
pub trait Gate: Send + Sync + 'static {
    /// May this client log in?
    fn login<'a>(
        &'a self,
        username: &'a str,
        password: &'a str,
        client_id: &'a str,
    ) -> GateFuture<'a>;
    /// May `username` publish to (`Write`), subscribe to (`Subscribe`) or receive (`Read`) `topic`?
    fn allow<'a>(&'a self, username: &'a str, topic: &'a str, access: Access) -> GateFuture<'a>;
}

/// A subscription of one connected client.
struct Subscription {
    filter: String,
    qos: QoS,
}

/// A connected client, as the router sees it.
struct Session {
    /// Tells connections apart when a client id is taken over.
    serial: u64,
    username: String,
    subscriptions: Vec<Subscription>,
    outbox: mpsc::Sender<Publish>,
}

#[derive(Default)]
struct Router {
    sessions: Mutex<HashMap<String, Session>>,
    next_serial: AtomicU64,
}

impl Router {
    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a client; a client id already in use is taken over (its connection ends).
    fn join(&self, client_id: &str, username: &str) -> (u64, mpsc::Receiver<Publish>) {
        let (outbox, inbox) = mpsc::channel(QUEUE);
        let serial = self.next_serial.fetch_add(1, Ordering::Relaxed);
        let session = Session {
            serial,
            username: username.to_owned(),
            subscriptions: Vec::new(),
            outbox,
        };
        self.sessions().insert(client_id.to_owned(), session);
        (serial, inbox)
    }

    fn leave(&self, client_id: &str, serial: u64) {
        let mut sessions = self.sessions();
        if sessions.get(client_id).is_some_and(|s| s.serial == serial) {
            sessions.remove(client_id);
        }
    }

    fn subscribe(&self, client_id: &str, filter: &str, qos: QoS) {
        if let Some(s) = self.sessions().get_mut(client_id) {
            s.subscriptions.retain(|sub| sub.filter != filter);
            s.subscriptions.push(Subscription {
                filter: filter.to_owned(),
                qos,
            });
        }
    }

    fn unsubscribe(&self, client_id: &str, filter: &str) {
        if let Some(s) = self.sessions().get_mut(client_id) {
            s.subscriptions.retain(|sub| sub.filter != filter);
        }
    }

    /// The clients a message on `topic` goes to, with their usernames and the QoS to use.
    fn audience(&self, topic: &str, qos: QoS) -> Vec<(String, QoS, mpsc::Sender<Publish>)> {
        self.sessions()
            .values()
            .filter_map(|s| {
                let best = s
                    .subscriptions
                    .iter()
                    .filter(|sub| mqttbytes::matches(topic, &sub.filter))
                    .map(|sub| sub.qos)
                    .max_by_key(|q| *q as u8)?;
                // Delivered at the lower of the subscription's and the message's QoS.
                let qos = std::cmp::min_by_key(best, qos, |q| *q as u8);
                Some((s.username.clone(), qos, s.outbox.clone()))
            })
            .collect()
    }
}

/// A running broker.
pub struct Broker {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Broker {
    /// Listens on `listen` (port 0 picks a free port) and serves until [`Broker::stop`].
    pub async fn start(listen: SocketAddr, gate: Arc<dyn Gate>) -> std::io::Result<Broker> {
        Ok(Self::serve(TcpListener::bind(listen).await?, gate))
    }

    /// Serves on a listener bound beforehand.
    pub fn serve(listener: TcpListener, gate: Arc<dyn Gate>) -> Broker {
        let addr = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
        let (stop, stopping) = watch::channel(false);
        let router = Arc::new(Router::default());
        let task = tokio::spawn(accept(listener, router, gate, stopping));
        tracing::info!(%addr, "embedded MQTT broker listening");
        Broker { addr, stop, task }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes the listener and every connection.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn accept(
    listener: TcpListener,
    router: Arc<Router>,
    gate: Arc<dyn Gate>,
    mut stopping: watch::Receiver<bool>,
) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let connection = Connection {
                        stream,
                        read: BytesMut::with_capacity(4096),
                        router: router.clone(),
                        gate: gate.clone(),
                        connected: false,
                    };
                    let stop = stopping.clone();
                    connections.spawn(async move {
                        if let Err(reason) = connection.serve(stop).await {
                            tracing::debug!(%peer, %reason, "MQTT connection closed");
                        }
                    });
                }
                Err(e) => tracing::warn!(error = %e, "cannot accept an MQTT connection"),
            },
            _ = stopping.changed() => break,
        }
        while connections.try_join_next().is_some() {}
    }
    connections.shutdown().await;
}

/// One client connection.
struct Connection {
    stream: TcpStream,
    read: BytesMut,
    router: Arc<Router>,
    gate: Arc<dyn Gate>,
    /// CONNECT was received.
    connected: bool,
}

impl Connection {
    async fn next_packet(&mut self) -> Result<Packet, String> {
        loop {
            // Anything but CONNECT first is not an MQTT client: do not wait for more of it.
            if !self.connected && self.read.first().is_some_and(|b| b >> 4 != 1) {
                return Err("not an MQTT client".into());
            }
            match Packet::read(&mut self.read, MAX_PACKET) {
                Ok(packet) => return Ok(packet),
                Err(mqttbytes::Error::InsufficientBytes(_)) => {}
                Err(e) => return Err(format!("malformed packet: {e:?}")),
            }
            if self
                .stream
                .read_buf(&mut self.read)
                .await
                .map_err(|e| e.to_string())?
                == 0
            {
                return Err("client closed the connection".into());
            }
        }
    }

    async fn send(&mut self, packet: Packet) -> Result<(), String> {
        let mut out = BytesMut::with_capacity(packet.size() + 5);
        packet
            .write(&mut out, MAX_PACKET)
            .map_err(|e| format!("cannot encode: {e:?}"))?;
        self.stream.write_all(&out).await.map_err(|e| e.to_string())
    }

    async fn serve(mut self, mut stopping: watch::Receiver<bool>) -> Result<(), String> {
        let connect = match tokio::time::timeout(CONNECT_TIMEOUT, self.next_packet()).await {
            Ok(Ok(Packet::Connect(c))) => c,
            Ok(Ok(_)) => return Err("first packet was not CONNECT".into()),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err("no CONNECT in time".into()),
        };
        self.connected = true;
        let refuse = |code| Packet::ConnAck(ConnAck::new(code, false));
        let Some(login) = &connect.login else {
            self.send(refuse(ConnectReturnCode::NotAuthorized)).await?;
            return Err("no username".into());
        };
        let client_id = if connect.client_id.is_empty() {
            format!("anonymous-{}", rand::random::<u64>())
        } else {
            connect.client_id.clone()
        };
        let allowed = self
            .gate
            .login(&login.username, &login.password, &client_id)
            .await;
        if !allowed {
            self.send(refuse(ConnectReturnCode::BadUserNamePassword))
                .await?;
            return Err(format!("login refused for {}", login.username));
        }
        let username = login.username.clone();
        let (serial, mut inbox) = self.router.join(&client_id, &username);
        self.send(Packet::ConnAck(ConnAck::new(
            ConnectReturnCode::Success,
            false,
        )))
        .await?;
        // MQTT: no packet within one and a half keep-alive periods ends the connection.
        let idle = match connect.keep_alive {
            0 => Duration::from_secs(24 * 3600),
            k => Duration::from_millis(u64::from(k) * 1500),
        };
        let result = self
            .session(&client_id, &username, &mut inbox, idle, &mut stopping)
            .await;
        self.router.leave(&client_id, serial);
        result
    }

    async fn session(
        &mut self,
        client_id: &str,
        username: &str,
        inbox: &mut mpsc::Receiver<Publish>,
        idle: Duration,
        stopping: &mut watch::Receiver<bool>,
    ) -> Result<(), String> {
        let mut next_pkid: u16 = 0;
        loop {
            tokio::select! {
                packet = tokio::time::timeout(idle, self.next_packet()) => {
                    let packet = packet.map_err(|_| "keep-alive expired".to_owned())??;
                    if !self.handle(client_id, username, packet).await? {
                        return Ok(());
                    }
                }
                outgoing = inbox.recv() => {
                    // None: taken over by a newer connection with the same client id.
                    let Some(mut publish) = outgoing else {
                        return Err("client id taken over".into());
                    };
                    if publish.qos != QoS::AtMostOnce {
                        next_pkid = next_pkid.checked_add(1).unwrap_or(1);
                        publish.pkid = next_pkid;
                    }
                    self.send(Packet::Publish(publish)).await?;
                }
                _ = stopping.changed() => return Ok(()),
            }
        }
    }

    /// Answers one packet; `false` when the client disconnected.
    async fn handle(
        &mut self,
        client_id: &str,
        username: &str,
        packet: Packet,
    ) -> Result<bool, String> {
        match packet {
            Packet::Publish(publish) => self.publish(username, publish).await?,
            Packet::PubRel(rel) => self.send(Packet::PubComp(PubComp::new(rel.pkid))).await?,
            Packet::Subscribe(subscribe) => {
                let mut codes = Vec::with_capacity(subscribe.filters.len());
                for f in &subscribe.filters {
                    let allowed = mqttbytes::valid_filter(&f.path)
                        && self.gate.allow(username, &f.path, Access::Subscribe).await;
                    if allowed {
                        self.router.subscribe(client_id, &f.path, f.qos);
                        codes.push(SubscribeReasonCode::Success(f.qos));
                    } else {
                        codes.push(SubscribeReasonCode::Failure);
                    }
                }
                self.send(Packet::SubAck(SubAck::new(subscribe.pkid, codes)))
                    .await?;
            }
            Packet::Unsubscribe(unsubscribe) => {
                for topic in &unsubscribe.topics {
                    self.router.unsubscribe(client_id, topic);
                }
                self.send(Packet::UnsubAck(UnsubAck::new(unsubscribe.pkid)))
                    .await?;
            }
            Packet::PingReq => self.send(Packet::PingResp).await?,
            Packet::Disconnect => return Ok(false),
            Packet::Connect(_) => return Err("a second CONNECT".into()),
            // Acknowledgements of what we sent: nothing is retransmitted, so nothing to do.
            _ => {}
        }
        Ok(true)
    }

    async fn publish(&mut self, username: &str, publish: Publish) -> Result<(), String> {
        let allowed = mqttbytes::valid_topic(&publish.topic)
            && self
                .gate
                .allow(username, &publish.topic, Access::Write)
                .await;
        // MQTT 3.1.1 has no negative acknowledgement: a refused message is acknowledged and dropped.
        match publish.qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.send(Packet::PubAck(PubAck::new(publish.pkid))).await?,
            QoS::ExactlyOnce => self.send(Packet::PubRec(PubRec::new(publish.pkid))).await?,
        }
        if !allowed {
            tracing::info!(username, topic = %publish.topic, "publish denied");
            return Ok(());
        }
        for (reader, qos, outbox) in self.router.audience(&publish.topic, publish.qos) {
            if !self.gate.allow(&reader, &publish.topic, Access::Read).await {
                continue;
            }
            let mut copy = publish.clone();
            (copy.qos, copy.retain, copy.dup, copy.pkid) = (qos, false, false, 0);
            // A full queue means a stuck subscriber: drop the message rather than stall the sender.
            let _ = outbox.try_send(copy);
        }
        Ok(())
    }
}

/// The backend's own login and ACL code answers the embedded broker.
impl Gate for vesper_backend::BackendGate {
    fn login<'a>(
        &'a self,
        username: &'a str,
        password: &'a str,
        client_id: &'a str,
    ) -> GateFuture<'a> {
        Box::pin(vesper_backend::BackendGate::login(
            self, username, password, client_id,
        ))
    }

    fn allow<'a>(&'a self, username: &'a str, topic: &'a str, access: Access) -> GateFuture<'a> {
        Box::pin(vesper_backend::BackendGate::allow(
            self, username, topic, access,
        ))
    }
}
