//! What the broker benchmarks share: a free loopback port, and Debian's mosquitto started with a
//! config and waited for (included by `heartbeats.rs` and `device.rs` with `#[path]`).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A free port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The user running the benchmark (mosquitto started as root would switch to `mosquitto`).
fn user() -> String {
    String::from_utf8_lossy(&Command::new("id").arg("-un").output().unwrap().stdout)
        .trim()
        .to_owned()
}

/// Starts mosquitto with `config` (the listener line and the shipped configs' limits and
/// `set_tcp_nodelay` are added here) and waits for its port.
pub fn mosquitto(dir: &std::path::Path, name: &str, port: u16, config: &str) -> Child {
    let conf = dir.join(format!("{name}.conf"));
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous false\npersistence false\nuser {}\n\
             max_connections -1\nmax_packet_size 8192\nmax_queued_messages 100000\nmax_inflight_messages 100\n\
             set_tcp_nodelay true\n\
             log_dest stderr\nlog_type error\n{config}",
            user()
        ),
    )
    .unwrap();
    let mut child = Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(format!("{name}.log"))).unwrap())
        .spawn()
        .expect("mosquitto (apt-get install mosquitto)");
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return child;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("mosquitto did not start; see {name}.log");
}
