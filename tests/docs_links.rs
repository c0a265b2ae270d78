//! The manual's links: every relative link in the top-level Markdown files and in docs/*.md names a file that
//! exists, and the README links every page of docs/, so any topic is one click from the landing page.

use std::path::{Path, PathBuf};

/// The Markdown files a reader follows links through: README.md and its siblings, and every docs/*.md.
fn markdown_files(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in [root.to_path_buf(), root.join("docs")] {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The targets of `[text](target)` links (and images) in `text` that point into the repository: no scheme,
/// no bare `#anchor`, the `#anchor` part cut off.
fn relative_links(text: &str) -> Vec<&str> {
    text.match_indices("](")
        .filter_map(|(at, _)| {
            let rest = &text[at + 2..];
            let target = &rest[..rest.find(')')?];
            let path = target.split('#').next().unwrap();
            let external = target.contains("://") || target.starts_with("mailto:");
            (!external && !path.is_empty() && !path.contains(char::is_whitespace)).then_some(path)
        })
        .collect()
}

#[test]
fn relative_links_finds_files_and_skips_urls_and_anchors() {
    let text = "[a](docs/cli.md) [b](cli.md#exit-codes) [c](#top) [d](https://example.com/x.md) \
                ![e](report.png) [f](../CHANGELOG.md)";
    assert_eq!(
        relative_links(text),
        ["docs/cli.md", "cli.md", "report.png", "../CHANGELOG.md"]
    );
}

#[test]
fn every_relative_link_names_a_file_that_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut broken = Vec::new();
    for file in markdown_files(root) {
        let text = std::fs::read_to_string(&file).unwrap();
        for link in relative_links(&text) {
            if !file.parent().unwrap().join(link).exists() {
                broken.push(format!(
                    "{}: {link}",
                    file.strip_prefix(root).unwrap().display()
                ));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "links to files that do not exist:\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_readme_links_every_page_of_the_manual() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let linked = relative_links(&readme);
    let missing: Vec<String> = markdown_files(root)
        .iter()
        .map(|f| f.strip_prefix(root).unwrap().to_string_lossy().into_owned())
        .filter(|page| page.starts_with("docs/") && !linked.contains(&page.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "README.md does not link these pages of docs/: {missing:?}"
    );
}
