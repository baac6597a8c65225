//! `vesper boards import|doc`: boards from the firmware's platformio.ini.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Subcommand;

use vesper::boards;
use vesper::files::{write_atomic, write_private};

use super::Outcome;

#[derive(Subcommand)]
pub enum BoardsCommand {
    /// Read the ESP32 environments of a platformio.ini into config.toml's [[boards]]: shows the
    /// change as a diff, writes it only with --write.
    #[command(after_help = "\
From each [env:NAME] with platform = espressif32 (shared [env] values, extends and ${section.key}
are followed): name = NAME; hw_type and hw_version from -DBOARD_TYPE=\"BC\" -DBOARD_VERSION=\"02\" in
build_flags; chip from board (or board_build.mcu); flash_size from board_upload.flash_size;
flash_mode from board_build.flash_mode; partition_table from board_build.partitions, relative to
the configuration. A board of the same name is updated (its nvs_extra and other keys stay), a new
one is appended; boards the file does not have are kept. Comments stay as they are.
Example:
  vesper boards import firmware/platformio.ini            # show the diff
  vesper boards import firmware/platformio.ini --write    # apply it")]
    Import {
        /// The PlatformIO project file.
        #[arg(value_name = "PLATFORMIO_INI")]
        ini: PathBuf,
        /// Write the change into the configuration file (it is checked to load first).
        #[arg(long)]
        write: bool,
    },
    /// Write FIRMWARE_VARIANTS.md (beside platformio.ini) from the same environments.
    Doc {
        /// The PlatformIO project file.
        #[arg(
            value_name = "PLATFORMIO_INI",
            default_value = "firmware/platformio.ini"
        )]
        ini: PathBuf,
        /// Where to write (default: FIRMWARE_VARIANTS.md beside the project file).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Write nothing; exit 1 when the file differs from what would be written (for CI).
        #[arg(long)]
        check: bool,
    },
}

pub fn run(cmd: BoardsCommand, config_path: Option<&Path>) -> anyhow::Result<Outcome> {
    match cmd {
        BoardsCommand::Import { ini, write } => {
            let config = vesper::config::locate(config_path)?;
            let import = boards::import(&ini, &config)?;
            for (name, platform) in &import.skipped {
                println!("skipped [env:{name}]: platform `{platform}` is not espressif32");
            }
            for name in &import.kept {
                println!("kept board {name}: not in {}", ini.display());
            }
            if !import.changed() {
                println!("{} already matches {}", config.display(), ini.display());
            } else if write {
                write_private(&config, import.after.as_bytes())
                    .with_context(|| format!("cannot write {}", config.display()))?;
                print!("{}", import.diff(&config));
                println!("wrote {}", config.display());
            } else {
                print!("{}", import.diff(&config));
                println!("(nothing written: run again with --write to apply)");
            }
        }
        BoardsCommand::Doc { ini, out, check } => {
            let text = boards::variants_doc(&ini)?;
            let out = out.unwrap_or_else(|| {
                ini.parent()
                    .unwrap_or(Path::new("."))
                    .join(boards::VARIANTS_FILE)
            });
            if check {
                let current = std::fs::read_to_string(&out).unwrap_or_default();
                if current != text {
                    eprintln!(
                        "{} is stale: run `vesper boards doc {}`",
                        out.display(),
                        ini.display()
                    );
                    return Ok(Outcome::Problems);
                }
                println!("{} is up to date", out.display());
            } else {
                write_atomic(&out, text.as_bytes())
                    .with_context(|| format!("cannot write {}", out.display()))?;
                println!("wrote {}", out.display());
            }
        }
    }
    Ok(Outcome::Success)
}
