//! The documentation is self-contained: every relative link in the README
//! and `docs/` leads to a file of the repository, `docs/README.md` indexes
//! every page of `docs/`, and no source or documentation file points to
//! notes outside the repository.
#![allow(non_snake_case)]

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Directories whose files are not checked for outside references: build
/// output.
const NOT_SCANNED: &[&str] = &["target", ".git", "fuzz/target"];

/// What a reference to a file outside the repository looks like: the
/// team's notes and the protocol reference they came from.
const OUTSIDE: &[&str] = &[
    "shared/",
    "spec/",
    "design.md",
    "homa-reference",
    "reference 4.",
    "/work/",
];

/// The markdown pages whose links are checked.
fn pages() -> Vec<PathBuf> {
    let mut v = vec![root().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    v.extend(docs);
    v
}

/// The targets of the inline links `[text](target)` of a markdown text.
fn links(text: &str) -> Vec<String> {
    let mut v = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("](") {
        rest = &rest[i + 2..];
        if let Some(j) = rest.find(')') {
            v.push(rest[..j].to_string());
        }
    }
    v
}

#[test]
fn docs__relative_links_lead_to_files() {
    let mut checked = 0;
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        for link in links(&text) {
            if link.starts_with("http://") || link.starts_with("https://") || link.starts_with('#')
            {
                continue;
            }
            let file = link.split('#').next().unwrap();
            let target = page.parent().unwrap().join(file);
            assert!(
                target.exists(),
                "{} links to {link}, which does not exist",
                page.display()
            );
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} links checked");
}

#[test]
fn docs__index_lists_every_page() {
    let index = std::fs::read_to_string(root().join("docs/README.md")).unwrap();
    let listed = links(&index);
    for page in pages().iter().skip(1) {
        let name = page.file_name().unwrap().to_str().unwrap();
        if name == "README.md" {
            continue;
        }
        assert!(
            listed.iter().any(|l| l == name),
            "docs/README.md does not list {name}"
        );
    }
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(
        links(&readme).iter().any(|l| l == "docs/README.md"),
        "the README does not link the documentation index"
    );
}

fn scan(dir: &Path, found: &mut Vec<String>, files: &mut usize) {
    let root = root();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let rel = path
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if NOT_SCANNED.iter().any(|n| rel == *n) {
            continue;
        }
        if path.is_dir() {
            scan(&path, found, files);
            continue;
        }
        let checked_kind = ["rs", "md", "toml", "lua", "h", "c"]
            .iter()
            .any(|e| path.extension().is_some_and(|x| x == *e))
            || rel == ".ci/run";
        if !checked_kind || rel == "crates/homa-cli/tests/docs.rs" {
            continue;
        }
        *files += 1;
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        for (n, line) in text.lines().enumerate() {
            if OUTSIDE.iter().any(|o| line.contains(o)) {
                found.push(format!("{rel}:{}: {}", n + 1, line.trim()));
            }
        }
    }
}

#[test]
fn docs__no_file_points_outside_the_repository() {
    let (mut found, mut files) = (Vec::new(), 0);
    scan(&root(), &mut found, &mut files);
    assert!(files > 50, "only {files} files scanned");
    assert!(
        found.is_empty(),
        "references to files outside the repository:\n{}",
        found.join("\n")
    );
}
