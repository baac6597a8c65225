//! Benchmark: the broker path under a reconnect storm, through mosquitto + the vesper plugin +
//! `vesper serve`, and the same broker with a static password file as the ceiling.
//!
//! 1. Storm: `DEVICES` (default 10,000) flashed devices reconnect (as a fleet does after a broker
//!    restart), each within a random `JITTER_MS` (default 3,000 ms; the firmware's reconnect
//!    backoff has jitter; 0 = all in the same instant), publishes one heartbeat (QoS 1) and stays
//!    connected; timed until every device is provisioned in the registry. No client may time out.
//! 2. Under attack: while `BAD_RATE` (default 1,000) bad logins per second arrive from other
//!    clients, 1,000 legitimate devices log in at 200 per second; their login latency (TCP
//!    connect to CONNACK) p50 / p99.
//! 3. Slow backend: a connected device publishes (QoS 1) every 20 ms while `BAD_RATE` unknown
//!    logins per second arrive and the backend answers every question (logins, topic checks,
//!    the control feed) only after 2 s (a proxy in front of it adds the delay): how long each
//!    message takes to reach a subscriber (the service account), p50 / p99 / max, before and
//!    during the flood, and how many never arrive.
//!    The plugin asks logins off mosquitto's thread, so the flood must not hold the device up.
//! 4. Ceiling: the same storm against mosquitto with a static password file (no plugin, no
//!    backend) and the same work: a subscriber with a persistent QoS 1 session on every device's
//!    data, as the backend's listener, timed until it has every heartbeat.
//! 5. Same-instant storm (run between 2 and 3): every device at once (a broker restart) into a
//!    fresh mosquitto + plugin, straight and through HAProxy with the shipped
//!    `deploy/haproxy.cfg`; the kernel's listen overflow counter (`nstat`) before and after.
//!
//! The backend is the `vesper serve` binary in its own process (as deployed), not a server in
//! the benchmark's runtime, which also runs the 10,000 simulated devices.
//!
//! Run with `scripts/bench-heartbeats` (it builds the binary and the plugin in release mode and
//! raises the open file limit). Not a timed test.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, ConnectReturnCode, Event, EventLoop, MqttOptions, Packet, QoS};
use tokio::sync::watch;

use vesper::credentials::MasterSecret;
use vesper::registry::{FlashReport, NewBatch, Registry, Status};

#[path = "support/broker.rs"]
mod broker;
#[path = "support/slow_proxy.rs"]
mod slow_proxy;
use broker::{free_port, mosquitto};
use slow_proxy::slow_proxy;

const DEVICES: usize = 10_000;
const JITTER_MS: usize = 3_000;
const BAD_RATE: usize = 1_000;
/// A device gives up on one connection attempt after this long (then it would retry).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|d| d.parse().ok())
        .unwrap_or(default)
}

/// Connects one client; the time from the start of the TCP connect to the CONNACK.
async fn login(
    port: u16,
    id: &str,
    user: &str,
    password: &str,
) -> Result<(Duration, AsyncClient, EventLoop), String> {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_credentials(user, password);
    o.set_keep_alive(Duration::from_secs(60));
    let (client, mut eventloop) = AsyncClient::new(o, 4);
    // A device waits as long for its TCP connection as for its CONNACK (the broker's listen
    // backlog is 100, so a storm's SYNs are retransmitted by the kernel).
    let mut network = rumqttc::NetworkOptions::new();
    network.set_connection_timeout(CLIENT_TIMEOUT.as_secs());
    eventloop.set_network_options(network);
    let start = Instant::now();
    let answer = tokio::time::timeout(CLIENT_TIMEOUT, async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(a))) if a.code == ConnectReturnCode::Success => {
                    return Ok(());
                }
                Ok(Event::Incoming(Packet::ConnAck(a))) => return Err(format!("{:?}", a.code)),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    })
    .await
    .map_err(|_| "timed out".to_owned())?;
    answer.map(|()| (start.elapsed(), client, eventloop))
}

