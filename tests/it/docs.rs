//! The README and the book (`docs/`, mdBook) stay true to the repository: every relative link
//! names a file that exists, every `#anchor` a heading of its file (slugs as GitHub and mdBook
//! make them), every chapter is in the book's summary and every summary entry is a chapter, and
//! the README stays the short front door (under 250 lines).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::support::root;

/// A heading's anchor, as GitHub and mdBook make it: lower case, punctuation other than `-`
/// and `_` dropped, spaces to `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a Markdown file's headings (outside code blocks).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut fenced = false;
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            out.insert(slug(line.trim_start_matches('#')));
        }
    }
    out
}

/// The links of a Markdown file (`[text](target)` outside code blocks and inline code).
fn links(text: &str) -> Vec<String> {
    let mut fenced = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            out.push(after[..end].to_owned());
            rest = &after[end..];
        }
    }
    out
}

fn markdown_files() -> Vec<PathBuf> {
    let mut files = vec![root().join("README.md")];
    let mut chapters: Vec<PathBuf> = std::fs::read_dir(root().join("docs/src"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    chapters.sort();
    files.extend(chapters);
    files
}

#[test]
fn every_link_of_the_readme_and_the_book_resolves() {
    let mut broken = Vec::new();
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        for link in links(&text) {
            if link.contains("://") || link.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = link.split_once('#').unwrap_or((&link, ""));
            let target = if path.is_empty() {
                file.clone()
            } else {
                file.parent().unwrap().join(path)
            };
            if !target.exists() {
                broken.push(format!("{}: {link}: no such file", file.display()));
                continue;
            }
            if !anchor.is_empty() && target.extension().is_some_and(|e| e == "md") {
                let headings = anchors(&std::fs::read_to_string(&target).unwrap());
                if !headings.contains(anchor) {
                    broken.push(format!("{}: {link}: no such heading", file.display()));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_book_summary_lists_every_chapter() {
    let src = root().join("docs/src");
    let summary = std::fs::read_to_string(src.join("SUMMARY.md")).unwrap();
    let listed: BTreeSet<String> = links(&summary).into_iter().collect();
    for file in markdown_files().iter().skip(1) {
        let name = file.file_name().unwrap().to_str().unwrap().to_owned();
        if name != "SUMMARY.md" {
            assert!(
                listed.contains(&name),
                "{name} is not in docs/src/SUMMARY.md"
            );
        }
    }
    for name in &listed {
        assert!(
            Path::new(&src.join(name)).exists(),
            "SUMMARY.md lists {name}, which does not exist"
        );
    }
}

#[test]
fn the_readme_is_a_short_front_door() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(
        lines < 250,
        "README.md has {lines} lines; move detail into docs/"
    );
    for must in [
        "cargo run --release -- demo",
        "./scripts/test",
        "benches/RESULTS.md",
        "docs/src/SUMMARY.md",
    ] {
        assert!(readme.contains(must), "the README does not mention {must}");
    }
}

#[test]
fn slugs_are_made_as_github_makes_them() {
    assert_eq!(
        slug(" The sync backend (`vesper serve`)"),
        "the-sync-backend-vesper-serve"
    );
    assert_eq!(slug("E-mail: the outbox"), "e-mail-the-outbox");
    assert_eq!(
        slug("NVS: compatibility with Espressif's generator, and the differences"),
        "nvs-compatibility-with-espressifs-generator-and-the-differences"
    );
}
