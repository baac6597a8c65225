//! Labels as a PDF: vector QR codes (one filled rectangle per horizontal run of dark modules, no
//! raster images) and text in the built-in Helvetica faces.

use printpdf::{
    BuiltinFont, Color, CurTransMat, Mm, Op, PaintMode, PdfDocument, PdfFontHandle, PdfPage,
    PdfSaveOptions, Point, Pt, Rect, Rgb, TextItem,
};

use super::font::Face;
use super::layout::{PT_PER_MM, Placed};
use super::stock::Stock;

fn black() -> Color {
    Color::Rgb(Rgb {
        r: 0.0,
        g: 0.0,
        b: 0.0,
        icc_profile: None,
    })
}

/// The drawing operations of each page (PDF coordinates: points, y upwards).
pub fn page_ops(placed: &[Placed], stock: &Stock, pages: usize) -> Vec<Vec<Op>> {
    let page_height = stock.page_height * PT_PER_MM;
    let mut ops: Vec<Vec<Op>> = (0..pages)
        .map(|_| vec![Op::SetFillColor { col: black() }])
        .collect();
    for label in placed {
        let page = &mut ops[label.page];
        // The QR code is drawn in module units (one unit = one module, rows downwards): the
        // rectangles are small integers, which keeps the content stream short.
        let m = label.qr.module * PT_PER_MM;
        let (qx, qy) = (label.qr.x * PT_PER_MM, page_height - label.qr.y * PT_PER_MM);
        page.push(Op::SaveGraphicsState);
        page.push(Op::SetTransformationMatrix {
            matrix: CurTransMat::Raw([m, 0.0, 0.0, -m, qx, qy]),
        });
        for (row, col, columns, rows) in label.qr.rectangles() {
            page.push(Op::DrawRectangle {
                rectangle: Rect {
                    x: Pt(col as f32),
                    y: Pt(row as f32),
                    width: Pt(columns as f32),
                    height: Pt(rows as f32),
                    mode: Some(PaintMode::Fill),
                    winding_order: None,
                },
            });
        }
        page.push(Op::RestoreGraphicsState);
        for line in &label.lines {
            let font = match line.face {
                Face::Regular => BuiltinFont::Helvetica,
                Face::Bold => BuiltinFont::HelveticaBold,
            };
            page.extend([
                Op::StartTextSection,
                Op::SetFont {
                    font: PdfFontHandle::Builtin(font),
                    size: Pt(line.size_pt),
                },
                Op::SetTextCursor {
                    pos: Point {
                        x: Pt(line.x * PT_PER_MM),
                        y: Pt(page_height - line.baseline * PT_PER_MM),
                    },
                },
                Op::ShowText {
                    items: vec![TextItem::Text(line.text.clone())],
                },
                Op::EndTextSection,
            ]);
        }
    }
    ops
}

/// The PDF file.
pub fn document(placed: &[Placed], stock: &Stock, pages: usize, title: &str) -> Vec<u8> {
    let mut doc = PdfDocument::new(title);
    let pdf_pages: Vec<PdfPage> = page_ops(placed, stock, pages)
        .into_iter()
        .map(|ops| PdfPage::new(Mm(stock.page_width), Mm(stock.page_height), ops))
        .collect();
    doc.with_pages(pdf_pages);
    let mut warnings = Vec::new();
    doc.save(
        &PdfSaveOptions {
            subset_fonts: false,
            ..PdfSaveOptions::default()
        },
        &mut warnings,
    )
}
