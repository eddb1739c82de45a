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
fn the_source_tree_has_no_import_cycle_no_backward_import_and_no_oversized_file() {
    let (ok, text) = check(&root().join("src"));
    assert!(ok, "{text}");
    assert!(
        text.contains("no import cycle, no later stage imported"),
        "{text}"
    );
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

#[test]
fn the_checker_finds_a_cycle_between_a_folder_module_and_its_child() {
    let (ok, text) = check(&root().join("scripts/testdata/child-cycle/src"));
    assert!(!ok, "{text}");
    assert!(text.contains("a -> a::b (a/mod.rs:3)"), "{text}");
    assert!(text.contains("a::b -> a (a/b.rs:4)"), "{text}");
}

#[test]
fn the_checker_refuses_an_import_of_a_later_stage_and_an_oversized_file() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("config")).expect("src/config");
    std::fs::write(src.join("lib.rs"), "pub mod config;\npub mod probe;\n").expect("lib.rs");
    std::fs::write(src.join("probe.rs"), "pub const P: u32 = 1;\n").expect("probe.rs");
    let mut config = String::from("pub mod big;\npub const C: u32 = crate::probe::P;\n");
    config.push_str(&"// filler\n".repeat(10));
    std::fs::write(src.join("config/mod.rs"), config).expect("config/mod.rs");
    let big = "pub const B: u32 = 0;\n".repeat(701)
        + "#[cfg(test)]\nmod tests {\n"
        + &"    // tests do not count\n".repeat(50)
        + "}\n";
    std::fs::write(src.join("config/big.rs"), big).expect("config/big.rs");
    let (ok, text) = check(&src);
    assert!(!ok, "{text}");
    assert!(
        text.contains("config/mod.rs:2: config imports probe, a later stage"),
        "{text}"
    );
    assert!(
        text.contains("config/big.rs: 701 lines without its tests, over 700"),
        "{text}"
    );
}

/// A new user reads what building needs before the two set-up commands, and it is what
/// Cargo.toml requires (`rust-version`); the commands are the first code block, exactly two.
#[test]
fn the_readme_says_what_building_needs_above_the_two_set_up_commands() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).expect("Cargo.toml");
    let version = manifest
        .lines()
        .find_map(|line| line.strip_prefix("rust-version = "))
        .map(|v| v.trim_matches('"'))
        .expect("Cargo.toml states its rust-version");
    let (before, after) = readme.split_once("```sh\n").expect("a first code block");
    assert!(
        before.contains(&format!("Rust {version} or newer")),
        "{before}"
    );
    assert!(
        before.contains("C compiler") && before.contains("rustup"),
        "{before}"
    );
    let commands: Vec<&str> = after
        .split_once("```")
        .expect("the block ends")
        .0
        .lines()
        .collect();
    assert_eq!(commands, ["cargo run --release -- demo", "bash .ci/run"]);
}
