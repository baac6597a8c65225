//! `vesper labels`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;

use vesper::client::ApiClient;
use vesper::files::write_atomic;
use vesper::labels::{self, Format, Stock};
use vesper::serial::SerialNumber;

use super::Outcome;

#[derive(Args)]
#[command(after_help = "\
Examples:
  vesper labels --batch B-0042 -o batch.pdf                  (A4 sheet, Avery L7160)
  vesper labels --batch B-0042 --stock letter-5160 --skip 7 -o batch.pdf   (7 labels already used)
  vesper labels --sn PV-26A18-BC02R-X7KQA --stock roll-2x1in --format zpl -o label.zpl --print
Stocks: a4-l7160, letter-5160, roll-62x29, roll-2x1in, roll-4x6in, and [[labels.stocks]] from the
configuration. --batch reads the backend (backend.url, token in VESPER_TOKEN).")]
pub struct LabelsArgs {
    /// Every device of a batch, from the backend.
    #[arg(long, conflicts_with = "sn", required_unless_present = "sn")]
    batch: Option<String>,
    /// Serial numbers (type, revision and date come from the number).
    #[arg(long, num_args = 1.., value_name = "SN")]
    sn: Vec<SerialNumber>,
    /// Label stock (default: labels.stock in the configuration, else a4-l7160).
    #[arg(long)]
    stock: Option<String>,
    #[arg(long, default_value = "pdf", value_name = "pdf|zpl")]
    format: Format,
    /// Labels already used on the first sheet.
    #[arg(long, default_value_t = 0)]
    skip: u32,
    /// Output file.
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    /// Also print: PDF to labels.printer with `lp`, ZPL to labels.zpl_printer over TCP.
    #[arg(long)]
    print: bool,
}

pub fn run(args: LabelsArgs, config_path: Option<&Path>) -> anyhow::Result<Outcome> {
    let config = vesper::config::discover(config_path).ok();
    let custom = config
        .as_ref()
        .map(|c| c.labels.stocks.clone())
        .unwrap_or_default();
    let stock_name = args
        .stock
        .clone()
        .or_else(|| config.as_ref().map(|c| c.labels.stock.clone()))
        .unwrap_or_else(|| "a4-l7160".into());
    let stock = Stock::find(&stock_name, &custom)?;
    let data: Vec<labels::LabelData> = match &args.batch {
        Some(id) => {
            let config = config
                .as_ref()
                .context("--batch needs a configuration with backend.url")?;
            let client = ApiClient::from_config(config)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let batch = runtime.block_on(client.batch_record(id))?;
            batch.devices.iter().map(labels::from_device).collect()
        }
        None => args
            .sn
            .iter()
            .map(|sn| labels::from_serial(sn, None))
            .collect(),
    };
    let (bytes, _) = labels::render(&data, &stock, args.format, args.skip)?;
    write_atomic(&args.output, &bytes)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    eprintln!(
        "wrote {} labels on {} to {}",
        data.len(),
        stock.name,
        args.output.display()
    );
    if args.print {
        let labels_config = config.as_ref().map(|c| c.labels.clone());
        print(&args.output, &bytes, args.format, labels_config.as_ref()).with_context(|| {
            format!(
                "printing failed; the file is kept at {}",
                args.output.display()
            )
        })?;
    }
    Ok(Outcome::Success)
}

fn print(
    path: &Path,
    bytes: &[u8],
    format: Format,
    config: Option<&vesper::config::Labels>,
) -> anyhow::Result<()> {
    let none = vesper::config::Labels::default();
    let to = vesper::labels::send_to_printer(bytes, format, config.unwrap_or(&none))
        .with_context(|| format!("{}", path.display()))?;
    eprintln!("sent to {to}");
    Ok(())
}
