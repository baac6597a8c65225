//! `vesper partitions show`.

use std::path::PathBuf;

use clap::Subcommand;

use vesper::partitions::{self, TABLE_OFFSET};

use super::Outcome;

#[derive(Subcommand)]
pub enum PartitionsCommand {
    /// Show a partition table's resolved offsets and sizes (CSV or binary; detected).
    Show {
        /// The table: a CSV as in ESP-IDF, or the 3072-byte binary flashed at 0x8000.
        table: PathBuf,
        /// Also check that the table fits a flash of this size (e.g. 4MB).
        #[arg(long, value_name = "SIZE")]
        flash_size: Option<String>,
        /// Name of the NVS partition to point out.
        #[arg(long, default_value = partitions::DEFAULT_NVS_PARTITION)]
        nvs: String,
    },
}

pub fn run(cmd: PartitionsCommand) -> anyhow::Result<Outcome> {
    let PartitionsCommand::Show {
        table,
        flash_size,
        nvs,
    } = cmd;
    let table = vesper::files::partition_table(&table)?;
    print!("{}", table.describe());
    println!(
        "table at 0x{TABLE_OFFSET:x}; partitions end at 0x{:x}",
        table.end()
    );
    match table.nvs(&nvs) {
        Ok(region) => println!(
            "nvs partition `{nvs}`: offset 0x{:x}, size 0x{:x}",
            region.offset, region.size
        ),
        Err(e) => println!("no usable nvs partition: {e}"),
    }
    if let Some(size) = flash_size {
        let bytes = partitions::parse_size(&size)
            .ok_or_else(|| anyhow::anyhow!("`{size}` is not a size such as 4MB"))?;
        table.check_fits(bytes)?;
        println!("fits a {size} flash");
    }
    Ok(Outcome::Success)
}
