//! `python`: ruff over the Python project, and a byte-compile of every Python file. The
//! compile is Python's own `compile()` in memory — what py_compile does, minus writing a .pyc —
//! so no __pycache__ ever lands in the tree. pytest stays in `cargo xtask test`.

use std::path::{Path, PathBuf};

use anyhow::Result;

use super::{Problem, rel, tail};
use crate::process::exec;
use crate::{
    commands::check::tool_venv::{Tool, ToolVenv},
    process::Command,
};

/// Reads each file named on the command line and compiles it; one `path:line:col: error`
/// line per file that does not compile.
const COMPILE: &str = r#"
import sys
bad = 0
for path in sys.argv[1:]:
    try:
        with open(path, "rb") as f:
            compile(f.read(), path, "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as e:
        print(f"{path}:{getattr(e, 'lineno', 0) or 0}:{getattr(e, 'offset', 0) or 0}: {type(e).__name__}: {getattr(e, 'msg', e)}")
        bad = 1
sys.exit(bad)
"#;

fn python_dir(root: &Path) -> PathBuf {
    super::env_config::envs(root).map(|(dir, _)| dir).unwrap_or_else(|_| "python-service".into())
}

fn sources(root: &Path, dir: &Path) -> Vec<String> {
    let skip = [".venv", "dist", "build", "__pycache__", "node_modules", ".pytest_cache"];
    let mut files: Vec<String> = walkdir::WalkDir::new(root.join(dir))
        .into_iter()
        .filter_entry(|e| !skip.contains(&e.file_name().to_string_lossy().as_ref()))
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file() && e.path().extension().is_some_and(|x| x == "py"))
        .map(|e| rel(root, e.path()))
        .collect();
    files.sort();
    files
}

pub fn check(root: &Path) -> Result<Vec<Problem>> {
    let dir = python_dir(root);
    let files = sources(root, &dir);
    let mut problems = Vec::new();
    if !files.is_empty() {
        let out = exec(&Command::new("python3", root).args(["-c", COMPILE]).args(&files))?;
        if !out.success {
            for line in out.stdout.lines() {
                if let Some((at, msg)) = line.split_once(": ") {
                    problems.push(Problem::new(at, msg, "fix the syntax at that line (Python 3.11)"));
                }
            }
            if problems.is_empty() {
                problems.push(Problem::new("python3", tail(&out, 10), "make `python3` (3.11) runnable"));
            }
        }
    }
    let ruff = match ToolVenv::open(root).and_then(|v| v.ensure(Tool::Ruff)) {
        Ok(exe) => exe,
        Err(e) => {
            problems.push(super::tool_problem(Tool::Ruff, &e));
            return Ok(problems);
        }
    };
    // No cache: ruff would write .ruff_cache into the tree.
    let out = exec(
        &Command::new(ruff.to_string_lossy(), root)
            .args(["check", "--no-cache", "--output-format", "concise"])
            .arg(dir.to_string_lossy().as_ref()),
    )?;
    if !out.success {
        let before = problems.len();
        let prefix = format!("{}/", dir.to_string_lossy());
        for line in out.stdout.lines().filter(|l| l.starts_with(&prefix)) {
            // `python-service/src/x.py:12:5: F401 [*] `os` imported but unused`
            let mut parts = line.splitn(4, ':');
            let (Some(f), Some(l), Some(_col), Some(msg)) = (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let code = msg.split_whitespace().next().unwrap_or("");
            problems.push(Problem::new(
                format!("{f}:{l}"),
                format!("ruff{msg}"),
                format!(
                    "fix it (https://docs.astral.sh/ruff/rules/ explains {code}); fixes marked [*] apply with \
                     `{} check --fix {}`",
                    ruff.display(),
                    dir.display()
                ),
            ));
        }
        if problems.len() == before {
            problems.push(Problem::new("ruff", tail(&out, 20), "run ruff on the project and read its error"));
        }
    }
    Ok(problems)
}
