//! Labels as a PDF, written with `pdf-writer`: vector QR codes (one filled rectangle per run of
//! dark modules, no raster images) and text in the built-in Helvetica faces. Each page's
//! content stream is deflated, the pages on all cores at once: 1,000 labels make a file of a
//! few hundred kilobytes in well under a tenth of a second.

use pdf_writer::{Content, Filter, Finish, Name, Pdf, Rect, Ref, Str, TextStr};

use super::font::Face;
use super::layout::{PT_PER_MM, Placed};
use super::stock::Stock;

const REGULAR: Name<'static> = Name(b"F1");
const BOLD: Name<'static> = Name(b"F2");

/// The content stream of one page (PDF coordinates: points, y upwards).
pub fn page_content(labels: &[&Placed], stock: &Stock) -> Vec<u8> {
    let page_height = stock.page_height * PT_PER_MM;
    let mut content = Content::new();
    content.set_fill_rgb(0.0, 0.0, 0.0);
    for label in labels {
        // The QR code is drawn in module units (one unit = one module, rows downwards): the
        // rectangles are small integers, which keeps the content stream short.
        let m = label.qr.module * PT_PER_MM;
        let (qx, qy) = (label.qr.x * PT_PER_MM, page_height - label.qr.y * PT_PER_MM);
        content.save_state();
        content.transform([m, 0.0, 0.0, -m, qx, qy]);
        for (row, col, columns, rows) in label.qr.rectangles() {
            content.rect(col as f32, row as f32, columns as f32, rows as f32);
        }
        content.fill_nonzero();
        content.restore_state();
        for line in &label.lines {
            let font = match line.face {
                Face::Regular => REGULAR,
                Face::Bold => BOLD,
            };
            content.begin_text();
            content.set_font(font, line.size_pt);
            content.next_line(line.x * PT_PER_MM, page_height - line.baseline * PT_PER_MM);
            content.show(Str(line.text.as_bytes()));
            content.end_text();
        }
    }
    content.finish().to_vec()
}

/// Each page's content stream, deflated, computed on every core.
fn compressed_pages(placed: &[Placed], stock: &Stock, pages: usize) -> Vec<Vec<u8>> {
    let mut by_page: Vec<Vec<&Placed>> = vec![Vec::new(); pages];
    for label in placed {
        by_page[label.page].push(label);
    }
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, pages.max(1));
    let chunk = pages.div_ceil(workers).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = by_page
            .chunks(chunk)
            .map(|group| {
                scope.spawn(move || {
                    group
                        .iter()
                        .map(|labels| {
                            miniz_oxide::deflate::compress_to_vec_zlib(
                                &page_content(labels, stock),
                                1,
                            )
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a page compresses"))
            .collect()
    })
}

/// The PDF file.
pub fn document(placed: &[Placed], stock: &Stock, pages: usize, title: &str) -> Vec<u8> {
    let streams = compressed_pages(placed, stock, pages);
    let (catalog, tree, regular, bold, info) = (
        Ref::new(1),
        Ref::new(2),
        Ref::new(3),
        Ref::new(4),
        Ref::new(5),
    );
    let page_ref = |i: usize| Ref::new(6 + 2 * i as i32);
    let content_ref = |i: usize| Ref::new(7 + 2 * i as i32);
    let mut pdf = Pdf::new();
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree)
        .kids((0..pages).map(page_ref))
        .count(pages as i32);
    let media = Rect::new(
        0.0,
        0.0,
        stock.page_width * PT_PER_MM,
        stock.page_height * PT_PER_MM,
    );
    for (i, stream) in streams.iter().enumerate() {
        let mut page = pdf.page(page_ref(i));
        page.media_box(media);
        page.parent(tree);
        page.contents(content_ref(i));
        page.resources()
            .fonts()
            .pair(REGULAR, regular)
            .pair(BOLD, bold);
        page.finish();
        pdf.stream(content_ref(i), stream)
            .filter(Filter::FlateDecode);
    }
    for (id, name) in [(regular, "Helvetica"), (bold, "Helvetica-Bold")] {
        pdf.type1_font(id)
            .base_font(Name(name.as_bytes()))
            .encoding_predefined(Name(b"WinAnsiEncoding"));
    }
    pdf.document_info(info).title(TextStr(title));
    pdf.finish()
}
