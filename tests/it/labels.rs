//! Labels, checked the way a scanner and a reader see them: every preset rendered by poppler's
//! `pdftoppm` at 300 dpi, each label's cell decoded by `zbarimg`, the text found by `pdftotext`;
//! geometry checked from the drawing operations; ZPL against a reviewed golden file.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use vesper::labels::layout::{self, PT_PER_MM};
use vesper::labels::{self, Area, Format, LabelData, Stock};
use vesper::serial::{self, SerialNumber};

fn batch(count: usize) -> Vec<LabelData> {
    let date = chrono::NaiveDate::from_ymd_opt(2026, 1, 18).unwrap();
    serial::generate_distinct(
        "BC".parse().unwrap(),
        "02".parse().unwrap(),
        date,
        count,
        &mut rand::rng(),
        |_| false,
    )
    .unwrap()
    .iter()
    .map(|sn: &SerialNumber| labels::from_serial(sn, Some("B-0042")))
    .collect()
}

fn tool(name: &str, args: &[&str]) -> std::process::Output {
    Command::new(name).args(args).output().unwrap_or_else(|_| {
        panic!("{name} is missing: ./scripts/test installs poppler-utils and zbar-tools")
    })
}

/// Decodes the QR code of one label cell: renders just that cell at 300 dpi and runs zbarimg.
fn decode_cell(pdf: &Path, page: usize, area: &Area, dir: &Path) -> Vec<String> {
    let px = |mm: f32| ((mm / 25.4) * 300.0).round() as i64;
    let prefix = dir.join(format!("cell-{page}-{}-{}", px(area.x), px(area.y)));
    let page_no = (page + 1).to_string();
    let out = tool(
        "pdftoppm",
        &[
            "-r",
            "300",
            "-f",
            &page_no,
            "-l",
            &page_no,
            "-singlefile",
            "-gray",
            "-x",
            &px(area.x).to_string(),
            "-y",
            &px(area.y).to_string(),
            "-W",
            &px(area.width).to_string(),
            "-H",
            &px(area.height).to_string(),
            "-png",
            pdf.to_str().unwrap(),
            prefix.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "pdftoppm: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = prefix.with_extension("png");
    let out = tool(
        "zbarimg",
        &[
            "--raw",
            "-q",
            "-Sdisable",
            "-Sqrcode.enable",
            png.to_str().unwrap(),
        ],
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_preset_scans_and_reads_back_across_pages() {
    let dir = tempfile::tempdir().unwrap();
    for stock in labels::stock::presets() {
        let count = if stock.per_page() > 1 {
            stock.per_page() as usize + 4
        } else {
            3
        };
        let data = batch(count);
        let (bytes, media) = labels::render(&data, &stock, Format::Pdf, 0).unwrap();
        assert_eq!(media, "application/pdf");
        let pdf = dir.path().join(format!("{}.pdf", stock.name));
        std::fs::write(&pdf, &bytes).unwrap();
        let info =
            String::from_utf8_lossy(&tool("pdfinfo", &[pdf.to_str().unwrap()]).stdout).into_owned();
        let pages = layout::pages(count, &stock, 0);
        assert!(pages > 1, "{}: the batch spans pages", stock.name);
        assert!(
            info.contains(&format!("Pages:           {pages}")),
            "{}: {info}",
            stock.name
        );

        let placed = layout::layout(&data, &stock, 0).unwrap();
        let mut decoded = BTreeSet::new();
        for label in &placed {
            let found = decode_cell(&pdf, label.page, &label.area, dir.path());
            assert_eq!(
                found.len(),
                1,
                "{}: one QR code per label cell, found {found:?}",
                stock.name
            );
            decoded.insert(found[0].clone());
        }
        let expected: BTreeSet<String> = data.iter().map(|d| d.serial_number.clone()).collect();
        assert_eq!(
            decoded, expected,
            "{}: decoded codes equal the batch",
            stock.name
        );

        let text = String::from_utf8_lossy(
            &tool("pdftotext", &["-layout", pdf.to_str().unwrap(), "-"]).stdout,
        )
        .into_owned();
        for d in &data {
            assert!(
                text.contains(&d.serial_number),
                "{}: {} not in the text",
                stock.name,
                d.serial_number
            );
        }
        assert_eq!(text.matches("HW type BC").count(), count, "{}", stock.name);
        assert_eq!(
            text.matches("HW version 02").count(),
            count,
            "{}",
            stock.name
        );
        assert_eq!(
            text.matches("Batch B-0042").count(),
            count,
            "{}",
            stock.name
        );
    }
}

/// One token of a PDF content stream: a number, a name, a string or an operator.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    Number(f32),
    Name(String),
    Text(String),
    Operator(String),
}

/// Splits a content stream into tokens (PDF 1.7, section 7.2: whitespace, delimiters, literal
/// strings with escapes and balanced parentheses, names): written from the specification, not
/// from the writer.
fn tokens(stream: &[u8]) -> Vec<Token> {
    let mut out = Vec::new();
    let mut i = 0;
    let delimiter = |b: u8| b"()<>[]{}/%".contains(&b) || b.is_ascii_whitespace();
    while i < stream.len() {
        let b = stream[i];
        if b.is_ascii_whitespace() {
            i += 1;
        } else if b == b'(' {
            let (mut depth, mut text) = (1, Vec::new());
            i += 1;
            while depth > 0 {
                let c = stream[i];
                i += 1;
                match c {
                    b'\\' => {
                        text.push(stream[i]);
                        i += 1;
                    }
                    b'(' => {
                        depth += 1;
                        text.push(c);
                    }
                    b')' => {
                        depth -= 1;
                        if depth > 0 {
                            text.push(c);
                        }
                    }
                    _ => text.push(c),
                }
            }
            out.push(Token::Text(String::from_utf8(text).unwrap()));
        } else if b == b'/' {
            let start = i + 1;
            i = start;
            while i < stream.len() && !delimiter(stream[i]) {
                i += 1;
            }
            out.push(Token::Name(
                String::from_utf8_lossy(&stream[start..i]).into(),
            ));
        } else {
            let start = i;
            while i < stream.len() && !delimiter(stream[i]) {
                i += 1;
            }
            let word = std::str::from_utf8(&stream[start..i]).unwrap();
            out.push(match word.parse::<f32>() {
                Ok(n) => Token::Number(n),
                Err(_) => Token::Operator(word.to_owned()),
            });
        }
    }
    out
}

/// Boxes drawn on a page, read from its content stream (rectangles through the current
/// transformation matrix, text by font size and Helvetica widths), in millimetres from the
/// page's top-left.
fn drawn_boxes(stream: &[u8], page_height: f32) -> Vec<Area> {
    let mut boxes = Vec::new();
    let (mut size, mut bold, mut cursor) = (0.0f32, false, (0.0f32, 0.0f32));
    let identity = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0];
    let (mut ctm, mut stack) = (identity, Vec::new());
    let mut operands: Vec<Token> = Vec::new();
    for token in tokens(stream) {
        let Token::Operator(op) = token else {
            operands.push(token);
            continue;
        };
        let numbers: Vec<f32> = operands
            .iter()
            .filter_map(|t| match t {
                Token::Number(n) => Some(*n),
                _ => None,
            })
            .collect();
        match op.as_str() {
            "q" => stack.push(ctm),
            "Q" => ctm = stack.pop().unwrap_or(identity),
            "cm" => {
                let m = &numbers[..6];
                let [a, b, c, d, e, f] = ctm;
                ctm = [
                    m[0] * a + m[1] * c,
                    m[0] * b + m[1] * d,
                    m[2] * a + m[3] * c,
                    m[2] * b + m[3] * d,
                    m[4] * a + m[5] * c + e,
                    m[4] * b + m[5] * d + f,
                ];
            }
            "re" => {
                let (x, y, w, h) = (numbers[0], numbers[1], numbers[2], numbers[3]);
                let map = |x: f32, y: f32| {
                    (
                        ctm[0] * x + ctm[2] * y + ctm[4],
                        ctm[1] * x + ctm[3] * y + ctm[5],
                    )
                };
                let (p, q) = (map(x, y), map(x + w, y + h));
                let (x0, x1, y0, y1) = (p.0.min(q.0), p.0.max(q.0), p.1.min(q.1), p.1.max(q.1));
                boxes.push(Area {
                    x: x0 / PT_PER_MM,
                    y: page_height - y1 / PT_PER_MM,
                    width: (x1 - x0) / PT_PER_MM,
                    height: (y1 - y0) / PT_PER_MM,
                });
            }
            "Tf" => {
                size = numbers[0];
                bold = operands.iter().any(|t| t == &Token::Name("F2".into()));
            }
            "Td" => cursor = (numbers[0] / PT_PER_MM, page_height - numbers[1] / PT_PER_MM),
            "Tj" => {
                let Some(Token::Text(text)) = operands.last().cloned() else {
                    panic!("Tj without a string");
                };
                let face = if bold {
                    labels::Face::Bold
                } else {
                    labels::Face::Regular
                };
                let line = vesper::labels::layout::TextLine {
                    text,
                    face,
                    size_pt: size,
                    x: cursor.0,
                    baseline: cursor.1,
                };
                boxes.push(line.area());
            }
            _ => {}
        }
        operands.clear();
    }
    boxes
}

#[test]
fn nothing_crosses_its_label_edge() {
    for stock in labels::stock::presets() {
        let data = batch(stock.per_page() as usize + 1);
        let placed = layout::layout(&data, &stock, 0).unwrap();
        for page in 0..layout::pages(data.len(), &stock, 0) {
            let on_page: Vec<&layout::Placed> = placed.iter().filter(|p| p.page == page).collect();
            let areas: Vec<Area> = on_page.iter().map(|p| p.area).collect();
            let stream = vesper::labels::pdf::page_content(&on_page, &stock);
            let boxes = drawn_boxes(&stream, stock.page_height);
            assert!(!boxes.is_empty());
            for b in boxes {
                let holders = areas.iter().filter(|a| a.contains(&b)).count();
                assert_eq!(
                    holders, 1,
                    "{}: page {page}: {b:?} is not inside exactly one label",
                    stock.name
                );
            }
        }
        for p in &placed {
            assert!(
                p.qr.module >= stock.min_module(),
                "{}: module {}",
                stock.name,
                p.qr.module
            );
            let qr = Area {
                x: p.qr.x,
                y: p.qr.y,
                width: p.qr.size(),
                height: p.qr.size(),
            };
            for line in &p.lines {
                let a = line.area();
                let apart = a.x >= qr.x + qr.width
                    || a.y >= qr.y + qr.height
                    || a.x + a.width <= qr.x
                    || a.y + a.height <= qr.y;
                assert!(
                    apart,
                    "{}: text `{}` enters the QR code's quiet zone",
                    stock.name, line.text
                );
            }
        }
    }
}

#[test]
fn skip_starts_on_a_partly_used_sheet() {
    let stock = Stock::find("a4-l7160", &[]).unwrap();
    let data = batch(20);
    let placed = layout::layout(&data, &stock, 5).unwrap();
    assert_eq!(
        (placed[0].page, placed[0].area.x, placed[0].area.y),
        (0, stock.slot_origin(5).0, stock.slot_origin(5).1)
    );
    assert_eq!(
        placed[16].page, 1,
        "label 17 after 5 used ones is the 22nd slot: page 2"
    );
    assert_eq!(layout::pages(20, &stock, 5), 2);
}

#[test]
fn zpl_matches_the_reviewed_golden_file_and_holds_each_serial_number() {
    let sns = [
        "PV-26A18-BC02R-X7KQA",
        "PV-26A18-BC02R-M4TZC",
        "PV-26A18-BC02R-J6RTA",
    ];
    let data: Vec<LabelData> = sns
        .iter()
        .map(|s| labels::from_serial(&s.parse().unwrap(), Some("B-0042")))
        .collect();
    for stock in ["roll-2x1in", "roll-4x6in", "roll-62x29"] {
        let stock = Stock::find(stock, &[]).unwrap();
        let (zpl, _) = labels::render(&data, &stock, Format::Zpl, 0).unwrap();
        let zpl = String::from_utf8(zpl).unwrap();
        let golden = crate::support::root().join(format!("tests/golden/labels-{}.zpl", stock.name));
        if std::env::var_os("VESPER_BLESS").is_some() {
            std::fs::write(&golden, &zpl).unwrap();
        }
        assert_eq!(
            zpl,
            std::fs::read_to_string(&golden).unwrap(),
            "{} (VESPER_BLESS=1 rewrites after a reviewed change)",
            stock.name
        );
        // Parse it back: one ^XA..^XZ block per label, its QR field and its text fields.
        let blocks: Vec<&str> = zpl.split("^XZ").filter(|b| b.contains("^XA")).collect();
        assert_eq!(blocks.len(), sns.len());
        for (block, sn) in blocks.iter().zip(sns) {
            let qr = block
                .split("^BQN")
                .nth(1)
                .and_then(|r| r.split("^FDMA,").nth(1))
                .and_then(|r| r.split("^FS").next());
            assert_eq!(qr, Some(sn), "{}", stock.name);
            let texts: Vec<&str> = block
                .split("^FD")
                .skip(1)
                .map(|f| f.split("^FS").next().unwrap())
                .collect();
            assert!(
                texts.contains(&sn)
                    && texts.contains(&"HW type BC")
                    && texts.contains(&"HW version 02")
                    && texts.contains(&"Batch B-0042"),
                "{texts:?}"
            );
        }
    }
    let sheet = Stock::find("a4-l7160", &[]).unwrap();
    assert!(
        labels::render(&data, &sheet, Format::Zpl, 0)
            .unwrap_err()
            .to_string()
            .contains("roll stock")
    );
}

#[test]
fn bad_input_is_refused_with_the_reason() {
    let data = batch(1);
    let mut tiny = Stock::find("roll-62x29", &[]).unwrap();
    tiny.label_width = 12.0;
    tiny.page_width = 12.0;
    tiny.column_pitch = 12.0;
    tiny.label_height = 8.0;
    tiny.page_height = 8.0;
    tiny.row_pitch = 8.0;
    let err = labels::render(&data, &tiny, Format::Pdf, 0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("too small"), "{err}");
    assert!(
        labels::render(
            &[],
            &Stock::find("roll-62x29", &[]).unwrap(),
            Format::Pdf,
            0
        )
        .unwrap_err()
        .to_string()
        .contains("no labels")
    );
    let mut odd = data.clone();
    odd[0].batch = Some("Lot ß".into());
    assert!(
        labels::render(
            &odd,
            &Stock::find("roll-62x29", &[]).unwrap(),
            Format::Pdf,
            0
        )
        .unwrap_err()
        .to_string()
        .contains("ASCII")
    );
    assert!(Stock::find("a5", &[]).is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_backend_and_the_command_line_print_a_batch() {
    let app = crate::backend_support::App::start().await;
    let (batch, sns) = app.batch(25).await;
    let r = app
        .client
        .post(format!("{}/manufacturing/batch/{batch}/labels", app.api))
        .bearer_auth(&app.technician)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/pdf");
    let pdf = r.bytes().await.unwrap();
    assert!(pdf.starts_with(b"%PDF"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("batch.pdf");
    std::fs::write(&file, &pdf).unwrap();
    let text = String::from_utf8_lossy(&tool("pdftotext", &[file.to_str().unwrap(), "-"]).stdout)
        .into_owned();
    assert!(sns.iter().all(|sn| text.contains(sn.as_str())));
    assert_eq!(text.matches(&format!("Batch {batch}")).count(), 25);

    let zpl = app
        .client
        .post(format!(
            "{}/manufacturing/batch/{batch}/labels?format=zpl&stock=roll-2x1in",
            app.api
        ))
        .bearer_auth(&app.technician)
        .send()
        .await
        .unwrap();
    assert_eq!(zpl.status(), 200);
    assert_eq!(zpl.text().await.unwrap().matches("^XA").count(), 25);
    for (query, status) in [
        ("?format=zpl", 400),
        ("?stock=a5", 400),
        ("?format=svg", 400),
    ] {
        let r = app
            .client
            .post(format!(
                "{}/manufacturing/batch/{batch}/labels{query}",
                app.api
            ))
            .bearer_auth(&app.technician)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{query}");
    }
    let r = app
        .client
        .post(format!("{}/manufacturing/batch/B-9999/labels", app.api))
        .bearer_auth(&app.technician)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = app
        .client
        .post(format!("{}/manufacturing/batch/{batch}/labels", app.api))
        .bearer_auth(&app.viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // The command line, reading the batch from the backend.
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        vesper::config::EXAMPLE.replace(
            "url = \"http://127.0.0.1:8080\"",
            &format!("url = \"{}\"", app.api),
        ),
    )
    .unwrap();
    for (path, text) in vesper::config::EXAMPLE_TABLES {
        std::fs::create_dir_all(dir.path().join(path).parent().unwrap()).unwrap();
        std::fs::write(dir.path().join(path), text).unwrap();
    }
    let out_file = dir.path().join("cli.pdf");
    let (cfg_s, out_s, token) = (
        cfg.to_str().unwrap().to_owned(),
        out_file.to_str().unwrap().to_owned(),
        app.technician.clone(),
    );
    let batch_id = batch.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_vesper"))
            .args([
                "--config",
                &cfg_s,
                "labels",
                "--batch",
                &batch_id,
                "--stock",
                "letter-5160",
                "-o",
                &out_s,
            ])
            .env("VESPER_TOKEN", token)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", crate::support::stderr(&out));
    let text =
        String::from_utf8_lossy(&tool("pdftotext", &[out_file.to_str().unwrap(), "-"]).stdout)
            .into_owned();
    assert!(sns.iter().all(|sn| text.contains(sn.as_str())));
    let no_token = Command::new(env!("CARGO_BIN_EXE_vesper"))
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "labels",
            "--batch",
            &batch,
            "-o",
            out_file.to_str().unwrap(),
        ])
        .env_remove("VESPER_TOKEN")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&no_token.stderr).contains("VESPER_TOKEN"),
        "{}",
        String::from_utf8_lossy(&no_token.stderr)
    );
    let print = Command::new(env!("CARGO_BIN_EXE_vesper"))
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "labels",
            "--sn",
            sns[0].as_str(),
            "--stock",
            "roll-2x1in",
            "--format",
            "zpl",
            "-o",
        ])
        .arg(dir.path().join("one.zpl"))
        .arg("--print")
        .output()
        .unwrap();
    assert!(!print.status.success());
    assert!(
        String::from_utf8_lossy(&print.stderr).contains("the file is kept at"),
        "{}",
        String::from_utf8_lossy(&print.stderr)
    );
    assert!(dir.path().join("one.zpl").exists());
    app.stop().await;
}
