//! Label stock: page size, label size and where each label sits, in millimetres. The sheet presets
//! are the real die-cut sheets' geometry, so each label lands on its label.

use serde::Deserialize;

/// Millimetres per inch.
pub const INCH: f32 = 25.4;

/// A label stock.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stock {
    pub name: String,
    pub page_width: f32,
    pub page_height: f32,
    pub label_width: f32,
    pub label_height: f32,
    pub columns: u32,
    pub rows: u32,
    /// From the page's left edge to the first column's left edge.
    pub left: f32,
    /// From the page's top edge to the first row's top edge.
    pub top: f32,
    /// From one column's left edge to the next one's (label width + gap).
    pub column_pitch: f32,
    /// From one row's top edge to the next one's.
    pub row_pitch: f32,
    /// Thermal stock (203 dpi): QR modules at least 0.5 mm instead of 0.25 mm; ZPL possible.
    #[serde(default)]
    pub thermal: bool,
}

/// Why a stock is unusable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StockError {
    #[error(
        "unknown label stock `{0}` (presets: a4-l7160, letter-5160, roll-62x29, roll-2x1in, roll-4x6in, or a [[labels.stocks]] entry)"
    )]
    Unknown(String),
    #[error("stock `{name}`: {message}")]
    Invalid { name: String, message: String },
}

fn roll(name: &str, width: f32, height: f32, thermal: bool) -> Stock {
    Stock {
        name: name.into(),
        page_width: width,
        page_height: height,
        label_width: width,
        label_height: height,
        columns: 1,
        rows: 1,
        left: 0.0,
        top: 0.0,
        column_pitch: width,
        row_pitch: height,
        thermal,
    }
}

/// The built-in stocks.
pub fn presets() -> Vec<Stock> {
    vec![
        // Avery L7160 / J8160: A4, 3 x 7 labels of 63.5 x 38.1 mm.
        Stock {
            name: "a4-l7160".into(),
            page_width: 210.0,
            page_height: 297.0,
            label_width: 63.5,
            label_height: 38.1,
            columns: 3,
            rows: 7,
            left: 7.25,
            top: 15.15,
            column_pitch: 66.04,
            row_pitch: 38.1,
            thermal: false,
        },
        // Avery 5160: US Letter, 3 x 10 labels of 2.625 x 1 in.
        Stock {
            name: "letter-5160".into(),
            page_width: 8.5 * INCH,
            page_height: 11.0 * INCH,
            label_width: 2.625 * INCH,
            label_height: INCH,
            columns: 3,
            rows: 10,
            left: 0.19 * INCH,
            top: 0.5 * INCH,
            column_pitch: 2.75 * INCH,
            row_pitch: INCH,
            thermal: false,
        },
        // Brother DK-11209 style 62 x 29 mm die-cut roll labels.
        roll("roll-62x29", 62.0, 29.0, false),
        roll("roll-2x1in", 2.0 * INCH, INCH, true),
        roll("roll-4x6in", 4.0 * INCH, 6.0 * INCH, true),
    ]
}

impl Stock {
    /// A preset or one of `custom` by name.
    pub fn find(name: &str, custom: &[Stock]) -> Result<Stock, StockError> {
        custom
            .iter()
            .cloned()
            .chain(presets())
            .find(|s| s.name == name)
            .ok_or_else(|| StockError::Unknown(name.to_owned()))
    }

    pub fn per_page(&self) -> u32 {
        self.columns * self.rows
    }

    /// Checks that the labels fit the page and do not overlap.
    pub fn validate(&self) -> Result<(), StockError> {
        let bad = |message: &str| {
            Err(StockError::Invalid {
                name: self.name.clone(),
                message: message.to_owned(),
            })
        };
        let positive = [
            self.page_width,
            self.page_height,
            self.label_width,
            self.label_height,
        ];
        if positive.iter().any(|v| !v.is_finite() || *v <= 0.0)
            || self.columns == 0
            || self.rows == 0
        {
            return bad("sizes must be positive and there must be at least one row and column");
        }
        if self.columns > 1 && self.column_pitch < self.label_width - 0.01
            || self.rows > 1 && self.row_pitch < self.label_height - 0.01
        {
            return bad("labels overlap: a pitch is smaller than the label");
        }
        let right = self.left + (self.columns - 1) as f32 * self.column_pitch + self.label_width;
        let bottom = self.top + (self.rows - 1) as f32 * self.row_pitch + self.label_height;
        if self.left < 0.0
            || self.top < 0.0
            || right > self.page_width + 0.01
            || bottom > self.page_height + 0.01
        {
            return bad("the labels do not fit on the page");
        }
        Ok(())
    }

    /// Where label `slot` (0-based, row by row) of a page is: left, top, from the page's top-left.
    pub fn slot_origin(&self, slot: u32) -> (f32, f32) {
        let (column, row) = (slot % self.columns, slot / self.columns);
        (
            self.left + column as f32 * self.column_pitch,
            self.top + row as f32 * self.row_pitch,
        )
    }

    /// Smallest QR module that still scans reliably on this stock.
    pub fn min_module(&self) -> f32 {
        if self.thermal { 0.5 } else { 0.25 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_fit_their_pages() {
        for s in presets() {
            s.validate().unwrap_or_else(|e| panic!("{e}"));
        }
        let l7160 = Stock::find("a4-l7160", &[]).unwrap();
        assert_eq!(l7160.per_page(), 21);
        assert_eq!(l7160.slot_origin(4), (7.25 + 66.04, 15.15 + 38.1));
        assert!(Stock::find("a5-nope", &[]).is_err());
    }

    #[test]
    fn broken_custom_stocks_are_refused() {
        let mut s = Stock::find("a4-l7160", &[]).unwrap();
        s.columns = 4;
        assert!(s.validate().is_err());
        s.columns = 3;
        s.column_pitch = 60.0;
        assert!(s.validate().is_err());
        s.column_pitch = 66.04;
        s.label_height = -1.0;
        assert!(s.validate().is_err());
    }
}
