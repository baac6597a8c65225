//! Metrics of the PDF built-in Helvetica and Helvetica-Bold (Adobe AFM widths, 1000 units per em):
//! PDF viewers draw the built-in fonts from their own metrics, so the writer must measure text
//! itself to shrink it to fit its label.

/// A built-in face.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Face {
    Regular,
    Bold,
}

/// Ascender and descender of Helvetica, in em.
pub const ASCENT: f32 = 0.718;
pub const DESCENT: f32 = 0.207;

/// Widths of printable ASCII 0x20..=0x7E.
const REGULAR: [u16; 95] = [
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278, 556, 556, 556,
    556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556, 1015, 667, 667, 722, 722, 667,
    611, 778, 722, 278, 500, 667, 556, 833, 722, 778, 667, 778, 722, 667, 611, 722, 667, 944, 667,
    667, 611, 278, 278, 278, 469, 556, 333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500,
    222, 833, 556, 556, 556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584,
];
const BOLD: [u16; 95] = [
    278, 333, 474, 556, 556, 889, 722, 238, 333, 333, 389, 584, 278, 333, 278, 278, 556, 556, 556,
    556, 556, 556, 556, 556, 556, 556, 333, 333, 584, 584, 584, 611, 975, 722, 722, 722, 722, 667,
    611, 778, 722, 278, 556, 722, 611, 833, 722, 778, 667, 778, 722, 667, 611, 722, 667, 944, 667,
    667, 611, 333, 278, 333, 584, 556, 333, 556, 611, 556, 611, 556, 333, 611, 611, 278, 278, 556,
    278, 889, 611, 611, 611, 611, 389, 556, 333, 611, 556, 778, 556, 556, 500, 389, 280, 389, 584,
];

/// Width of `text` in em (characters outside printable ASCII count as the widest glyph).
pub fn width_em(text: &str, face: Face) -> f32 {
    let table = match face {
        Face::Regular => &REGULAR,
        Face::Bold => &BOLD,
    };
    text.chars()
        .map(|c| match c as u32 {
            code @ 0x20..=0x7E => f32::from(table[(code - 0x20) as usize]),
            _ => 1015.0,
        })
        .sum::<f32>()
        / 1000.0
}

/// Descent below the baseline, in millimetres.
pub fn descent(size_pt: f32) -> f32 {
    DESCENT * size_pt / super::layout::PT_PER_MM
}

/// Ascender to descender, in millimetres.
pub fn line_height(size_pt: f32) -> f32 {
    (ASCENT + DESCENT) * size_pt / super::layout::PT_PER_MM
}

/// The box text can occupy, from its baseline's left end (millimetres, y downwards).
pub fn text_area(
    text: &str,
    face: Face,
    size_pt: f32,
    x: f32,
    baseline: f32,
) -> super::layout::Area {
    let mm = size_pt / super::layout::PT_PER_MM;
    super::layout::Area {
        x,
        y: baseline - ASCENT * mm,
        width: width_em(text, face) * mm,
        height: (ASCENT + DESCENT) * mm,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_widths() {
        assert_eq!(width_em("A", Face::Regular), 0.667);
        assert_eq!(width_em("-", Face::Bold), 0.333);
        assert!((width_em("PV-26A18-BC02R-X7KQA", Face::Bold) - 12.002).abs() < 0.01);
        assert_eq!(width_em("é", Face::Regular), 1.015);
    }
}
