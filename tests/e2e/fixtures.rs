//! The fixture folders (tests/fixtures/README.md): every valid file passes its
//! checker, every invalid one fails with the messages its `expect:` lines give.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::warden_bin;

/// `(file, comment leader, command)` for each fixture folder.
const KINDS: [(&str, &str, &[&str]); 3] = [
    ("rules", "//", &["rules", "check"]),
    ("rule-tests", "#", &["rules", "test"]),
    ("config", "#", &["config", "check"]),
];

fn files_in(kind: &str, which: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(kind)
        .join(which);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    files
}

/// The values of the `LEADER KEY: value` comment lines of `text`.
fn comments(text: &str, leader: &str, key: &str) -> Vec<String> {
    let prefix = format!("{leader} {key}:");
    text.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim().to_string())
        .collect()
}

fn check(file: &Path, leader: &str, command: &[&str]) -> (i32, String, Vec<String>) {
    let text = std::fs::read_to_string(file).unwrap();
    let args: Vec<String> = comments(&text, leader, "args")
        .iter()
        .flat_map(|a| a.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .collect();
    let name = file.file_name().unwrap().to_str().unwrap();
    let out = Command::new(warden_bin())
        .args(command)
        .args(&args)
        .arg(name)
        .current_dir(file.parent().unwrap())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    (
        out.status.code().unwrap_or(-1),
        format!("{stdout}{stderr}"),
        comments(&text, leader, "expect"),
    )
}

#[test]
fn every_fixture_gets_its_message() {
    let mut failures = Vec::new();
    let mut count = 0;
    for (kind, leader, command) in KINDS {
        for file in files_in(kind, "valid") {
            count += 1;
            let (code, out, _) = check(&file, leader, command);
            if code != 0 {
                failures.push(format!("{}: exit {code}, want 0:\n{out}", file.display()));
            }
        }
        for file in files_in(kind, "invalid") {
            count += 1;
            let (code, out, expect) = check(&file, leader, command);
            if expect.is_empty() {
                failures.push(format!("{}: has no `expect:` line", file.display()));
            }
            if code != 1 {
                failures.push(format!("{}: exit {code}, want 1:\n{out}", file.display()));
            }
            for want in expect {
                if !out.lines().any(|l| l.contains(&want)) {
                    failures.push(format!(
                        "{}: want a line with\n  {want}\ngot:\n{out}",
                        file.display()
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(count >= 40, "only {count} fixtures");
}