/// A device: logs in, publishes one heartbeat, waits for its PUBACK, then stays connected
/// until `stop`. Returns its login latency.
async fn device(
    port: u16,
    sn: String,
    password: String,
    delay: Duration,
    mut stop: watch::Receiver<bool>,
) -> Result<Duration, String> {
    tokio::time::sleep(delay).await;
    let (took, client, mut eventloop) = login(port, &sn, &sn, &password).await?;
    client
        .publish(
            format!("vesper/{sn}/data"),
            QoS::AtLeastOnce,
            false,
            r#"{"type":"heartbeat","fw":"1.0.0","uptime":3}"#,
        )
        .await
        .map_err(|e| e.to_string())?;
    tokio::time::timeout(CLIENT_TIMEOUT, async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    })
    .await
    .map_err(|_| "no PUBACK".to_owned())??;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                e = eventloop.poll() => if e.is_err() { return },
                _ = stop.changed() => {
                    let _ = client.disconnect().await;
                    let _ = tokio::time::timeout(Duration::from_millis(200), eventloop.poll()).await;
                    return;
                }
            }
        }
    });
    Ok(took)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// Connects every device at once; returns (latencies, failures, time until all acknowledged).
async fn storm(
    port: u16,
    devices: &[(String, String)],
    jitter: Duration,
    stop: &watch::Receiver<bool>,
) -> (Vec<Duration>, Vec<String>, Duration) {
    use rand::Rng;
    let start = Instant::now();
    let mut rng = rand::rng();
    let tasks: Vec<_> = devices
        .iter()
        .map(|(sn, pw)| {
            let delay = jitter.mul_f64(rng.random_range(0.0..1.0));
            tokio::spawn(device(port, sn.clone(), pw.clone(), delay, stop.clone()))
        })
        .collect();
    let (mut latencies, mut failures) = (Vec::new(), Vec::new());
    for t in tasks {
        match t.await.unwrap() {
            Ok(d) => latencies.push(d),
            Err(e) => failures.push(e),
        }
    }
    latencies.sort();
    (latencies, failures, start.elapsed())
}

/// The kernel's count of connections dropped because a listen queue was full
/// (`nstat -az TcpExtListenOverflows`, from Debian's iproute2).
fn listen_overflows() -> u64 {
    let out = Command::new("nstat")
        .args(["-az", "TcpExtListenOverflows"])
        .output()
        .expect("nstat (apt-get install iproute2)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("TcpExtListenOverflows"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .expect("nstat prints TcpExtListenOverflows")
}

/// Debian's HAProxy with the shipped `deploy/haproxy.cfg`, listening on `port` and handing
/// sessions to mosquitto's loopback listeners on `broker_ports`; waits for its port. HAProxy needs two descriptors
/// a connection and refuses to start when it cannot raise its open-file limit to that: where the
/// hard limit is lower than the devices need (a container without CAP_SYS_RESOURCE), several
/// processes share the port (HAProxy binds with SO_REUSEPORT, the kernel spreads the SYNs), each
/// with `maxconn` lowered to what it may open and `rate-limit sessions` divided among them.
fn haproxy(
    dir: &std::path::Path,
    shipped: &str,
    port: u16,
    broker_ports: &[u16],
    devices: usize,
) -> Vec<std::process::Child> {
    assert!(shipped.contains("0.0.0.0:8883") && shipped.contains("127.0.0.1:8884"));
    let hard_limit: usize = String::from_utf8_lossy(
        &Command::new("sh")
            .args(["-c", "ulimit -Hn"])
            .output()
            .unwrap()
            .stdout,
    )
    .trim()
    .parse()
    .unwrap_or(usize::MAX);
    let (mut processes, mut maxconn) = (1, 100_000);
    if hard_limit < 2 * maxconn + 100 {
        maxconn = hard_limit.saturating_sub(2_000) / 2;
        // Half again as many connections as devices: the kernel's spread is not exact.
        processes = (devices * 3 / 2).div_ceil(maxconn);
    }
    let shipped_rate = shipped_rate(shipped);
    let rate = shipped_rate / processes;
    let mut text = shipped
        .replace("0.0.0.0:8883", &format!("127.0.0.1:{port}"))
        .replace("maxconn 100000", &format!("maxconn {maxconn}"))
        .replace(
            &format!("rate-limit sessions {shipped_rate}"),
            &format!("rate-limit sessions {rate}"),
        );
    for (shipped_port, port) in (8884..).zip(broker_ports) {
        text = text.replace(
            &format!("127.0.0.1:{shipped_port}"),
            &format!("127.0.0.1:{port}"),
        );
    }
    let config = dir.join("haproxy.cfg");
    std::fs::write(&config, text).unwrap();
    println!(
        "  (HAProxy: {processes} process(es) of maxconn {maxconn}, {rate} sessions/s each; open-file hard limit {hard_limit})"
    );
    let children: Vec<_> = (0..processes)
        .map(|i| {
            Command::new("haproxy")
                .arg("-db")
                .arg("-f")
                .arg(&config)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.join(format!("haproxy-{i}.log"))).unwrap())
                .spawn()
                .expect("haproxy (apt-get install haproxy)")
        })
        .collect();
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            // Every process has bound (each binds before it serves).
            std::thread::sleep(Duration::from_millis(300));
            return children;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    for mut child in children {
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("haproxy did not start; see haproxy-*.log");
}

