//! The guide's links lead somewhere, every chapter is in the summary, and every `{{#include}}`
//! names a file and an anchor that exist. (Its inline Rust blocks are doctests of this crate.)

use std::path::{Path, PathBuf};

fn book() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../book/src")
}

fn chapters() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(book())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    files.sort();
    files
}

/// `](target)` links that are not external.
fn local_links(text: &str) -> Vec<String> {
    text.match_indices("](")
        .filter_map(|(i, _)| {
            let rest = &text[i + 2..];
            let end = rest.find(')')?;
            let target = &rest[..end];
            (!target.starts_with("http") && !target.starts_with('#') && !target.is_empty())
                .then(|| target.to_owned())
        })
        .collect()
}

#[test]
fn every_chapter_is_in_the_summary_and_every_link_resolves() {
    let summary = std::fs::read_to_string(book().join("SUMMARY.md")).unwrap();
    for chapter in chapters() {
        let name = chapter.file_name().unwrap().to_str().unwrap().to_owned();
        if name != "SUMMARY.md" {
            assert!(
                summary.contains(&format!("({name})")),
                "{name} is not in SUMMARY.md"
            );
        }
        let text = std::fs::read_to_string(&chapter).unwrap();
        for link in local_links(&text) {
            let file = link.split('#').next().unwrap();
            assert!(
                book().join(file).exists(),
                "{name} links to {link}, which does not exist"
            );
            if let Some(anchor) = link.split('#').nth(1) {
                let target = std::fs::read_to_string(book().join(file)).unwrap();
                let found = target
                    .lines()
                    .filter(|l| l.starts_with('#'))
                    .any(|heading| {
                        let slug: String = heading
                            .trim_start_matches('#')
                            .trim()
                            .to_lowercase()
                            .chars()
                            .filter_map(|c| match c {
                                ' ' => Some('-'),
                                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                                _ => None,
                            })
                            .collect();
                        slug == anchor
                    });
                assert!(
                    found,
                    "{name} links to {link}, but {file} has no such heading"
                );
            }
        }
    }
}

#[test]
fn every_include_names_an_existing_file_and_anchor() {
    for chapter in chapters() {
        let text = std::fs::read_to_string(&chapter).unwrap();
        for (i, _) in text.match_indices("{{#include ") {
            let directive = &text[i + 11..i + text[i..].find("}}").unwrap()];
            let (path, anchor) = directive
                .split_once(':')
                .map_or((directive, None), |(p, a)| (p, Some(a)));
            let file = book().join(path.trim());
            let source = std::fs::read_to_string(&file)
                .unwrap_or_else(|_| panic!("{chapter:?} includes {path}, which does not exist"));
            if let Some(anchor) = anchor {
                assert!(
                    source.contains(&format!("ANCHOR: {anchor}"))
                        && source.contains(&format!("ANCHOR_END: {anchor}")),
                    "{chapter:?} includes {path}:{anchor}, but that anchor is not there"
                );
            }
        }
    }
}
