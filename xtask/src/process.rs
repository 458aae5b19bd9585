//! Running external commands: the one `Command` type a plan holds and shows, and the three
//! ways a command runs — `run` (a build tool: output shown when it fails, or streamed),
//! `capture` (a probe whose stdout is the answer) and `exec` (a check that reads both
//! streams).

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use serde::Serialize;

/// An external command, exactly as it will run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Command {
    pub program: String,
    pub args: Vec<String>,
    /// Extra environment variables, on top of the xtask's own environment.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
}

impl Command {
    pub fn new(program: impl Into<String>, cwd: &Path) -> Command {
        Command { program: program.into(), args: Vec::new(), env: Vec::new(), cwd: cwd.to_path_buf() }
    }

    pub fn arg(mut self, arg: impl AsRef<std::ffi::OsStr>) -> Command {
        self.args.push(arg.as_ref().to_string_lossy().into_owned());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: AsRef<std::ffi::OsStr>>(mut self, args: I) -> Command {
        for a in args {
            self = self.arg(a);
        }
        self
    }

    pub fn env(mut self, key: &str, value: impl Into<String>) -> Command {
        self.env.push((key.to_string(), value.into()));
        self
    }

    /// The process to spawn: program, arguments, extra environment, working folder, no stdin.
    pub fn to_std(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(&self.program);
        cmd.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.cwd)
            .stdin(std::process::Stdio::null());
        cmd
    }

    /// Run it quietly, no stdin: its trimmed stdout on success, else the first line of its
    /// stderr. For probes and checks, whose output is the answer.
    pub fn capture(&self) -> std::result::Result<String, String> {
        let out = self.to_std().output().map_err(|e| format!("cannot run {}: {e}", self.program))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            let err = String::from_utf8_lossy(&out.stderr);
            Err(err.lines().find(|l| !l.trim().is_empty()).unwrap_or("failed").trim().to_string())
        }
    }

    /// The command as a POSIX shell line that does the same thing: `cd DIR && VAR=x prog 'arg'`.
    pub fn shell_line(&self) -> String {
        format!("cd {} && {}", quote(&self.cwd.to_string_lossy()), self.shell_line_here())
    }

    /// The same without the `cd`: for commands whose working folder does not matter.
    pub fn shell_line_here(&self) -> String {
        let q = quote;
        let mut line = String::new();
        for (k, v) in &self.env {
            let _ = write!(line, "{k}={} ", q(v));
        }
        line.push_str(&q(&self.program));
        for a in &self.args {
            line.push(' ');
            line.push_str(&q(a));
        }
        line
    }
}

fn quote(s: &str) -> String {
    shlex::try_quote(s).map(|c| c.into_owned()).unwrap_or_else(|_| format!("{s:?}"))
}

/// A finished command's result, whatever its exit status: linters report through both.
pub struct Output {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

pub fn exec(cmd: &Command) -> Result<Output> {
    let out = cmd.to_std().output().with_context(|| format!("cannot run `{}`: is it installed?", cmd.program))?;
    Ok(Output {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Run through xshell (no shell, no quoting bugs). Output is captured and shown only when the
/// command fails, so a green run stays readable; `--verbose` streams it instead.
pub fn run(cmd: &Command, title: &str, verbose: bool) -> Result<()> {
    // A missing working folder fails the spawn as "not found", which reads as a missing program.
    if !cmd.cwd.is_dir() {
        anyhow::bail!("cannot run `{}`: its working folder {} does not exist", cmd.program, cmd.cwd.display());
    }
    let sh = xshell::Shell::new()?;
    sh.change_dir(&cmd.cwd);
    let mut c = sh.cmd(&cmd.program).args(&cmd.args).quiet();
    for (k, v) in &cmd.env {
        c = c.env(k, v);
    }
    if verbose {
        return c.run().with_context(|| format!("command failed: {}", cmd.shell_line()));
    }
    // A line a minute while it runs: a quiet build of ten minutes must not look hung, and a
    // CI log keeps every line (a terminal spinner would be noise there).
    // The ticker stops when `done` is dropped: its receive then fails instead of timing out.
    let (done, stop) = std::sync::mpsc::channel::<()>();
    let what = format!("{title}: {}", cmd.program.rsplit('/').next().unwrap_or(&cmd.program));
    let ticker = std::thread::spawn(move || {
        let started = std::time::Instant::now();
        while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(Duration::from_secs(60)) {
            eprintln!("    ... {what} still running ({} min)", started.elapsed().as_secs() / 60);
        }
    });
    let output = c.ignore_status().output();
    drop(done);
    let _ = ticker.join();
    let output = output.with_context(|| format!("cannot start `{}`: is it installed?", cmd.program))?;
    if output.status.success() {
        return Ok(());
    }
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    let lines: Vec<&str> = text.lines().collect();
    let tail = &lines[lines.len().saturating_sub(80)..];
    bail!(
        "command failed ({}): {}\n--- last {} lines of its output ---\n{}",
        output.status,
        cmd.shell_line(),
        tail.len(),
        tail.join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_line_quotes_what_needs_it() {
        let c = Command::new("python3", Path::new("/r/my dir"))
            .args(["-m", "PyInstaller", "--add-data", "/a b/config.yaml:."])
            .env("DOCKER_BUILDKIT", "1");
        assert_eq!(
            c.shell_line(),
            "cd '/r/my dir' && DOCKER_BUILDKIT=1 python3 -m PyInstaller --add-data '/a b/config.yaml:.'"
        );
    }

    #[test]
    fn a_missing_working_folder_is_named_not_taken_for_a_missing_program() {
        let d = tempfile::tempdir().unwrap();
        let gone = d.path().join("context");
        let err = run(&Command::new("true", &gone), "t", true).unwrap_err().to_string();
        assert_eq!(err, format!("cannot run `true`: its working folder {} does not exist", gone.display()));
        std::fs::create_dir(&gone).unwrap();
        run(&Command::new("true", &gone), "t", true).unwrap();
    }
}