fn provisioned(registry: &Registry) -> usize {
    registry.stats().unwrap().by_status.get(Status::Provisioned) as usize
}

/// Logs a device in, again until it is let in: against a slow backend the first login is
/// refused while the plugin's worker asks, and the retry is answered from its cache.
async fn login_with_retries(port: u16, sn: &str, password: &str) -> (AsyncClient, EventLoop) {
    for _ in 0..20 {
        if let Ok((_, client, eventloop)) = login(port, sn, sn, password).await {
            return (client, eventloop);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("{sn} was never let in");
}

/// A connected device publishes (QoS 1) every 20 ms for `during`; returns how long each
/// message took to reach a subscriber (the backend's service account on the same broker),
/// and how many never came.
async fn message_delays(
    device: &AsyncClient,
    sn: &str,
    received: &mut tokio::sync::mpsc::UnboundedReceiver<(u64, Instant)>,
    during: Duration,
) -> (Vec<Duration>, usize) {
    let mut sent_at = std::collections::HashMap::new();
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < during {
        n += 1;
        sent_at.insert(n, Instant::now());
        device
            .publish(
                format!("vesper/{sn}/data"),
                QoS::AtLeastOnce,
                false,
                format!(r#"{{"type":"data","n":{n}}}"#),
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut delays = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while delays.len() < sent_at.len() {
        let Ok(Some((n, at))) = tokio::time::timeout_at(deadline.into(), received.recv()).await
        else {
            break;
        };
        if let Some(sent) = sent_at.get(&n) {
            delays.push(at - *sent);
        }
    }
    delays.sort();
    let lost = sent_at.len() - delays.len();
    (delays, lost)
}

/// The service account's subscription to every device's data on `port`: each message's number
/// and when it arrived.
async fn subscriber(
    port: u16,
    password: &str,
) -> tokio::sync::mpsc::UnboundedReceiver<(u64, Instant)> {
    let (client, mut eventloop) = {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match login(port, "vesper-backend", "vesper-backend", password).await {
                Ok((_, client, eventloop)) => break (client, eventloop),
                Err(e) if attempt > 20 => panic!("the service account was never let in: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    };
    client
        .subscribe("vesper/+/data", QoS::AtLeastOnce)
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let at = Instant::now();
                    let n = serde_json::from_slice::<serde_json::Value>(&p.payload)
                        .ok()
                        .and_then(|v| v["n"].as_u64());
                    if let Some(n) = n
                        && tx.send((n, at)).is_err()
                    {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    rx
}

/// Bad logins at `rate` per second (each a distinct username and password) until `stop`.
fn bad_logins(
    port: u16,
    rate: usize,
    stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let sent = Arc::new(AtomicUsize::new(0));
        let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1) as u64));
        let mut i = 0usize;
        while !*stop.borrow() {
            tick.tick().await;
            i += 1;
            let sent = sent.clone();
            tokio::spawn(async move {
                let user = format!("attacker-{i}");
                let _ = login(port, &user, &user, &format!("guess-{i}")).await;
                sent.fetch_add(1, Ordering::Relaxed);
            });
        }
        sent.load(Ordering::Relaxed)
    })
}

/// Phase 5, the same-instant storm of a restart: every device at once into a fresh mosquitto
/// and plugin (asking the running `vesper serve` on `auth_port`), straight and through HAProxy,
/// with the kernel's listen overflow counter and the fullest accept queue of each listener.
async fn same_instant_storms(
    dir: &std::path::Path,
    storm_devices: &[(String, String)],
    plugin_config: &str,
    auth_port: u16,
) {
    let count = storm_devices.len();
    let shipped = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/haproxy.cfg"),
    )
    .unwrap();
    // Every device at once into a fresh mosquitto + plugin, straight (the backlog of 100
    // overflows, the kernel drops SYNs, devices retry after 1, 3, 7 s) and through HAProxy.
    for through_haproxy in [false, true] {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let broker_port = free_port();
        let name = if through_haproxy {
            "behind-haproxy"
        } else {
            "straight"
        };
        // Behind HAProxy, mosquitto listens as many times on loopback as the shipped
        // configuration has servers, as deploy/README.md says.
        let extra: Vec<u16> = if through_haproxy {
            (1..haproxy_servers(&shipped))
                .map(|_| free_port())
                .collect()
        } else {
            Vec::new()
        };
        let listeners: String = extra
            .iter()
            .map(|p| format!("listener {p} 127.0.0.1\n"))
            .collect();
        let mut fresh = mosquitto(
            dir,
            name,
            broker_port,
            &format!("{listeners}{plugin_config}"),
        );
        let backends: Vec<u16> = std::iter::once(broker_port).chain(extra).collect();
        let mut watched: Vec<(u16, &str)> = backends.iter().map(|&p| (p, "mosquitto")).collect();
        let (port, proxy) = if through_haproxy {
            let port = free_port();
            watched.insert(0, (port, "HAProxy"));
            (port, Some(haproxy(dir, &shipped, port, &backends, count)))
        } else {
            (broker_port, None)
        };
        watched.push((auth_port, "vesper serve auth"));
        let sampler = AcceptQueues::watch(&watched);
        let overflows = listen_overflows();
        let (stop, stopped) = watch::channel(false);
        let (latencies, failures, acknowledged) =
            storm(port, storm_devices, Duration::ZERO, &stopped).await;
        let overflowed = listen_overflows().saturating_sub(overflows);
        let fullest = sampler.finish();
        println!(
            "Same-instant storm, {count} devices at once, {}",
            if through_haproxy {
                "through HAProxy (deploy/haproxy.cfg) + mosquitto + plugin + vesper serve"
            } else {
                "straight to mosquitto + plugin + vesper serve"
            }
        );
        println!(
            "  {name}: connected and acknowledged {:.2} s ({} of {count}, {} failed); login p50 {} p99 {}; listen overflows +{overflowed}",
            acknowledged.as_secs_f64(),
            latencies.len(),
            failures.len(),
            ms(percentile(&latencies, 0.5)),
            ms(percentile(&latencies, 0.99)),
        );
        println!("    fullest accept queues (ss, every 20 ms): {fullest}");
        let _ = stop.send(true);
        tokio::time::sleep(Duration::from_secs(1)).await;
        for mut process in proxy.into_iter().flatten() {
            let _ = process.kill();
            let _ = process.wait();
        }
        let _ = fresh.kill();
        let _ = fresh.wait();
    }
}

/// The shipped `rate-limit sessions`: new sessions per second handed to mosquitto.
fn shipped_rate(shipped: &str) -> usize {
    shipped
        .lines()
        .find_map(|l| l.trim().strip_prefix("rate-limit sessions "))
        .and_then(|n| n.trim().parse().ok())
        .expect("deploy/haproxy.cfg sets rate-limit sessions")
}

/// How many mosquitto listeners the shipped `deploy/haproxy.cfg` hands sessions to.
fn haproxy_servers(shipped: &str) -> usize {
    shipped
        .lines()
        .filter(|l| l.trim_start().starts_with("server listener"))
        .count()
}

/// The fullest each watched listener's accept queue got (`ss -ltn`: Recv-Q of a listening
/// socket is its queue, Send-Q its backlog), sampled every 20 ms on a thread of its own: where a
/// storm overflows, if it does.
struct AcceptQueues {
    stop: Arc<std::sync::atomic::AtomicBool>,
    sampler: std::thread::JoinHandle<Vec<(u16, &'static str, u64, u64)>>,
}

impl AcceptQueues {
    fn watch(listeners: &[(u16, &'static str)]) -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (listeners, stopping) = (listeners.to_vec(), stop.clone());
        let sampler = std::thread::spawn(move || {
            let mut fullest: Vec<(u16, &'static str, u64, u64)> =
                listeners.iter().map(|&(p, n)| (p, n, 0, 0)).collect();
            while !stopping.load(Ordering::Relaxed) {
                let out = Command::new("ss").args(["-ltnH"]).output();
                let text = out.map(|o| o.stdout).unwrap_or_default();
                for line in String::from_utf8_lossy(&text).lines() {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    let [_, queue, backlog, local, ..] = fields[..] else {
                        continue;
                    };
                    let port = local.rsplit(':').next().and_then(|p| p.parse::<u16>().ok());
                    let (Ok(queue), Ok(backlog)) = (queue.parse::<u64>(), backlog.parse::<u64>())
                    else {
                        continue;
                    };
                    for entry in fullest.iter_mut().filter(|e| Some(e.0) == port) {
                        entry.2 = entry.2.max(queue);
                        entry.3 = backlog;
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            fullest
        });
        Self { stop, sampler }
    }

    /// Stops sampling; "NAME QUEUE/BACKLOG" for each listener.
    fn finish(self) -> String {
        self.stop.store(true, Ordering::Relaxed);
        let fullest = self.sampler.join().unwrap();
        fullest
            .iter()
            .map(|(_, name, queue, backlog)| format!("{name} {queue}/{backlog}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[tokio::main]
async fn main() {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .init();
    }
    let count = env_number("DEVICES", DEVICES);
    // Only phase 5 (tuning deploy/haproxy.cfg): SAME_INSTANT_ONLY=1.
    let same_instant_only = env_number("SAME_INSTANT_ONLY", 0) == 1;
    let bad_rate = env_number("BAD_RATE", BAD_RATE);
    let jitter = Duration::from_millis(env_number("JITTER_MS", JITTER_MS) as u64);
    let plugin = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("libvesper_mosquitto.so");
    assert!(
        plugin.exists(),
        "build the plugin first: cargo build --release -p vesper-mosquitto"
    );
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in vesper::config::EXAMPLE_TABLES {
        std::fs::create_dir_all(dir.path().join(path).parent().unwrap()).unwrap();
        std::fs::write(dir.path().join(path), text).unwrap();
    }
    let mqtt_port = free_port();
    std::fs::write(
        dir.path().join("config.toml"),
        format!(
            "{}\n[serve.broker]\nhost = \"127.0.0.1\"\nport = {mqtt_port}\n",
            vesper::config::EXAMPLE
        ),
    )
    .unwrap();
    let config = vesper::config::load(&dir.path().join("config.toml")).unwrap();
    let board = config.board("bellcore-v2").unwrap().clone();
    let secret = MasterSecret::new("bench-secret-of-at-least-32-bytes", "bench").unwrap();
    let registry = Registry::open(&dir.path().join("data")).unwrap();

    // The storm's devices and the later legitimate logins, flashed as stations report them.
    let legit = 1_000;
    let mut devices = Vec::with_capacity(count + legit);
    // Batches hold at most 10,000 devices: as many as needed.
    let mut left = count + legit;
    while left > 0 {
        let quantity = left.min(10_000);
        let batch = registry
            .create_batch(
                &NewBatch {
                    board: &board,
                    quantity: quantity as u32,
                    subscription_plan: "standard".into(),
                    available_outputs: 8,
                },
                "bench",
            )
            .unwrap();
        devices.extend(batch.devices);
        left -= quantity;
    }
    for (i, d) in devices.iter().enumerate() {
        let report = FlashReport {
            chip: "ESP32".into(),
            mac: format!(
                "24:0A:C4:{:02X}:{:02X}:{:02X}",
                i >> 16 & 0xff,
                i >> 8 & 0xff,
                i & 0xff
            ),
            firmware_version: "1.0.0".into(),
            station: "bench".into(),
            force: false,
        };
        registry
            .flashed(&d.serial_number, &report, "bench")
            .unwrap();
    }
    let credentials: Vec<(String, String)> = devices
        .iter()
        .map(|d| {
            let password = secret
                .device_password(&d.serial_number.parse().unwrap())
                .expose()
                .to_owned();
            (d.serial_number.clone(), password)
        })
        .collect();
    let (storm_devices, later) = credentials.split_at(count);

    // The backend as it is deployed: the `vesper serve` binary, its own process and runtime.
    let (api_port, auth_port) = (free_port(), free_port());
    let binary = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("vesper");
    assert!(binary.exists(), "build it first: cargo build --release");
    let mut serve = Command::new(&binary)
        .arg("--config")
        .arg(dir.path().join("config.toml"))
        .args(["serve", "--listen", &format!("127.0.0.1:{api_port}")])
        .args(["--auth-listen", &format!("127.0.0.1:{auth_port}")])
        .env("MQTT_SECRET", "bench-secret-of-at-least-32-bytes")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("serve.log")).unwrap())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let plugin_config = format!(
        "plugin {}\nplugin_opt_http_host 127.0.0.1\nplugin_opt_http_port {auth_port}\n\
         plugin_opt_auth_cache_seconds 60\nplugin_opt_acl_cache_seconds 60\n{}",
        plugin.display(),
        if std::env::var("LOCAL_ACL").as_deref() == Ok("false") {
            "plugin_opt_local_acl false\n"
        } else {
            "plugin_opt_local_acl true\nplugin_opt_service_account vesper-backend\n"
        }
    );
    let mut broker = mosquitto(dir.path(), "plugin", mqtt_port, &plugin_config);
    let waited = Instant::now();
    loop {
        let health = http
            .get(format!("http://127.0.0.1:{api_port}/healthz"))
            .send()
            .await;
        if let Ok(r) = health
            && r.text()
                .await
                .unwrap_or_default()
                .contains("\"broker\":\"connected\"")
        {
            break;
        }
        assert!(
            waited.elapsed() < Duration::from_secs(30),
            "the heartbeat listener did not subscribe: {}",
            std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let logins_asked = || {
        let http = http.clone();
        async move {
            let text = http
                .get(format!("http://127.0.0.1:{auth_port}/metrics"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            text.lines()
                .find_map(|l| l.strip_prefix("vesper_auth_requests_total{route=\"user\"} "))
                .and_then(|n| n.trim().parse::<u64>().ok())
                .unwrap_or(0)
        }
    };

    if !same_instant_only {
        // 1. The storm.
        let (stop, stopped) = watch::channel(false);
        let asked_before = logins_asked().await;
        let start = Instant::now();
        let (latencies, failures, acknowledged) =
            storm(mqtt_port, storm_devices, jitter, &stopped).await;
        while provisioned(&registry) < latencies.len() && start.elapsed() < Duration::from_secs(120)
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let all_provisioned = start.elapsed();
        let done = provisioned(&registry);
        println!(
            "Reconnect storm: {count} devices within {} ms through mosquitto + vesper plugin + vesper serve",
            jitter.as_millis()
        );
        println!(
            "  connected and heartbeat acknowledged: {:.2} s ({:.0} logins/s); {} timed out or failed",
            acknowledged.as_secs_f64(),
            latencies.len() as f64 / acknowledged.as_secs_f64(),
            failures.len()
        );
        println!(
            "  all provisioned in the registry:      {:.2} s ({done} of {count})",
            all_provisioned.as_secs_f64()
        );
        println!(
            "  login latency p50 {} p99 {}; backend login questions: {}",
            ms(percentile(&latencies, 0.5)),
            ms(percentile(&latencies, 0.99)),
            logins_asked().await - asked_before
        );
        if let Some(f) = failures.first() {
            println!("  first failure: {f}");
        }
        let _ = stop.send(true);
        tokio::time::sleep(Duration::from_secs(1)).await;

        // 2. Legitimate logins while bad logins flood in.
        let (stop_bad, bad_stopped) = watch::channel(false);
        let attack = bad_logins(mqtt_port, bad_rate, bad_stopped);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (stop_legit, legit_stopped) = watch::channel(false);
        let mut tick = tokio::time::interval(Duration::from_millis(5));
        let mut tasks = Vec::with_capacity(later.len());
        let under_attack = Instant::now();
        for (sn, pw) in later {
            tick.tick().await;
            tasks.push(tokio::spawn(device(
                mqtt_port,
                sn.clone(),
                pw.clone(),
                Duration::ZERO,
                legit_stopped.clone(),
            )));
        }
        let (mut good, mut bad) = (Vec::new(), 0);
        for t in tasks {
            match t.await.unwrap() {
                Ok(d) => good.push(d),
                Err(_) => bad += 1,
            }
        }
        let attack_time = under_attack.elapsed();
        let _ = stop_bad.send(true);
        let attackers = attack.await.unwrap();
        let _ = stop_legit.send(true);
        good.sort();
        println!(
            "Under attack: {} legitimate logins at 200/s while {bad_rate} bad logins/s arrive ({attackers} sent in {:.1} s)",
            later.len(),
            attack_time.as_secs_f64()
        );
        println!(
            "  legitimate login latency p50 {} p99 {}; {bad} failed",
            ms(percentile(&good, 0.5)),
            ms(percentile(&good, 0.99))
        );
    }
    let _ = broker.kill();
    let _ = broker.wait();

    // 5 (run here, while the backend is up).
    same_instant_storms(dir.path(), storm_devices, &plugin_config, auth_port).await;
    if same_instant_only {
        let _ = serve.kill();
        let _ = serve.wait();
        return;
    }

    // 3. A slow backend and a flood of unknown logins: a connected device's messages.
    let slow_port = slow_proxy(
        format!("http://127.0.0.1:{auth_port}"),
        Duration::from_secs(2),
    )
    .await;
    let slow_mqtt = free_port();
    let mut slow_broker = mosquitto(
        dir.path(),
        "slow-backend",
        slow_mqtt,
        &format!(
            "plugin {}\nplugin_opt_http_host 127.0.0.1\nplugin_opt_http_port {slow_port}\n\
             plugin_opt_local_acl true\nplugin_opt_service_account vesper-backend\n",
            plugin.display()
        ),
    );
    let mut received = subscriber(
        slow_mqtt,
        secret.service_password("vesper-backend").expose(),
    )
    .await;
    let (sn, password) = &later[0];
    let (client, mut eventloop) = login_with_retries(slow_mqtt, sn, password).await;
    tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    // Let the control feed be read through the slow proxy (it vouches for the device).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (quiet, quiet_lost) =
        message_delays(&client, sn, &mut received, Duration::from_secs(5)).await;
    let (stop_flood, flood_stopped) = watch::channel(false);
    let flood = bad_logins(slow_mqtt, bad_rate, flood_stopped);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (flooded, flooded_lost) =
        message_delays(&client, sn, &mut received, Duration::from_secs(10)).await;
    let _ = stop_flood.send(true);
    let flooders = flood.await.unwrap();
    println!(
        "Slow backend (every answer after 2 s): a connected device's messages (QoS 1, every 20 ms), publish to subscriber"
    );
    for (what, delays, lost) in [
        ("alone", &quiet, quiet_lost),
        (
            &*format!("{bad_rate} unknown logins/s ({flooders} sent)"),
            &flooded,
            flooded_lost,
        ),
    ] {
        println!(
            "  {what}: {} messages, p50 {} p99 {} max {}; {lost} lost",
            delays.len(),
            ms(percentile(delays, 0.5)),
            ms(percentile(delays, 0.99)),
            ms(*delays.last().unwrap_or(&Duration::ZERO))
        );
    }
    let _ = slow_broker.kill();
    let _ = slow_broker.wait();
    let _ = Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status();
    let _ = serve.wait();

    // 4. The ceiling: mosquitto alone, a static password file, and the same work: a subscriber
    //    with a persistent QoS 1 session on every device's data (as the backend's listener),
    //    timed until it has every heartbeat.
    let service_password = secret
        .service_password("vesper-backend")
        .expose()
        .to_owned();
    let passwords = dir.path().join("passwords");
    let text: String = storm_devices
        .iter()
        .chain(std::iter::once(&(
            "vesper-backend".to_owned(),
            service_password.clone(),
        )))
        .map(|(sn, pw)| format!("{sn}:{pw}\n"))
        .collect();
    std::fs::write(&passwords, text).unwrap();
    let hashed = Command::new("mosquitto_passwd")
        .arg("-U")
        .arg(&passwords)
        .status()
        .expect("mosquitto_passwd (apt-get install mosquitto)");
    assert!(hashed.success());
    let port = free_port();
    let mut alone = mosquitto(
        dir.path(),
        "password-file",
        port,
        &format!("password_file {}\nacl_file {}\n", passwords.display(), {
            let acl = dir.path().join("acl");
            std::fs::write(
                &acl,
                "user vesper-backend\ntopic read vesper/+/data\n\npattern write vesper/%u/data\n",
            )
            .unwrap();
            acl.display().to_string()
        }),
    );
    let heard = Arc::new(AtomicUsize::new(0));
    let listener = {
        let mut o = MqttOptions::new("vesper-backend", "127.0.0.1", port);
        o.set_credentials("vesper-backend", service_password.as_str());
        o.set_clean_session(false);
        o.set_keep_alive(Duration::from_secs(60));
        let (client, mut eventloop) = AsyncClient::new(o, 1000);
        client
            .subscribe("vesper/+/data", QoS::AtLeastOnce)
            .await
            .unwrap();
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => break,
                Ok(_) => {}
                Err(e) => panic!("the subscriber cannot subscribe: {e}"),
            }
        }
        let heard = heard.clone();
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(_))) => {
                        heard.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        })
    };
    let (stop, stopped) = watch::channel(false);
    let start = Instant::now();
    let (latencies, failures, acknowledged) = storm(port, storm_devices, jitter, &stopped).await;
    while heard.load(Ordering::Relaxed) < latencies.len()
        && start.elapsed() < Duration::from_secs(120)
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let all_heard = start.elapsed();
    let _ = stop.send(true);
    println!(
        "Ceiling: the same storm against mosquitto with a static password file (no plugin) and the same subscriber"
    );
    println!(
        "  connected and heartbeat acknowledged: {:.2} s ({:.0} logins/s); {} failed; login p50 {} p99 {}",
        acknowledged.as_secs_f64(),
        latencies.len() as f64 / acknowledged.as_secs_f64(),
        failures.len(),
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99))
    );
    println!(
        "  every heartbeat at the subscriber:    {:.2} s ({} of {count})",
        all_heard.as_secs_f64(),
        heard.load(Ordering::Relaxed)
    );
    listener.abort();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = alone.kill();
    let _ = alone.wait();
}
