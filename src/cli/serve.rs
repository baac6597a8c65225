//! `vesper serve`, `vesper token ...`: the sync backend and its access tokens.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use vesper::registry::Role;
use vesper::server::{self, ServeOptions};

use super::Outcome;

#[derive(Args)]
#[command(after_help = "\
The MQTT master secret comes from MQTT_SECRET (or serve.secret_file in the config); serve refuses
to start without it. Two listeners: the API (--listen) and the broker's auth routes (--auth-listen,
loopback by default). Point mosquitto-go-auth at the auth listener:
  auth_opt_http_host 127.0.0.1   auth_opt_http_port 8081
  auth_opt_http_getuser_uri /mqtt/auth/user   auth_opt_http_aclcheck_uri /mqtt/auth/acl
  auth_opt_http_superuser_uri /mqtt/auth/superuser
The registry is SQLite in the data folder, or PostgreSQL when serve.database (or
VESPER_DATABASE_URL) is postgres://USER:PASSWORD@HOST:PORT/DB: then several instances may share it
(move an existing registry with `vesper migrate`).
Logs go to stderr (RUST_LOG=debug for more); the bound addresses are printed on stdout.")]
pub struct ServeArgs {
    /// Folder of the registry database (default: serve.data_dir, else ./data beside the config).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Address of the API (default: serve.listen, else 127.0.0.1:8080; port 0 picks a free one).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Address of the MQTT auth routes (default: serve.auth_listen, else 127.0.0.1:8081).
    #[arg(long, value_name = "ADDR")]
    auth_listen: Option<SocketAddr>,
    /// How log lines are written: `text` (coloured only on a terminal, never with NO_COLOR set)
    /// or `json` (one object per line, for log collectors).
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// The same as `--log-format json` (kept for existing service files).
    #[arg(long, hide = true)]
    log_json: bool,
}

/// How `vesper serve` writes its log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a bearer token for a station or person; it is printed once, as the last word.
    Create {
        /// Who the token is for; recorded as the actor of every action it performs.
        name: String,
        /// admin (everything), technician (batches, flashing, assignment), viewer (read only) or
        /// publisher (uploads firmware releases and nothing else: for a firmware CI).
        #[arg(long)]
        role: Role,
        #[command(flatten)]
        data: DataDir,
    },
    /// List tokens (names and roles, never the tokens).
    List {
        #[command(flatten)]
        data: DataDir,
    },
    /// Revoke a token; it stops working at once.
    Revoke {
        name: String,
        #[command(flatten)]
        data: DataDir,
    },
}

/// Where the registry is, for commands that open it directly.
#[derive(Args)]
pub struct DataDir {
    /// The data folder (default: serve.data_dir from the configuration). The registry is in it
    /// unless the configuration or $VESPER_DATABASE_URL names a database: then that database,
    /// as for `vesper serve`.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

impl DataDir {
    /// The registry `vesper serve` reads: the configured database (`serve.database` or
    /// `$VESPER_DATABASE_URL`) when there is one, else SQLite in the data folder (the flag's, or
    /// `serve.data_dir`).
    pub fn open_store(&self, config: Option<&Path>) -> anyhow::Result<LocalStore> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let database = vesper::config::database(config)?;
        if let (Some(database), Some(dir)) = (&database, &self.data_dir) {
            eprintln!(
                "note: the registry is the configured database ({}), not {}: --data-dir names local files only",
                database,
                dir.display()
            );
        }
        let data_dir = match &database {
            Some(_) => self.data_dir.clone().unwrap_or_default(),
            None => self.resolve(config)?,
        };
        let store = runtime.block_on(vesper_store::open_store(database.as_ref(), &data_dir))?;
        Ok(LocalStore { runtime, store })
    }

