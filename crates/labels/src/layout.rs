//! Where everything on a label goes, in millimetres from the page's top-left corner, shared by
//! the PDF and ZPL writers. The serial number gets the label's full width (it is what people
//! read); the QR code and the hardware lines share the rest. Text shrinks to fit; nothing crosses
//! the label's edge.

use qrcode::EcLevel;

use super::font::{self, Face};
use super::stock::Stock;

/// Points per millimetre.
pub const PT_PER_MM: f32 = 72.0 / 25.4;
/// Quiet zone around a QR code, in modules.
pub const QUIET: usize = 4;

/// What a label says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelData {
    pub serial_number: String,
    pub hw_type: String,
    pub hw_version: String,
    pub batch: Option<String>,
    /// Manufacturing date, YYYY-MM-DD.
    pub date: String,
}

/// A rectangle in millimetres from the page's top-left.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Area {
    pub x: f32,
    pub y: f32,
    pub width: f32,
    pub height: f32,
}

impl Area {
    pub fn contains(&self, other: &Area) -> bool {
        const EPS: f32 = 0.01;
        other.x >= self.x - EPS
            && other.y >= self.y - EPS
            && other.x + other.width <= self.x + self.width + EPS
            && other.y + other.height <= self.y + self.height + EPS
    }
}

/// One line of text: its baseline's left end, size and face.
#[derive(Debug, Clone, PartialEq)]
pub struct TextLine {
    pub text: String,
    pub face: Face,
    pub size_pt: f32,
    pub x: f32,
    pub baseline: f32,
}

impl TextLine {
    /// The box the glyphs can occupy (ascender to descender).
    pub fn area(&self) -> Area {
        font::text_area(&self.text, self.face, self.size_pt, self.x, self.baseline)
    }
}

/// A QR code: its top-left corner (quiet zone included), module size and dark modules.
#[derive(Debug, Clone, PartialEq)]
pub struct Qr {
    pub x: f32,
    pub y: f32,
    pub module: f32,
    /// Modules per side, quiet zone included.
    pub modules: usize,
    /// Dark modules by row (quiet zone included).
    pub dark: Vec<Vec<bool>>,
}

impl Qr {
    pub fn size(&self) -> f32 {
        self.module * self.modules as f32
    }

    /// Dark modules as few rectangles: horizontal runs, then equal runs of consecutive rows
    /// merged into one taller rectangle. (first row, first column, columns, rows)
    pub fn rectangles(&self) -> Vec<(usize, usize, usize, usize)> {
        let mut open: Vec<(usize, usize, usize, usize)> = Vec::new();
        let mut done = Vec::new();
        let mut last_row = usize::MAX;
        for (row, col, len) in self.runs() {
            if row != last_row {
                // Rectangles not continued by the previous row are finished.
                let (keep, finished): (Vec<_>, Vec<_>) =
                    open.into_iter().partition(|r| r.0 + r.3 == row);
                done.extend(finished);
                open = keep;
                last_row = row;
            }
            match open
                .iter_mut()
                .find(|r| r.1 == col && r.2 == len && r.0 + r.3 == row)
            {
                Some(r) => r.3 += 1,
                None => open.push((row, col, len, 1)),
            }
        }
        done.extend(open);
        done
    }

    /// Dark modules merged into horizontal runs: (row, first column, length).
    pub fn runs(&self) -> Vec<(usize, usize, usize)> {
        let mut runs = Vec::new();
        for (row, cells) in self.dark.iter().enumerate() {
            let mut col = 0;
            while col < cells.len() {
                if cells[col] {
                    let start = col;
                    while col < cells.len() && cells[col] {
                        col += 1;
                    }
                    runs.push((row, start, col - start));
                } else {
                    col += 1;
                }
            }
        }
        runs
    }
}

/// A label laid out on its page.
#[derive(Debug, Clone, PartialEq)]
pub struct Placed {
    pub page: usize,
    pub area: Area,
    pub qr: Qr,
    pub lines: Vec<TextLine>,
}

/// Why labels cannot be laid out.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LayoutError {
    #[error("a QR code for `{data}` does not fit: {reason}")]
    Qr { data: String, reason: String },
    #[error(
        "stock `{stock}` is too small: a QR module would be {module:.2} mm, below the {min} mm that scans reliably"
    )]
    TooSmall {
        stock: String,
        module: f32,
        min: f32,
    },
    #[error("label text must be printable ASCII: `{0}`")]
    Text(String),
}

