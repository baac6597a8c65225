//! Labels as ZPL for Zebra-compatible thermal printers (203 dpi: 8 dots per millimetre), one
//! `^XA ... ^XZ` block per label: the QR code as `^BQN` (model 2, error correction M), the text
//! in the scalable font 0.

use std::fmt::Write as _;

use super::layout::{PT_PER_MM, Placed};
use super::stock::Stock;

/// Dots per millimetre at 203 dpi.
pub const DOTS_PER_MM: f32 = 8.0;

fn dots(mm: f32) -> i32 {
    (mm * DOTS_PER_MM).round() as i32
}

/// Field data must not contain ZPL's command and control prefixes.
fn field(text: &str) -> String {
    text.replace(['^', '~'], " ")
}

/// ZPL for labels laid out on a roll stock (each label its own `^XA ... ^XZ`).
pub fn document(placed: &[Placed], stock: &Stock) -> String {
    let mut out = String::new();
    for label in placed {
        let (ox, oy) = (label.area.x, label.area.y);
        let _ = writeln!(out, "^XA");
        let _ = writeln!(
            out,
            "^CI28^PW{}^LL{}^LH0,0",
            dots(stock.label_width),
            dots(stock.label_height)
        );
        // ^BQ magnification is the module size in dots; the symbol starts after the quiet zone.
        let magnification = ((label.qr.module * DOTS_PER_MM).floor() as i32).clamp(1, 10);
        let quiet = super::layout::QUIET as f32 * label.qr.module;
        let _ = writeln!(
            out,
            "^FO{},{}^BQN,2,{magnification}^FDMA,{}^FS",
            dots(label.qr.x - ox + quiet),
            dots(label.qr.y - oy + quiet),
            field(&label.lines[0].text)
        );
        for line in &label.lines {
            let height = dots(line.size_pt / PT_PER_MM);
            let top = line.baseline - line.size_pt / PT_PER_MM * super::font::ASCENT;
            let _ = writeln!(
                out,
                "^FO{},{}^A0N,{height},{height}^FD{}^FS",
                dots(line.x - ox),
                dots(top - oy),
                field(&line.text)
            );
        }
        let _ = writeln!(out, "^XZ");
    }
    out
}
