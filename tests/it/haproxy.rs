//! The shipped `deploy/haproxy.cfg` through Debian's HAProxy: valid (`haproxy -c`), and a device
//! that logs in through it to mosquitto with the plugin and `vesper serve` is provisioned by its
//! heartbeat, as it would be straight to mosquitto (TCP mode passes every byte through). The
//! storm it is for is measured by `scripts/bench-heartbeats`. Only `maxconn` is lowered here (HAProxy
//! refuses to start when it cannot raise its open-file limit to twice that).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::PubAckReason;

use crate::broker::{backend_and_broker, connect, flashed, free_port, listener_connected, publish};

/// HAProxy with the shipped configuration, its ports moved; killed (by PID) when dropped.
struct HaProxy {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl HaProxy {
    fn start(broker_port: u16) -> HaProxy {
        let shipped =
            std::fs::read_to_string(crate::support::root().join("deploy/haproxy.cfg")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("haproxy.cfg");
        // Every mosquitto listener (127.0.0.1:8884 and up) becomes the one test broker; two
        // descriptors a connection: `maxconn` within the open-file limit a test may not raise.
        let mut text = shipped
            .replace("0.0.0.0:8883", &format!("127.0.0.1:{port}"))
            .replace("maxconn 100000", "maxconn 4000");
        for listener in 8884..8884 + 64 {
            text = text.replace(
                &format!("127.0.0.1:{listener} "),
                &format!("127.0.0.1:{broker_port} "),
            );
        }
        assert!(text.contains(&format!("127.0.0.1:{broker_port} ")));
        std::fs::write(&config, text).unwrap();
        let check = Command::new("haproxy")
            .arg("-c")
            .arg("-f")
            .arg(&config)
            .output()
            .expect("haproxy (./scripts/test installs it)");
        assert!(
            check.status.success(),
            "haproxy -c: {}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        let mut proxy = HaProxy {
            child: Command::new("haproxy")
                .arg("-db")
                .arg("-f")
                .arg(&config)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
            port,
            _dir: dir,
        };
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return proxy;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let _ = proxy.child.kill();
        let _ = proxy.child.wait();
        panic!("haproxy did not listen on {port}");
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_device_behind_the_shipped_haproxy_is_provisioned() {
    let (app, broker) = backend_and_broker(60).await;
    listener_connected(&app).await;
    let proxy = HaProxy::start(broker.port);
    let (_, sns) = app.batch(1).await;
    let sn = &sns[0];
    flashed(&app, sn, "24:0A:C4:00:00:01").await;
    let waiting = app.wait_in_background(sn, "provisioned");
    let password = crate::backend_support::device_password(sn);
    let (client, mut eventloop) = connect(proxy.port, sn, sn, &password).await.unwrap();
    let ack = publish(
        &client,
        &mut eventloop,
        &format!("vesper/{sn}/data"),
        r#"{"type":"heartbeat","fw":"1.0.0"}"#,
    )
    .await;
    assert_eq!(ack, PubAckReason::Success);
    let answer = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("provisioned within 10 s")
        .unwrap();
    assert!(answer.status().is_success());
    // A wrong password is refused through the proxy as straight.
    assert!(connect(proxy.port, sn, sn, "wrong").await.is_err());
    drop(proxy);
    app.stop().await;
}