/// The QR matrix of `data` (error correction M) with its quiet zone.
///
/// The same symbol as `qrcode::QrCode::with_error_correction_level` (the tests compare them):
/// the same encoding and the same mask choice, with the penalty scores computed on a plain
/// colour grid, which is several times faster than the crate's own scoring.
pub fn qr_matrix(data: &str) -> Result<Vec<Vec<bool>>, LayoutError> {
    let fail = |e: qrcode::types::QrError| LayoutError::Qr {
        data: data.to_owned(),
        reason: e.to_string(),
    };
    let bits = qrcode::bits::encode_auto(data.as_bytes(), EcLevel::M).map_err(fail)?;
    let version = bits.version();
    let (encoded, ec) =
        qrcode::ec::construct_codewords(&bits.into_bytes(), version, EcLevel::M).map_err(fail)?;
    let mut canvas = qrcode::canvas::Canvas::new(version, EcLevel::M);
    canvas.draw_all_functional_patterns();
    canvas.draw_data(&encoded, &ec);
    let width = version.width() as usize;
    let best = MASKS
        .iter()
        .map(|pattern| {
            let mut c = canvas.clone();
            c.apply_mask(*pattern);
            c.into_colors()
                .into_iter()
                .map(|c| c == qrcode::Color::Dark)
                .collect::<Vec<bool>>()
        })
        .min_by_key(|grid| penalty(grid, width))
        .expect("eight masks");
    let side = width + 2 * QUIET;
    let mut dark = vec![vec![false; side]; side];
    for (i, d) in best.iter().enumerate() {
        dark[i / width + QUIET][i % width + QUIET] = *d;
    }
    Ok(dark)
}

/// The eight mask patterns in the order the qrcode crate tries them (ties go to the first).
const MASKS: [qrcode::canvas::MaskPattern; 8] = {
    use qrcode::canvas::MaskPattern::*;
    [
        Checkerboard,
        HorizontalLines,
        VerticalLines,
        DiagonalLines,
        LargeCheckerboard,
        Fields,
        Diamonds,
        Meadow,
    ]
};

/// The qrcode crate's penalty score of a masked symbol (rules N1-N4, same arithmetic).
fn penalty(grid: &[bool], width: usize) -> u16 {
    let at = |x: usize, y: usize| grid[y * width + x];
    let line = |i: usize, k: usize, horizontal: bool| if horizontal { at(k, i) } else { at(i, k) };
    let mut total: u16 = 0;
    for horizontal in [true, false] {
        // N1: runs of five or more modules of one colour.
        for i in 0..width {
            let mut run = 1u16;
            for k in 1..=width {
                if k < width && line(i, k, horizontal) == line(i, k - 1, horizontal) {
                    run += 1;
                } else {
                    if run >= 5 {
                        total = total.wrapping_add(run - 2);
                    }
                    run = 1;
                }
            }
        }
    }
    // N2: 2x2 blocks of one colour.
    for y in 0..width - 1 {
        for x in 0..width - 1 {
            let c = at(x, y);
            if at(x + 1, y) == c && at(x, y + 1) == c && at(x + 1, y + 1) == c {
                total = total.wrapping_add(3);
            }
        }
    }
    // N3: finder-like patterns without four light modules on one side (the crate subtracts
    // the 360 points the three real finder patterns always score in each direction).
    const PATTERN: [bool; 7] = [true, false, true, true, true, false, true];
    for horizontal in [true, false] {
        let mut score: u16 = 0;
        for i in 0..width {
            for j in 0..width - 6 {
                if (0..7).any(|k| line(i, j + k, horizontal) != PATTERN[k]) {
                    continue;
                }
                let dark_in = |from: isize, to: isize| {
                    (from..to)
                        .any(|k| k >= 0 && (k as usize) < width && line(i, k as usize, horizontal))
                };
                let j = j as isize;
                if !dark_in(j - 4, j) || !dark_in(j + 7, j + 11) {
                    score = score.wrapping_add(40);
                }
            }
        }
        total = total.wrapping_add(score.wrapping_sub(360));
    }
    // N4: dark/light balance.
    let dark = grid.iter().filter(|d| **d).count();
    let ratio = dark * 200 / grid.len();
    total.wrapping_add(ratio.abs_diff(100) as u16)
}

