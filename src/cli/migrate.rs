//! `vesper migrate --from sqlite:PATH --to postgres://...`: moves a registry to PostgreSQL and
//! proves the copy table by table.

use std::io::Write as _;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::Args;

use vesper::registry::{Database, PgStore, Registry, migrate};

use super::Outcome;

#[derive(Args)]
#[command(after_help = "\
Copies devices, batches, their users, tokens, the audit log, the mail outbox and deploy runs in
one transaction (nothing is left half-copied), then reads both back and compares every table's
row count and SHA-256. Refuses a target that already holds a registry.

Stop `vesper serve` first (a registry written during the copy would not be in it), then:
  vesper migrate --from sqlite:/var/lib/vesper/data --to postgres://vesper:PASSWORD@db:5432/vesper
and set serve.database (or $VESPER_DATABASE_URL) to the same URL before starting again.
Firmware releases stay files: copy the OTA folder to storage every instance shares.")]
pub struct MigrateArgs {
    /// The SQLite registry: `sqlite:` and a data folder or its registry.sqlite3.
    #[arg(long, value_name = "sqlite:PATH")]
    from: Database,
    /// The empty PostgreSQL database (created beforehand, e.g. with `createdb`).
    #[arg(long, value_name = "postgres://USER:PASSWORD@HOST:PORT/DB")]
    to: Database,
}

pub fn migrate(args: MigrateArgs) -> anyhow::Result<Outcome> {
    let Database::Sqlite(path) = &args.from else {
        bail!(
            "--from must be a SQLite registry (sqlite:PATH), not {}",
            args.from
        );
    };
    let Database::Postgres(url) = &args.to else {
        bail!(
            "--to must be a PostgreSQL database (postgres://...), not {}",
            args.to
        );
    };
    let file = vesper::registry::registry_file(path);
    if !file.is_file() {
        bail!("no SQLite registry at {}", file.display());
    }
    let source = Arc::new(
        Registry::open_file(&file).with_context(|| format!("cannot open {}", file.display()))?,
    );
    let runtime = tokio::runtime::Runtime::new()?;
    let checks = runtime.block_on(async {
        let target = PgStore::connect(url)
            .await
            .with_context(|| format!("cannot use {}", args.to))?;
        let progress = |table: &str, rows: u64| {
            eprint!("\rcopying {table}: {rows} rows   ");
            let _ = std::io::stderr().flush();
        };
        let checks = migrate::sqlite_to_postgres(source, &target, &progress).await?;
        eprintln!();
        anyhow::Ok(checks)
    })?;
    println!(
        "{:<14} {:>10} {:>10}  {:<16} result",
        "table", "sqlite", "postgres", "sha256"
    );
    let mut all_match = true;
    for c in &checks {
        all_match &= c.matches();
        println!(
            "{:<14} {:>10} {:>10}  {:<16} {}",
            c.table,
            c.source_rows,
            c.target_rows,
            &c.source_sha256[..16],
            if c.matches() {
                "same".to_owned()
            } else {
                format!("DIFFERENT (postgres {})", &c.target_sha256[..16])
            }
        );
    }
    if !all_match {
        bail!("the copy differs from the source; do not switch to it");
    }
    println!(
        "copied and verified into {}; set serve.database to it and start vesper serve",
        args.to
    );
    Ok(Outcome::Success)
}
