//! Benchmark: 1,000 simulated devices connect through mosquitto + the vesper plugin + `vesper
//! serve`, publish one heartbeat each, and are provisioned in the registry.
//!
//! Run with `scripts/bench-heartbeats` (it builds the plugin in release mode first). Prints the
//! time until all are provisioned and the rates. Not a timed test.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

use vesper::config::Config;
use vesper::credentials::MasterSecret;
use vesper::registry::{FlashReport, NewBatch, Status};
use vesper::server::{self, ServeOptions};

const DEVICES: usize = 1000;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::main]
async fn main() {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .init();
    }
    let devices = std::env::var("DEVICES")
        .ok()
        .and_then(|d| d.parse().ok())
        .unwrap_or(DEVICES);
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
    let config = Config::load(&dir.path().join("config.toml")).unwrap();
    let board = config.board("bellcore-v2").unwrap().clone();
    let secret = MasterSecret::new("bench-secret-of-at-least-32-bytes", "bench").unwrap();
    let any = "127.0.0.1:0".parse().unwrap();
    let options = ServeOptions {
        data_dir: dir.path().join("data"),
        listen: any,
        auth_listen: any,
    };
    let running = server::start(config, secret.clone(), &options)
        .await
        .unwrap();
    let registry = running.state.registry.clone();

    // The batch, flashed (as stations would report it).
    let batch = registry
        .create_batch(
            &NewBatch {
                board: &board,
                quantity: devices as u32,
                subscription_plan: "standard".into(),
                available_outputs: 8,
            },
            "bench",
        )
        .unwrap();
    for (i, d) in batch.devices.iter().enumerate() {
        let mac = format!(
            "24:0A:C4:{:02X}:{:02X}:{:02X}",
            i >> 16 & 0xff,
            i >> 8 & 0xff,
            i & 0xff
        );
        let report = FlashReport {
            chip: "ESP32".into(),
            mac,
            firmware_version: "1.0.0".into(),
            station: "bench".into(),
            force: false,
        };
        registry
            .flashed(&d.serial_number, &report, "bench")
            .unwrap();
    }

    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {mqtt_port} 127.0.0.1\nallow_anonymous false\npersistence false\nuser {}\nmax_connections -1\n\
             plugin {}\nplugin_opt_http_host 127.0.0.1\nplugin_opt_http_port {}\n\
             plugin_opt_http_superuser_uri /mqtt/auth/superuser\nplugin_opt_auth_cache_seconds 60\nplugin_opt_acl_cache_seconds 60\nlog_dest stderr\n",
            String::from_utf8_lossy(&Command::new("id").arg("-un").output().unwrap().stdout).trim(),
            plugin.display(),
            running.auth_addr.port()
        ),
    )
    .unwrap();
    let mut mosquitto = Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("mosquitto.log")).unwrap())
        .spawn()
        .expect("mosquitto");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", mqtt_port)).is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Heartbeats sent before the listener's first subscription have no one to go to.
    let waited = Instant::now();
    while !running
        .state
        .broker_connected
        .load(std::sync::atomic::Ordering::Relaxed)
    {
        assert!(
            waited.elapsed() < Duration::from_secs(20),
            "the heartbeat listener did not subscribe: {}",
            std::fs::read_to_string(dir.path().join("mosquitto.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let start = Instant::now();
    let mut tasks = Vec::with_capacity(devices);
    for d in &batch.devices {
        let sn = d.serial_number.clone();
        let password = secret
            .device_password(&sn.parse().unwrap())
            .expose()
            .to_owned();
        tasks.push(tokio::spawn(async move {
            let mut o = MqttOptions::new(sn.clone(), "127.0.0.1", mqtt_port);
            o.set_credentials(sn.clone(), password);
            o.set_keep_alive(Duration::from_secs(60));
            let (client, mut eventloop) = AsyncClient::new(o, 4);
            client
                .publish(
                    format!("vesper/{sn}/data"),
                    QoS::AtLeastOnce,
                    false,
                    r#"{"type":"heartbeat","fw":"1.0.0"}"#,
                )
                .await
                .unwrap();
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => break,
                    Ok(_) => {}
                    Err(e) => panic!("{sn}: {e}"),
                }
            }
            let _ = client.disconnect().await;
            let _ = tokio::time::timeout(Duration::from_secs(1), eventloop.poll()).await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let published = start.elapsed();
    loop {
        let provisioned = registry.stats().unwrap().by_status[Status::Provisioned.as_str()]
            .as_i64()
            .unwrap() as usize;
        if provisioned == devices {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "only {provisioned} of {devices} provisioned"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let total = start.elapsed();
    println!("{devices} devices through mosquitto + plugin + vesper serve:");
    println!(
        "  all connected and heartbeats acknowledged: {:.2} s",
        published.as_secs_f64()
    );
    println!(
        "  all provisioned in the registry:           {:.2} s  ({:.0} heartbeats/s)",
        total.as_secs_f64(),
        devices as f64 / total.as_secs_f64()
    );
    let _ = mosquitto.kill();
    let _ = mosquitto.wait();
    running.stop().await.unwrap();
}
