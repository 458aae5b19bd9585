//! `cargo xtask check`: named, typed checks of the repository, each reporting what is wrong
//! (file, key or line) and the exact fix. Without `--keep-going` the first failing check stops
//! the run; with it every check runs and one summary table ends the output. `--json` gives the
//! same report on stdout. `--staged` runs only the checks the staged change touches, on the
//! staged content (exported from the index), so a commit is checked as it will be recorded.

pub(crate) mod dockerfile;
mod env_config;
mod python;
mod rust;
mod staged;
#[cfg(test)]
mod tests;
pub mod tool_venv;
mod versions;
mod workflows;

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{Context as _, Result};
use clap::Args;
use serde::Serialize;

#[derive(Args)]
pub struct CheckArgs {
    /// Only the checks relevant to the staged change, run on the staged content (the
    /// pre-commit hook's mode). Nothing relevant staged: nothing to do.
    #[arg(long)]
    pub staged: bool,
    /// Run every check even after one fails, then print one summary table.
    #[arg(long)]
    pub keep_going: bool,
    /// The report as JSON on stdout (the same checks, problems and fixes).
    #[arg(long)]
    pub json: bool,
    /// Run only these checks (repeatable). Default: all.
    #[arg(long = "only", value_enum, value_name = "CHECK")]
    pub only: Vec<RepoCheck>,
}

/// Every check, cheapest first: without `--keep-going` a broken config stops the run before
/// clippy compiles anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
#[value(rename_all = "kebab-case")]
pub enum RepoCheck {
    /// dist.yaml loads and every path it names exists.
    DistYaml,
    /// The env configs (dist.yaml `envs`) have the same keys and types, no empty required value.
    EnvConfig,
    /// electron-app/package.json is the single source of the version; Electron ships every
    /// configured arch.
    Versions,
    /// `cargo fmt --all --check`.
    Fmt,
    /// ruff, and a byte-compile of every Python file (in memory: nothing written to the tree).
    Python,
    /// hadolint, plus our rules: no secret-looking ARG/ENV, pinned base images, requirements
    /// copied before sources.
    Dockerfiles,
    /// Structural rules and actionlint over .github/workflows/.
    Workflows,
    /// `cargo clippy --workspace --all-targets -- -D warnings`.
    Clippy,
}

impl RepoCheck {
    pub const ALL: [RepoCheck; 8] = [
        RepoCheck::DistYaml,
        RepoCheck::EnvConfig,
        RepoCheck::Versions,
        RepoCheck::Fmt,
        RepoCheck::Python,
        RepoCheck::Dockerfiles,
        RepoCheck::Workflows,
        RepoCheck::Clippy,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RepoCheck::DistYaml => "dist-yaml",
            RepoCheck::EnvConfig => "env-config",
            RepoCheck::Versions => "versions",
            RepoCheck::Fmt => "fmt",
            RepoCheck::Python => "python",
            RepoCheck::Dockerfiles => "dockerfiles",
            RepoCheck::Workflows => "workflows",
            RepoCheck::Clippy => "clippy",
        }
    }

    /// Whether a change to `path` (repository-relative, `/`-separated) can change this
    /// check's result: what `--staged` runs.
    pub fn wants(self, path: &str) -> bool {
        let file = path.rsplit('/').next().unwrap_or(path);
        let tools = path == crate::commands::check::tool_venv::PINS_FILE;
        match self {
            RepoCheck::Fmt | RepoCheck::Clippy => {
                file.ends_with(".rs")
                    || ["Cargo.toml", "Cargo.lock", "rustfmt.toml", "clippy.toml"].contains(&file)
                    || path.starts_with(".cargo/")
            }
            RepoCheck::DistYaml => {
                path == "dist.yaml"
                    || path == "electron-app/package.json"
                    || (path.starts_with("python-service/") && !path[15..].contains('/'))
            }
            RepoCheck::EnvConfig => {
                path == "dist.yaml"
                    || (path.starts_with("python-service/") && file.starts_with("config") && file.ends_with(".yaml"))
            }
            RepoCheck::Versions => {
                ["dist.yaml", "electron-app/package.json", "electron-app/pnpm-lock.yaml"].contains(&path)
                    || path == "electron-app/electron-builder.config.js"
                    || (path.starts_with("python-service/")
                        && (file.ends_with(".py") || ["pyproject.toml", "setup.cfg", "setup.py"].contains(&file)))
            }
            RepoCheck::Python => {
                tools
                    || (path.starts_with("python-service/")
                        && (file.ends_with(".py") || ["ruff.toml", ".ruff.toml", "pyproject.toml"].contains(&file)))
            }
            RepoCheck::Dockerfiles => {
                tools || path.starts_with("docker/") || dockerfile::is_dockerfile(file) || file == ".hadolint.yaml"
            }
            RepoCheck::Workflows => tools || path.starts_with(".github/workflows/"),
        }
    }

    fn run(self, cx: &Context) -> Result<Vec<Problem>> {
        match self {
            RepoCheck::DistYaml => Ok(match crate::config::Config::load(&cx.root) {
                Ok(_) => Vec::new(),
                Err(e) => vec![Problem::new(
                    crate::config::CONFIG_FILE,
                    format!("{e:#}"),
                    "fix the value or key the message names (dist.yaml's comments say what each key takes)",
                )],
            }),
            RepoCheck::EnvConfig => env_config::check(&cx.root),
            RepoCheck::Versions => versions::check(&cx.root),
            RepoCheck::Fmt => rust::fmt(&cx.root),
            RepoCheck::Python => python::check(&cx.root),
            RepoCheck::Dockerfiles => dockerfile::check(&cx.root),
            RepoCheck::Workflows => workflows::check(&cx.root),
            RepoCheck::Clippy => rust::clippy(&cx.checkout),
        }
    }
}

