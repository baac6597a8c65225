//! The command line: argument definitions and dispatch. Each subcommand's work lives in the
//! library; these modules only parse, call and print.

mod backup;
mod boards;
mod config_cmd;
mod doctor;
mod firmware;
mod flash;
mod labels;
mod mail;
mod migrate;
mod mqtt;
mod nvs;
mod partitions;
mod report;
mod serve;
mod sn;
mod station;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Vesper Station: the manufacturing workstation and sync backend for ESP32-based devices.
#[derive(Parser)]
#[command(name = "vesper", version, about, long_about = None)]
#[command(
    after_help = "Try the whole flow without hardware: `vesper demo`. For a real bench, start with `vesper init`\nin an empty folder, then `vesper config check`, then `vesper` (the station)."
)]
pub struct Cli {
    /// Configuration file (default: $VESPER_CONFIG, ./config.toml, ~/.config/vesper/config.toml).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Without a command: the station.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// The workstation: dashboard, batches, devices, the provision wizard and the bench.
    Station(station::StationArgs),
    /// The bench: provision boards as they are plugged in (--headless: no screen, for a jig).
    Bench(station::BenchArgs),
    /// Everything on one machine with simulated boards: try the whole flow in a minute.
    Demo(station::DemoArgs),
    /// Write config.toml and the partition tables it references into a folder.
    Init(config_cmd::InitArgs),
    /// Check the configuration and show what it resolves to.
    #[command(subcommand)]
    Config(config_cmd::ConfigCommand),
    /// Make and check serial numbers (PV-YYMDD-BBTTR-XXXXX).
    #[command(subcommand)]
    Sn(sn::SnCommand),
    /// MQTT credentials and access rules.
    #[command(subcommand)]
    Mqtt(mqtt::MqttCommand),
    /// NVS partition images: generate (drop-in for nvs_partition_gen.py), dump, per-device images.
    #[command(subcommand)]
    Nvs(nvs::NvsCommand),
    /// ESP-IDF partition tables.
    #[command(subcommand)]
    Partitions(partitions::PartitionsCommand),
    /// Run the sync backend: registry, manufacturing API, MQTT auth for mosquitto-go-auth.
    Serve(serve::ServeArgs),
    /// Bearer tokens for the backend's API.
    #[command(subcommand)]
    Token(serve::TokenCommand),
    /// Check a deployment end to end; each failure says how to fix it.
    Doctor(doctor::DoctorArgs),
    /// Back up the registry (while serving), the OTA tree and the configuration.
    Backup(backup::BackupArgs),
    /// Restore a backup onto a data folder no backend is running on.
    Restore(backup::RestoreArgs),
    /// Move the registry from SQLite to PostgreSQL, verified table by table.
    Migrate(migrate::MigrateArgs),
    /// E-mail: send a test message, list the outbox, revive a dead message.
    #[command(subcommand)]
    Mail(mail::MailCommand),
    /// Boards from the firmware's platformio.ini: import into config.toml, FIRMWARE_VARIANTS.md.
    #[command(subcommand)]
    Boards(boards::BoardsCommand),
    /// Firmware releases in the OTA layout.
    #[command(subcommand)]
    Firmware(firmware::FirmwareCommand),
    /// Flash boards: bundle + per-device NVS, verified, several ports in parallel.
    Flash(flash::FlashArgs),
    /// Run a simulated ESP32 on a pseudo-terminal (for tests, demos and trying things out).
    Sim(flash::SimArgs),
    /// List serial ports (USB bridges ESP32 boards use first), or watch boards come and go.
    Ports(flash::PortsArgs),
    /// Labels with QR codes: PDF sheets and rolls, ZPL for thermal printers.
    Labels(labels::LabelsArgs),
    /// End-of-line test reports: a batch's yield and records, as JSON or JUnit XML.
    #[command(subcommand)]
    Report(report::ReportCommand),
}

/// How a command ended, when it did not fail outright.
pub enum Outcome {
    Success,
    /// The command ran and found problems it has already reported (exit 1).
    Problems,
}

/// Parses the command line, runs the command and maps the result to an exit code.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let config = cli.config.as_deref();
    let command = cli.command.unwrap_or_else(|| {
        Command::Station(
            <station::StationArgs as clap::FromArgMatches>::from_arg_matches(
                &<station::StationArgs as clap::Args>::augment_args(clap::Command::new("station"))
                    .get_matches_from(["station"]),
            )
            .expect("station defaults parse"),
        )
    });
    let result = match command {
        Command::Station(args) => station::station(args, config),
        Command::Bench(args) => station::bench(args, config),
        Command::Demo(args) => station::demo(args),
        Command::Init(args) => config_cmd::init(args),
        Command::Config(cmd) => config_cmd::run(cmd, config),
        Command::Sn(cmd) => sn::run(cmd),
        Command::Mqtt(cmd) => mqtt::run(cmd, config),
        Command::Nvs(cmd) => nvs::run(cmd, config),
        Command::Partitions(cmd) => partitions::run(cmd),
        Command::Serve(args) => serve::serve(args, config),
        Command::Token(cmd) => serve::token(cmd, config),
        Command::Boards(cmd) => boards::run(cmd, config),
        Command::Firmware(cmd) => firmware::run(cmd, config),
        Command::Mail(cmd) => mail::run(cmd, config),
        Command::Backup(args) => backup::backup(args, config),
        Command::Doctor(args) => doctor::doctor(args, config),
        Command::Restore(args) => backup::restore(args, config),
        Command::Migrate(args) => migrate::migrate(args),
        Command::Flash(args) => flash::flash(args, config),
        Command::Sim(args) => flash::sim(args),
        Command::Ports(args) => flash::ports(args),
        Command::Labels(args) => labels::run(args, config),
        Command::Report(cmd) => report::run(cmd, config),
    };
    match result {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Problems) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn command_line_definition_is_consistent() {
        use clap::CommandFactory as _;
        super::Cli::command().debug_assert();
    }
}
