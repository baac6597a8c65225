//! Sending labels to a printer: PDFs to a CUPS queue with `lp`, ZPL over raw TCP (port 9100).

use std::io::Write as _;
use std::time::Duration;

use super::Format;
use vesper_core::config::Labels;

/// Why labels did not reach the printer.
#[derive(Debug, thiserror::Error)]
pub enum PrintError {
    #[error("no printer configured: set labels.printer (a CUPS queue) to print PDFs")]
    NoPdfPrinter,
    #[error("no printer configured: set labels.zpl_printer (HOST:9100) to print ZPL")]
    NoZplPrinter,
    #[error("cannot run lp (is CUPS installed?): {0}")]
    Lp(std::io::Error),
    #[error("lp refused the job: {0}")]
    LpFailed(String),
    #[error("cannot reach the label printer at {addr}: {reason}")]
    Unreachable { addr: String, reason: String },
}

/// Prints `bytes` on the configured printer for `format`; returns where they went.
pub fn send_to_printer(
    bytes: &[u8],
    format: Format,
    config: &Labels,
) -> Result<String, PrintError> {
    match format {
        Format::Pdf => {
            let printer = config.printer.clone().ok_or(PrintError::NoPdfPrinter)?;
            let mut child = std::process::Command::new("lp")
                .args(["-d", &printer])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .map_err(PrintError::Lp)?;
            if let Some(mut stdin) = child.stdin.take() {
                stdin.write_all(bytes).map_err(PrintError::Lp)?;
            }
            let out = child.wait_with_output().map_err(PrintError::Lp)?;
            if !out.status.success() {
                return Err(PrintError::LpFailed(
                    String::from_utf8_lossy(&out.stderr).trim().to_owned(),
                ));
            }
            Ok(printer)
        }
        Format::Zpl => {
            let addr = config.zpl_printer.clone().ok_or(PrintError::NoZplPrinter)?;
            let unreachable = |reason: String| PrintError::Unreachable {
                addr: addr.clone(),
                reason,
            };
            let sockaddr = std::net::ToSocketAddrs::to_socket_addrs(&addr.as_str())
                .map_err(|e| unreachable(e.to_string()))?
                .next()
                .ok_or_else(|| unreachable("the address does not resolve".into()))?;
            let mut stream =
                std::net::TcpStream::connect_timeout(&sockaddr, Duration::from_secs(5))
                    .map_err(|e| unreachable(e.to_string()))?;
            stream
                .write_all(bytes)
                .map_err(|e| unreachable(e.to_string()))?;
            Ok(addr)
        }
    }
}