impl std::fmt::Display for RepoCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One thing wrong: where (a file, `file:line`, or a tool), what, and the fix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub at: String,
    pub message: String,
    pub fix: String,
}

impl Problem {
    pub fn new(at: impl Into<String>, message: impl Into<String>, fix: impl Into<String>) -> Problem {
        Problem { at: at.into(), message: message.into(), fix: fix.into() }
    }

    /// A check that could not run (a tool that cannot be installed): its error, which says how
    /// to fix it, is the problem.
    fn from_error(check: RepoCheck, e: &anyhow::Error) -> Problem {
        let text = format!("{e:#}");
        let (message, fix) = match text.split_once(" Fix: ") {
            Some((m, f)) => (m.to_string(), f.to_string()),
            None => (text, "see the message".to_string()),
        };
        Problem::new(format!("{check} (could not run)"), message, fix)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckOutcome {
    Passed,
    Failed,
    /// Not run: an earlier check failed and `--keep-going` was not given.
    NotRun,
}

#[derive(Debug, Serialize)]
pub struct CheckReport {
    pub check: RepoCheck,
    pub outcome: CheckOutcome,
    pub seconds: f64,
    pub problems: Vec<Problem>,
}

#[derive(Debug, Serialize)]
pub struct RepoReport {
    /// `working tree` or `staged` (with the staged paths).
    pub mode: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub staged_paths: Vec<String>,
    pub checks: Vec<CheckReport>,
    pub passed: bool,
    pub seconds: f64,
}

impl RepoReport {
    pub fn failed(&self) -> Vec<RepoCheck> {
        self.checks.iter().filter(|c| c.outcome == CheckOutcome::Failed).map(|c| c.check).collect()
    }

    pub fn table(&self) -> String {
        let mut out = format!("{:<12}  {:<8}  {:>8}  {}\n", "check", "result", "seconds", "problems");
        for c in &self.checks {
            let result = match c.outcome {
                CheckOutcome::Passed => "ok",
                CheckOutcome::Failed => "FAILED",
                CheckOutcome::NotRun => "not run",
            };
            let first = c.problems.first().map(|p| format!("{}: {}", p.at, first_line(&p.message)));
            let more = c.problems.len().saturating_sub(1);
            let mut problems = first.unwrap_or_default();
            if more > 0 {
                let _ = write!(problems, " (+{more} more)");
            }
            let _ = writeln!(out, "{:<12}  {:<8}  {:>8.2}  {problems}", c.check.name(), result, c.seconds);
        }
        let _ = writeln!(out, "{:<12}  {:<8}  {:>8.2}", "total", "", self.seconds);
        out
    }
}

/// A problem's first line, shortened for the summary table (the full text is printed above it).
fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or("");
    match line.char_indices().nth(100) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_string(),
    }
}

/// What a run checks: `root` is the tree read (the checkout, or the staged export);
/// `checkout` is where clippy compiles (a staged export would compile from scratch).
pub struct Context {
    pub root: PathBuf,
    pub checkout: PathBuf,
}