    /// The data folder whose own SQLite file is the registry: refused, with the reason, when the
    /// configuration names a database elsewhere (for commands that copy the file itself).
    pub fn sqlite_folder(&self, config: Option<&Path>, command: &str) -> anyhow::Result<PathBuf> {
        let data_dir = self.resolve(config)?;
        match vesper::config::database(config)? {
            None => Ok(data_dir),
            Some(vesper::config::Database::Sqlite(file))
                if vesper::registry::registry_file(&file)
                    == data_dir.join(vesper::registry::DB_FILE) =>
            {
                Ok(data_dir)
            }
            Some(vesper::config::Database::Postgres(_)) => anyhow::bail!(
                "the registry is on PostgreSQL (serve.database or $VESPER_DATABASE_URL): {command} works on a SQLite registry in the data folder; use PostgreSQL's tools (pg_dump, replication)"
            ),
            Some(other) => anyhow::bail!(
                "the registry is {} (serve.database or $VESPER_DATABASE_URL), not the data folder's {}: {command} works on the data folder's registry",
                other,
                data_dir.join(vesper::registry::DB_FILE).display()
            ),
        }
    }

    /// The data dir from the flag, else from the configuration.
    pub fn resolve(&self, config: Option<&Path>) -> anyhow::Result<PathBuf> {
        match &self.data_dir {
            Some(dir) => Ok(dir.clone()),
            None => Ok(vesper::config::discover(config)?.serve.data_dir),
        }
    }
}

/// The registry for one command run on the backend host.
pub struct LocalStore {
    runtime: tokio::runtime::Runtime,
    store: std::sync::Arc<dyn vesper_store::Store>,
}

impl LocalStore {
    /// Runs one registry call to its end.
    pub fn run<'a, T>(
        &'a self,
        call: impl FnOnce(
            &'a dyn vesper_store::Store,
        )
            -> std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>,
    ) -> T {
        self.runtime.block_on(call(self.store.as_ref()))
    }
}

/// The actor recorded for commands run on the backend host.
pub fn local_actor() -> String {
    format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    )
}

fn init_logging(format: LogFormat) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.with_ansi(colour_on_stderr()).init(),
    }
}

/// Colour codes only for a person at a terminal: never in a file, a pipe or journald, and never
/// when `NO_COLOR` is set to anything (<https://no-color.org>).
fn colour_on_stderr() -> bool {
    use std::io::IsTerminal as _;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

pub fn serve(args: ServeArgs, config: Option<&Path>) -> anyhow::Result<Outcome> {
    let config = vesper::config::discover(config)?;
    let secret = server::load_secret(&config)?;
    init_logging(if args.log_json {
        LogFormat::Json
    } else {
        args.log_format
    });
    let options = ServeOptions {
        data_dir: args
            .data_dir
            .unwrap_or_else(|| config.serve.data_dir.clone()),
        listen: args.listen.unwrap_or(config.serve.listen),
        auth_listen: args.auth_listen.unwrap_or(config.serve.auth_listen),
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(server::run(
        config,
        secret,
        options,
        server::shutdown_signal(),
    ))?;
    Ok(Outcome::Success)
}

pub fn token(cmd: TokenCommand, config: Option<&Path>) -> anyhow::Result<Outcome> {
    match cmd {
        TokenCommand::Create { name, role, data } => {
            let store = data.open_store(config)?;
            let actor = local_actor();
            let token = store.run(|s| s.create_token(&name, role, &actor))?;
            println!("token for {name} ({role}); store it now, it is not shown again: {token}");
        }
        TokenCommand::List { data } => {
            let store = data.open_store(config)?;
            for t in store.run(|s| s.tokens())? {
                let state = t
                    .revoked_at
                    .map(|at| format!("revoked {at}"))
                    .unwrap_or_else(|| "active".into());
                println!(
                    "{:<24} {:<10} created {}  {state}",
                    t.name, t.role, t.created_at
                );
            }
        }
        TokenCommand::Revoke { name, data } => {
            let store = data.open_store(config)?;
            let actor = local_actor();
            store.run(|s| s.revoke_token(&name, &actor))?;
            println!("revoked {name}");
        }
    }
    Ok(Outcome::Success)
}
