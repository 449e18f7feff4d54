//! The bad-manifest corpus (tests/fixtures/bad-manifests): each file says in
//! its leading comments where every problem is and how it is worded; the
//! parser must report exactly those, in that order, and nothing else.

use std::path::{Path, PathBuf};

use super::parse;
use super::tests::{fixture, workspace};

/// The corpus directory, shared with the end-to-end tests.
fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/bad-manifests")
}

/// `(line:column, words)` for each `# L:C words` line of a corpus file.
pub(crate) fn expectations(text: &str) -> Vec<(String, String)> {
    text.lines()
        .take_while(|l| l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix("# ")?;
            let (place, words) = rest.split_once(' ')?;
            let (line, col) = place.split_once(':')?;
            (line.parse::<usize>().is_ok() && col.parse::<usize>().is_ok())
                .then(|| (place.to_owned(), words.to_owned()))
        })
        .collect()
}

/// Words that would mean a message leaks how the parser is written.
const INTERNALS: &[&str] = &[
    "untagged", "variant", "struct ", "enum ", "i32", "i64", "u32", "f64", "Raw", "Spanned",
];

#[test]
fn every_bad_manifest_reports_each_of_its_problems_where_it_is() {
    let dir = fixture();
    let root = dir.path();
    // Links for the escape cases: out of the workspace, directly and through
    // a parent directory, dangling, and to a directory inside.
    std::fs::create_dir_all(root.join("deploy")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", root.join("deploy/link")).unwrap();
    std::os::unix::fs::symlink("/etc", root.join("outside-dir")).unwrap();
    std::os::unix::fs::symlink("nowhere", root.join("deploy/dangling")).unwrap();
    std::os::unix::fs::symlink("../assets", root.join("deploy/to-dir")).unwrap();
    let ws = workspace(root);

    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 150, "the corpus has {} files", files.len());
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let want = expectations(&text);
        assert!(!want.is_empty(), "{} expects nothing", file.display());
        let errors = match parse(Path::new("images.toml"), &text, &ws) {
            Ok(_) => {
                failures.push(format!("{}: accepted", file.display()));
                continue;
            }
            Err(e) => e,
        };
        let got: Vec<(String, String)> = errors
            .diagnostics
            .iter()
            .map(|d| {
                let (line, col) = errors.line_column(d.span.start);
                (format!("{line}:{col}"), d.message.clone())
            })
            .collect();
        let matches = got.len() == want.len()
            && got
                .iter()
                .zip(&want)
                .all(|((gp, gm), (wp, wm))| gp == wp && gm.contains(wm.as_str()));
        let rendered = errors.render(false);
        let leaks = got
            .iter()
            .any(|(_, m)| INTERNALS.iter().any(|w| m.contains(w)));
        if !matches || leaks || !rendered.contains('^') {
            failures.push(format!(
                "{}:\n  want {want:?}\n  got  {got:?}",
                file.display()
            ));
        }
        for (place, _) in &want {
            if !rendered.contains(&format!("images.toml:{place}")) {
                failures.push(format!("{}: {place} is not rendered", file.display()));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} corpus files:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}