/// Largest size at which `text` fits `width` mm, capped at `max_pt`.
fn fit(text: &str, face: Face, width: f32, max_pt: f32) -> f32 {
    let em = font::width_em(text, face);
    if em <= 0.0 {
        max_pt
    } else {
        (width * PT_PER_MM / em).min(max_pt)
    }
}

/// Lays out one label in `area`.
pub fn layout_label(
    data: &LabelData,
    stock: &Stock,
    page: usize,
    area: Area,
) -> Result<Placed, LayoutError> {
    for text in [
        &data.serial_number,
        &data.hw_type,
        &data.hw_version,
        &data.date,
    ]
    .into_iter()
    .chain(data.batch.as_ref())
    {
        if !text.bytes().all(|b| (0x20..0x7F).contains(&b)) {
            return Err(LayoutError::Text(text.clone()));
        }
    }
    let dark = qr_matrix(&data.serial_number)?;
    let modules = dark.len();
    let pad = (area.height.min(area.width) * 0.06).clamp(1.2, 3.0);
    let inner = Area {
        x: area.x + pad,
        y: area.y + pad,
        width: area.width - 2.0 * pad,
        height: area.height - 2.0 * pad,
    };
    let hw = [
        format!("HW type {}", data.hw_type),
        format!("HW version {}", data.hw_version),
    ];
    let small: Vec<String> = data
        .batch
        .iter()
        .map(|b| format!("Batch {b}"))
        .chain([data.date.clone()])
        .collect();
    let content = Content {
        data,
        modules,
        hw: &hw,
        small: &small,
    };
    let (qr, lines) = if area.height > area.width {
        content.portrait(inner)
    } else {
        content.landscape(inner)
    };
    let module = qr.1;
    if module < stock.min_module() {
        return Err(LayoutError::TooSmall {
            stock: stock.name.clone(),
            module,
            min: stock.min_module(),
        });
    }
    Ok(Placed {
        page,
        area,
        qr: Qr {
            x: qr.0.0,
            y: qr.0.1,
            module,
            modules,
            dark,
        },
        lines,
    })
}

type QrPlace = ((f32, f32), f32);

/// What goes on a label, ready to place: the data, the QR code's size in modules, the hardware
/// lines and the small print.
#[derive(Clone, Copy)]
struct Content<'a> {
    data: &'a LabelData,
    modules: usize,
    hw: &'a [String; 2],
    small: &'a [String],
}

impl Content<'_> {
    /// Wide labels: QR top-left, hardware lines to its right, the serial number across the bottom.
    fn landscape(&self, inner: Area) -> (QrPlace, Vec<TextLine>) {
        let sn_pt = fit(
            &self.data.serial_number,
            Face::Bold,
            inner.width,
            inner.height * 0.24 * PT_PER_MM,
        );
        let sn_height = font::line_height(sn_pt);
        let gap = 0.8;
        let top_height = inner.height - sn_height - gap;
        let qr_size = top_height.min(inner.width * 0.5);
        let module = qr_size / self.modules as f32;
        let mut lines = vec![TextLine {
            text: self.data.serial_number.clone(),
            face: Face::Bold,
            size_pt: sn_pt,
            x: inner.x,
            baseline: inner.y + inner.height - font::descent(sn_pt),
        }];
        // Text starts after the QR's quiet zone, which must stay clear for scanners.
        let text_x = inner.x + qr_size + 0.5;
        let text_width = inner.x + inner.width - text_x;
        let base_cap = top_height / (2.0 * 1.2 + self.small.len() as f32 * 1.2 * 0.8) * PT_PER_MM;
        let base = self
            .hw
            .iter()
            .map(|t| fit(t, Face::Regular, text_width, base_cap))
            .fold(f32::MAX, f32::min);
        let small_pt = self
            .small
            .iter()
            .map(|t| fit(t, Face::Regular, text_width, base * 0.8))
            .fold(f32::MAX, f32::min);
        let mut y = inner.y;
        for (text, size) in self
            .hw
            .iter()
            .map(|t| (t, base))
            .chain(self.small.iter().map(|t| (t, small_pt)))
        {
            y += font::line_height(size) * 1.2 - font::line_height(size) * 0.2;
            lines.push(TextLine {
                text: text.clone(),
                face: Face::Regular,
                size_pt: size,
                x: text_x,
                baseline: y - font::descent(size),
            });
            y += font::line_height(size) * 0.2;
        }
        (((inner.x, inner.y), module), lines)
    }

    /// Tall labels: QR centred at the top, every line centred below it.
    fn portrait(&self, inner: Area) -> (QrPlace, Vec<TextLine>) {
        let qr_size = inner.width.min(inner.height * 0.55);
        let module = qr_size / self.modules as f32;
        let qr_x = inner.x + (inner.width - qr_size) / 2.0;
        let text_height = inner.height - qr_size;
        let sn_pt = fit(
            &self.data.serial_number,
            Face::Bold,
            inner.width,
            text_height * 0.25 * PT_PER_MM,
        );
        let base = self
            .hw
            .iter()
            .map(|t| fit(t, Face::Regular, inner.width, sn_pt * 0.8))
            .fold(f32::MAX, f32::min);
        let small_pt = self
            .small
            .iter()
            .map(|t| fit(t, Face::Regular, inner.width, sn_pt * 0.6))
            .fold(f32::MAX, f32::min);
        let mut lines = Vec::new();
        let mut y = inner.y + qr_size;
        let entries = std::iter::once((&self.data.serial_number, Face::Bold, sn_pt))
            .chain(self.hw.iter().map(|t| (t, Face::Regular, base)))
            .chain(self.small.iter().map(|t| (t, Face::Regular, small_pt)));
        for (text, face, size) in entries {
            y += font::line_height(size) * 1.15;
            let width = font::width_em(text, face) * size / PT_PER_MM;
            lines.push(TextLine {
                text: text.clone(),
                face,
                size_pt: size,
                x: inner.x + (inner.width - width) / 2.0,
                baseline: y - font::descent(size),
            });
        }
        (((qr_x, inner.y), module), lines)
    }
}

