//! What the benchmarks that run `vesper serve` in-process share (included with `#[path]`): the
//! example configuration written for a folder, and the backend started on loopback ports with
//! the benchmarks' master secret.

use std::path::{Path, PathBuf};

use vesper::config::{Config, Machine};
use vesper::credentials::MasterSecret;
use vesper::server::{self, Running, ServeOptions};

/// The benchmarks' master secret (devices' passwords derive from it).
pub fn secret() -> MasterSecret {
    MasterSecret::new("vesper-bench-secret-0123456789abcdef", "bench").unwrap()
}

/// The example configuration as if `vesper init` wrote it in `dir`.
pub fn example_config(dir: &Path) -> Config {
    let machine = Machine {
        station_name: "bench".into(),
        firmware_cache: dir.join("cache"),
    };
    Config::example_at(&dir.join("config.toml"), &machine)
}

/// `vesper serve` with `config`, its registry in `data_dir`, both listeners on free loopback ports.
pub async fn start(config: Config, data_dir: PathBuf) -> Running {
    let options = ServeOptions {
        data_dir,
        listen: "127.0.0.1:0".parse().unwrap(),
        auth_listen: "127.0.0.1:0".parse().unwrap(),
    };
    server::start(config, secret(), &options).await.unwrap()
}
