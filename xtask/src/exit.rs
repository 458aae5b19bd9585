//! How a command ends: one exit-code rule for every command, and with `--json` exactly one
//! JSON document on stdout, also when it fails.

use serde_json::json;

/// The version of every JSON document the commands print; raised when a field changes meaning.
pub const SCHEMA_VERSION: u32 = 1;

/// Everything checked passed.
pub const OK: i32 = 0;
/// A check or a step ran and failed.
pub const FAILED: i32 = 1;
/// A usage error, or an input (flag, dist.yaml, file) that cannot be read or used.
pub const UNUSABLE: i32 = 2;

/// What `--help` says about exit codes.
pub const HELP: &str = "Exit status: 0 everything passed; 1 a check or step ran and failed; \
2 a usage error or an input (flag, dist.yaml, file) that cannot be read.\n\
With --json, stdout holds exactly one JSON document, also on failure \
(`ok`, `schema_version`, and `error` and `exit_code` when it failed).";

/// A check that ran and failed (exit 1), where any other error means the command could not do
/// its work (exit 2).
#[derive(Debug)]
pub struct CheckFailed(pub String);

impl std::fmt::Display for CheckFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CheckFailed {}

/// Print `doc` as the command's one JSON document, with `schema_version` and `ok` added, and
/// `exit_code` (the status the process exits with) when it is not [`OK`].
pub fn print_json(doc: impl serde::Serialize, code: i32) -> anyhow::Result<()> {
    let mut value = serde_json::to_value(doc)?;
    let Some(map) = value.as_object_mut() else { anyhow::bail!("a command's JSON document must be an object") };
    map.insert("schema_version".into(), json!(SCHEMA_VERSION));
    map.insert("ok".into(), json!(code == OK));
    if code != OK {
        map.insert("exit_code".into(), json!(code));
    }
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}

/// Whether the command line asks for JSON (also when clap cannot parse the rest of it).
pub fn wants_json(args: &[String]) -> bool {
    args.iter().take_while(|a| *a != "--").any(|a| a == "--json")
}

/// The exit code for an error: 1 when a step or check failed, else 2.
pub fn code_of(e: &anyhow::Error) -> i32 {
    let failed = e.chain().any(|c| c.is::<crate::plan::StepsFailed>() || c.is::<CheckFailed>());
    if failed { FAILED } else { UNUSABLE }
}

/// The JSON document of a command that failed: the error, and when steps ran, which failed
/// and the report of every step.
pub fn error_document(e: &anyhow::Error, code: i32) -> serde_json::Value {
    let mut doc = json!({
        "schema_version": SCHEMA_VERSION,
        "ok": false,
        "exit_code": code,
        "error": format!("{e:#}"),
    });
    if let Some(steps) = e.chain().find_map(|c| c.downcast_ref::<crate::plan::StepsFailed>()) {
        doc["failed_steps"] = json!(steps.failed_steps());
        doc["report"] = json!(steps.report);
    }
    doc
}

/// Writes to a closed stdout (`| head`) end the process as Unix tools do, by SIGPIPE, instead
/// of a panic in `println!` (Rust ignores SIGPIPE by default).
pub fn quiet_on_closed_stdout() {
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of one signal, before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_and_check_failures_exit_1_everything_else_2() {
        let steps = crate::plan::StepsFailed {
            report: crate::plan::RunReport { steps: Vec::new(), seconds: 0.0 },
            errors: vec!["step `deb` failed: boom".into()],
        };
        assert_eq!(code_of(&anyhow::Error::new(steps).context("dist")), FAILED);
        assert_eq!(code_of(&anyhow::Error::new(CheckFailed("check failed: fmt".into()))), FAILED);
        assert_eq!(code_of(&anyhow::anyhow!("dist.yaml:3:1: unknown field")), UNUSABLE);
        let doc = error_document(&anyhow::anyhow!("no such arch"), UNUSABLE);
        assert_eq!(doc["ok"], false);
        assert_eq!(doc["exit_code"], 2);
        assert_eq!(doc["schema_version"], SCHEMA_VERSION);
        assert!(doc.get("report").is_none());
    }
}
