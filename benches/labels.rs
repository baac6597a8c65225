//! Benchmark: 1,000 labels on A4 L7160 sheets to a PDF, in memory (`cargo bench --bench labels`).
//! Best of several rounds, with the split between layout (QR codes) and the PDF writer. Compare
//! with `benches/labels_reportlab.py` (the customer's plan).

use std::time::{Duration, Instant};

use vesper::labels::{self, Format, Stock, layout, pdf};

fn main() {
    let date = chrono::NaiveDate::from_ymd_opt(2026, 1, 18).unwrap();
    let sns = vesper::serial::generate_distinct(
        "BC".parse().unwrap(),
        "02".parse().unwrap(),
        date,
        1000,
        &mut rand::rng(),
        |_| false,
    )
    .unwrap();
    let data: Vec<_> = sns
        .iter()
        .map(|sn| labels::from_serial(sn, Some("B-0042")))
        .collect();
    let stock = Stock::find("a4-l7160", &[]).unwrap();
    let pages = layout::pages(data.len(), &stock, 0);
    let (mut best, mut best_layout, mut best_pdf, mut size) =
        (Duration::MAX, Duration::MAX, Duration::MAX, 0);
    for _ in 0..5 {
        let start = Instant::now();
        let (bytes, _) = labels::render(&data, &stock, Format::Pdf, 0).unwrap();
        best = best.min(start.elapsed());
        size = bytes.len();
        let t = Instant::now();
        let placed = layout::layout(&data, &stock, 0).unwrap();
        best_layout = best_layout.min(t.elapsed());
        let t = Instant::now();
        std::hint::black_box(pdf::document(&placed, &stock, pages, "bench"));
        best_pdf = best_pdf.min(t.elapsed());
    }
    println!(
        "1000 labels on a4-l7160 ({pages} pages, {} KB): {:.3} s (best of 5; layout with QR codes {:.3} s, PDF writer {:.3} s)",
        size / 1024,
        best.as_secs_f64(),
        best_layout.as_secs_f64(),
        best_pdf.as_secs_f64()
    );
}