/// Run `checks` in order, printing each result as it comes.
pub fn run_checks(cx: &Context, checks: &[RepoCheck], keep_going: bool, quiet: bool) -> Vec<CheckReport> {
    let mut reports = Vec::new();
    let mut failed = false;
    for &check in checks {
        if failed && !keep_going {
            reports.push(CheckReport { check, outcome: CheckOutcome::NotRun, seconds: 0.0, problems: Vec::new() });
            continue;
        }
        let t = Instant::now();
        let problems = check.run(cx).unwrap_or_else(|e| vec![Problem::from_error(check, &e)]);
        let seconds = t.elapsed().as_secs_f64();
        let outcome = if problems.is_empty() { CheckOutcome::Passed } else { CheckOutcome::Failed };
        failed |= outcome == CheckOutcome::Failed;
        if !quiet {
            eprint!("{}", render(check, outcome, seconds, &problems));
        }
        reports.push(CheckReport { check, outcome, seconds, problems });
    }
    reports
}

fn render(check: RepoCheck, outcome: CheckOutcome, seconds: f64, problems: &[Problem]) -> String {
    let mut out = String::new();
    let label = if outcome == CheckOutcome::Passed { "ok" } else { "FAILED" };
    let _ = writeln!(out, "==> {check}: {label} ({seconds:.2} s)");
    for p in problems {
        let mut lines = p.message.lines();
        let _ = writeln!(out, "  {}: {}", p.at, lines.next().unwrap_or(""));
        for l in lines {
            let _ = writeln!(out, "    {l}");
        }
        let _ = writeln!(out, "    fix: {}", p.fix);
    }
    out
}

/// Exit code 0 or 1 with `--json` (the report is the document); otherwise a failed check is
/// an error.
pub fn run(checkout: &Path, args: &CheckArgs) -> Result<i32> {
    let started = Instant::now();
    let wanted: Vec<RepoCheck> =
        RepoCheck::ALL.into_iter().filter(|c| args.only.is_empty() || args.only.contains(c)).collect();
    let (report, _export) = if args.staged {
        let paths = staged::staged_paths(checkout)?;
        let checks: Vec<RepoCheck> = wanted.into_iter().filter(|c| paths.iter().any(|p| c.wants(p))).collect();
        if checks.is_empty() {
            if !args.json {
                eprintln!("check --staged: nothing staged that a check reads ({} paths staged)", paths.len());
            }
            let report = RepoReport {
                mode: "staged".into(),
                staged_paths: paths,
                checks: Vec::new(),
                passed: true,
                seconds: started.elapsed().as_secs_f64(),
            };
            return finish(&report, args);
        }
        let export = staged::StagedTree::export(checkout)?;
        if !args.json {
            let names: Vec<_> = checks.iter().map(|c| c.name()).collect();
            eprintln!(
                "check --staged: {} on the staged content of {} paths{}",
                names.join(", "),
                paths.len(),
                if checks.contains(&RepoCheck::Clippy) { " (clippy on the working tree)" } else { "" }
            );
        }
        let cx = Context { root: export.dir.clone(), checkout: checkout.to_path_buf() };
        let checks = run_checks(&cx, &checks, args.keep_going, args.json);
        let passed = checks.iter().all(|c| c.outcome == CheckOutcome::Passed);
        let report = RepoReport {
            mode: "staged".into(),
            staged_paths: paths,
            checks,
            passed,
            seconds: started.elapsed().as_secs_f64(),
        };
        (report, Some(export))
    } else {
        let cx = Context { root: checkout.to_path_buf(), checkout: checkout.to_path_buf() };
        let checks = run_checks(&cx, &wanted, args.keep_going, args.json);
        let passed = checks.iter().all(|c| c.outcome == CheckOutcome::Passed);
        let report = RepoReport {
            mode: "working tree".into(),
            staged_paths: Vec::new(),
            checks,
            passed,
            seconds: started.elapsed().as_secs_f64(),
        };
        (report, None)
    };
    finish(&report, args)
}

