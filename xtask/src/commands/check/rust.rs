//! `fmt` and `clippy`: cargo's own tools, their findings turned into located problems.

use std::{collections::BTreeSet, path::Path};

use anyhow::Result;

use super::{Problem, rel, tail};
use crate::process::Command;
use crate::process::exec;

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// `cargo fmt --all --check`: one problem per file that would change.
pub fn fmt(root: &Path) -> Result<Vec<Problem>> {
    let out = exec(&Command::new(cargo(), root).args(["fmt", "--all", "--check"]))?;
    if out.success {
        return Ok(Vec::new());
    }
    // rustfmt prints `Diff in /abs/path.rs:12:` (older: `Diff in /abs/path.rs at line 12:`).
    let mut seen = BTreeSet::new();
    let mut problems = Vec::new();
    for line in out.stdout.lines().chain(out.stderr.lines()) {
        let Some(rest) = line.strip_prefix("Diff in ") else { continue };
        let rest = rest.trim_end_matches(':');
        let (file, at_line) = match rest.split_once(" at line ") {
            Some((f, l)) => (f.to_string(), l.to_string()),
            None => match rest.rsplit_once(':') {
                Some((f, l)) if l.bytes().all(|b| b.is_ascii_digit()) => (f.to_string(), l.to_string()),
                _ => (rest.to_string(), String::new()),
            },
        };
        let file = rel(root, Path::new(&file));
        if seen.insert(file.clone()) {
            problems.push(Problem::new(
                format!("{file}:{at_line}"),
                "not formatted as rustfmt.toml says",
                "run `cargo fmt --all` (and stage the result)",
            ));
        }
    }
    if problems.is_empty() {
        problems.push(Problem::new("cargo fmt", tail(&out, 20), "run `cargo fmt --all` and read its error"));
    }
    Ok(problems)
}

/// `cargo clippy --workspace --all-targets -- -D warnings`, one problem per diagnostic.
pub fn clippy(checkout: &Path) -> Result<Vec<Problem>> {
    let cmd = Command::new(cargo(), checkout).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--quiet",
        "--message-format=short",
        "--",
        "-D",
        "warnings",
    ]);
    let out = exec(&cmd)?;
    if out.success {
        return Ok(Vec::new());
    }
    // Short format: `xtask/src/x.rs:12:5: error: message`.
    let mut problems = Vec::new();
    for line in out.stderr.lines() {
        if let Some((at, msg)) = line.split_once(": error: ").or_else(|| line.split_once(": warning: ")) {
            problems.push(Problem::new(
                at,
                msg,
                "fix the lint, or apply clippy's suggestion: `cargo clippy --fix --workspace --all-targets --allow-dirty`",
            ));
        }
    }
    if problems.is_empty() {
        problems.push(Problem::new(
            "cargo clippy",
            tail(&out, 30),
            "make `cargo clippy --workspace --all-targets` build",
        ));
    }
    Ok(problems)
}
