//! Labels: every board leaves the bench with one. Serial number in clear text, a QR code of it,
//! hardware type and version, batch and date in small print; as a PDF for sheets and roll
//! printers, or ZPL for Zebra-compatible thermal printers.
//!
//! Depends on `vesper-core` only (the device record, serial numbers, label stocks): the backend
//! renders labels for its API and the station prints them, without either knowing the other.

mod font;
pub mod layout;
pub mod pdf;
mod print;
pub mod zpl;

pub use font::Face;
pub use layout::{Area, LabelData, LayoutError, Placed};
pub use print::{PrintError, send_to_printer};
pub use vesper_core::stock::{self, Stock, StockError};

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Pdf,
    Zpl,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pdf" => Ok(Format::Pdf),
            "zpl" => Ok(Format::Zpl),
            other => Err(format!("format `{other}` is not pdf or zpl")),
        }
    }
}

/// Errors making labels.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LabelError {
    #[error(transparent)]
    Stock(#[from] StockError),
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error("no labels to print")]
    Empty,
    #[error("ZPL is for roll stock (one label per page); `{0}` is a sheet")]
    ZplNeedsRoll(String),
}

/// Renders labels: the file's bytes and the media type.
pub fn render(
    labels: &[LabelData],
    stock: &Stock,
    format: Format,
    skip: u32,
) -> Result<(Vec<u8>, &'static str), LabelError> {
    stock.validate()?;
    if labels.is_empty() {
        return Err(LabelError::Empty);
    }
    match format {
        Format::Pdf => {
            let placed = layout::layout(labels, stock, skip)?;
            let pages = layout::pages(labels.len(), stock, skip);
            Ok((
                pdf::document(&placed, stock, pages, "Vesper labels"),
                "application/pdf",
            ))
        }
        Format::Zpl => {
            if stock.per_page() != 1 {
                return Err(LabelError::ZplNeedsRoll(stock.name.clone()));
            }
            let placed = layout::layout(labels, stock, 0)?;
            Ok((
                zpl::document(&placed, stock).into_bytes(),
                "text/plain; charset=utf-8",
            ))
        }
    }
}

/// The label of a registry device: its batch, and the day it was made.
pub fn from_device(device: &vesper_core::model::Device) -> LabelData {
    LabelData {
        serial_number: device.serial_number.clone(),
        hw_type: device.hw_type.clone(),
        hw_version: device.hw_version.clone(),
        batch: Some(device.batch_id.clone()),
        date: device.created_at.chars().take(10).collect(),
    }
}

/// The label of a serial number alone (type, revision and date come from the number itself).
pub fn from_serial(sn: &vesper_core::serial::SerialNumber, batch: Option<&str>) -> LabelData {
    LabelData {
        serial_number: sn.as_str().to_owned(),
        hw_type: sn.board_type().as_str().to_owned(),
        hw_version: sn.revision().as_str().to_owned(),
        batch: batch.map(str::to_owned),
        date: sn.date().to_string(),
    }
}