fn finish(report: &RepoReport, args: &CheckArgs) -> Result<i32> {
    if args.json {
        let code = if report.passed { crate::exit::OK } else { crate::exit::FAILED };
        crate::exit::print_json(report, code)?;
        return Ok(code);
    }
    if args.keep_going || !report.passed {
        eprintln!("\n{}", report.table());
    }
    if !report.passed {
        let names: Vec<_> = report.failed().iter().map(|c| c.name()).collect();
        return Err(crate::exit::CheckFailed(format!(
            "check failed: {} (each problem's fix is printed above)",
            names.join(", ")
        ))
        .into());
    }
    Ok(crate::exit::OK)
}

/// A linter that cannot be installed: the check fails (never skipped) with the reason and the fix.
pub fn tool_problem(tool: crate::commands::check::tool_venv::Tool, e: &anyhow::Error) -> Problem {
    let text = format!("{e:#}");
    let (message, fix) = match text.split_once(" Fix: ") {
        Some((m, f)) => (m.to_string(), f.to_string()),
        None => (text, format!("install {} into the tool venv by hand", tool.package())),
    };
    Problem::new(format!("{} (could not run)", tool.executable()), message, fix)
}

/// The shape of the file checks: our `rules` over each file, then `tool` (from the tool venv)
/// over the same files, its output lines turned into problems by `parse` (lines it returns
/// None for are not findings). A linter that fails without a finding it can parse is reported
/// with its output's tail, never dropped.
pub fn rules_then_linter(
    root: &Path,
    files: &[std::path::PathBuf],
    rules: impl Fn(&str, &str) -> Vec<Problem>,
    tool: crate::commands::check::tool_venv::Tool,
    args: &[&str],
    parse: impl Fn(&str) -> Option<Problem>,
) -> Result<Vec<Problem>> {
    let mut problems = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
        problems.extend(rules(&rel(root, f), &text));
    }
    if files.is_empty() {
        return Ok(problems);
    }
    let exe = match crate::commands::check::tool_venv::ToolVenv::open(root).and_then(|v| v.ensure(tool)) {
        Ok(exe) => exe,
        Err(e) => {
            problems.push(tool_problem(tool, &e));
            return Ok(problems);
        }
    };
    let mut cmd = crate::process::Command::new(exe.to_string_lossy(), root).args(args);
    for f in files {
        cmd = cmd.arg(rel(root, f));
    }
    let out = crate::process::exec(&cmd)?;
    if !out.success {
        let before = problems.len();
        problems.extend(out.stdout.lines().filter_map(&parse));
        if problems.len() == before {
            problems.push(Problem::new(
                tool.executable(),
                tail(&out, 20),
                format!("run {} on the files and read its error", tool.executable()),
            ));
        }
    }
    Ok(problems)
}

/// The last lines of a failed tool's output, for a problem that has no better location.
fn tail(out: &crate::process::Output, n: usize) -> String {
    let text = format!("{}{}", out.stdout, out.stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `path` relative to `root`, `/`-separated, for messages.
pub fn rel(root: &Path, path: &Path) -> String {
    crate::fsx::rel(root, path).to_string_lossy().replace('\\', "/")
}

/// The 1-based line of a YAML mapping key given by its path (`["jobs", "build", "steps"]`),
/// found by indentation: serde_yaml keeps no spans once a document is parsed.
pub fn key_line(text: &str, path: &[&str]) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let (mut from, mut parent_indent) = (0usize, -1i64);
    let mut found = None;
    for seg in path {
        let mut hit = None;
        for (i, line) in lines.iter().enumerate().skip(from) {
            let body = line.trim_start();
            if body.is_empty() || body.starts_with('#') {
                continue;
            }
            let indent = (line.len() - body.len()) as i64;
            if indent <= parent_indent {
                break;
            }
            let bare = body.strip_prefix("- ").unwrap_or(body);
            let is_key = [format!("{seg}:"), format!("\"{seg}\":"), format!("'{seg}':")]
                .iter()
                .any(|k| bare.starts_with(k.as_str()));
            if is_key {
                hit = Some((i, indent));
                break;
            }
        }
        let (i, indent) = hit?;
        found = Some(i + 1);
        from = i + 1;
        parent_indent = indent;
    }
    found
}

/// The comment of a YAML line (after a `#` outside quotes), if any.
pub fn line_comment(line: &str) -> Option<&str> {
    let (mut single, mut double) = (false, false);
    for (i, c) in line.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single && !double && (i == 0 || line[..i].ends_with(char::is_whitespace)) => {
                return Some(line[i + 1..].trim());
            }
            _ => {}
        }
    }
    None
}