/// Lays out labels on pages, starting after `skip` used labels on the first sheet. QR codes
/// are computed on every core (choosing a QR mask is the costly part).
pub fn layout(labels: &[LabelData], stock: &Stock, skip: u32) -> Result<Vec<Placed>, LayoutError> {
    let place = |i: usize, data: &LabelData| {
        let position = i as u32 + skip;
        let page = (position / stock.per_page()) as usize;
        let (x, y) = stock.slot_origin(position % stock.per_page());
        layout_label(
            data,
            stock,
            page,
            Area {
                x,
                y,
                width: stock.label_width,
                height: stock.label_height,
            },
        )
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(labels.len().div_ceil(64))
        .max(1);
    let chunk = labels.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let jobs: Vec<_> = labels
            .chunks(chunk)
            .enumerate()
            .map(|(c, part)| {
                s.spawn(move || {
                    part.iter()
                        .enumerate()
                        .map(|(i, d)| place(c * chunk + i, d))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        jobs.into_iter()
            .flat_map(|j| j.join().expect("layout thread"))
            .collect()
    })
}

/// Pages needed for `count` labels after `skip`.
pub fn pages(count: usize, stock: &Stock, skip: u32) -> usize {
    (count + skip as usize)
        .div_ceil(stock.per_page() as usize)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qr_matrix_equals_the_qrcode_crates_symbol() {
        let mut inputs: Vec<String> = vec![
            "PV-26A18-BC02R-X7KQA".into(),
            "A".into(),
            "hello, world".into(),
            "x".repeat(300),
        ];
        let date = chrono::NaiveDate::from_ymd_opt(2026, 3, 9).unwrap();
        for _ in 0..400 {
            let board = ["BC", "BP", "ZZ"][rand::random_range(0..3)]
                .parse()
                .unwrap();
            let sn =
                vesper_core::serial::generate(board, "07".parse().unwrap(), date, &mut rand::rng())
                    .unwrap();
            inputs.push(sn.as_str().to_owned());
        }
        for data in inputs {
            let ours = qr_matrix(&data).unwrap();
            let theirs =
                qrcode::QrCode::with_error_correction_level(data.as_bytes(), EcLevel::M).unwrap();
            let width = theirs.width();
            let colors = theirs.to_colors();
            for (i, c) in colors.iter().enumerate() {
                assert_eq!(
                    ours[i / width + QUIET][i % width + QUIET],
                    *c == qrcode::Color::Dark,
                    "{data}: module {i}"
                );
            }
            assert_eq!(ours.len(), width + 2 * QUIET);
        }
    }
}
