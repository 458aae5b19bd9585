//! What every command promises a script or CI job: exit 0 ok, 1 a check or step failed, 2 a
//! usage error or unusable input; with `--json`, exactly one JSON document on stdout, also
//! when it fails; a closed stdout ends the process quietly, as Unix tools do.

mod common;

use std::{
    io::Read,
    path::Path,
    process::{Command, Stdio},
};

use common::{copy_repo, host_arch_name, repo_root};

fn xtask(root: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_xtask")).arg("--root").arg(root).args(args).output().unwrap()
}

/// The one JSON document on stdout.
fn document(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn json_failures_are_one_document_with_the_error_and_the_exit_code() {
    let root = repo_root();
    // A usage error clap reports.
    let out = xtask(&root, &["dist", "--arch", "i386", "--json"]);
    assert_eq!(out.status.code(), Some(2));
    let doc = document(&out);
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["exit_code"], 2);
    assert!(doc["error"].as_str().unwrap().contains("unknown arch `i386`"), "{doc}");
    // An input the plan cannot use.
    let out = xtask(&root, &["dist", "--env", "staging", "--dry-run", "--json"]);
    assert_eq!(out.status.code(), Some(2));
    let doc = document(&out);
    assert!(doc["error"].as_str().unwrap().contains("unknown env `staging`"), "{doc}");
    assert_eq!(doc["schema_version"], 1);
    // Success carries the same envelope.
    let out = xtask(&root, &["dist", "--arch", host_arch_name(), "--dry-run", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let doc = document(&out);
    assert_eq!((doc["ok"].clone(), doc["schema_version"].clone()), (true.into(), 1.into()));
    // Each step says whether it will run, and why.
    for step in doc["steps"].as_array().unwrap() {
        let status = step["status"]["status"].as_str().unwrap_or_else(|| panic!("no status: {step}"));
        assert!(["will_run", "up_to_date", "always_runs", "will_fail"].contains(&status), "{step}");
        if status == "will_run" {
            assert!(step["status"]["reason"].as_str().is_some_and(|r| !r.is_empty()), "{step}");
        }
    }
}

#[test]
fn a_failed_step_under_json_reports_the_step_and_every_outcome() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("repo");
    copy_repo(&root);
    // A machine with git and a shell only: the cross target's preflight fails.
    let bin = tmp.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for t in ["git", "sh"] {
        std::os::unix::fs::symlink(which::which(t).unwrap(), bin.join(t)).unwrap();
    }
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("--root")
        .arg(&root)
        .args(["dist", "--arch", "armv7l", "--json"])
        .env("PATH", &bin)
        .env_remove("DOCKER")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let doc = document(&out);
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["failed_steps"], serde_json::json!(["preflight"]));
    let outcomes: Vec<_> = doc["report"]["steps"].as_array().unwrap().iter().map(|s| s["outcome"].clone()).collect();
    assert_eq!(outcomes[0], "failed");
    assert!(outcomes[1..].iter().all(|o| o == "skipped"), "{outcomes:?}");
    assert!(doc["error"].as_str().unwrap().contains("no container engine can build armv7l"), "{doc}");
}

/// The process ended quietly after its reader went away: no panic, no exit 101.
fn ends_quietly_when_stdout_closes(args: &[&str]) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("--root")
        .arg(repo_root())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // `| head -c0`: the reader is gone before the first write.
    drop(child.stdout.take());
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    let status = child.wait().unwrap();
    assert!(!stderr.contains("panicked"), "{args:?} panicked:\n{stderr}");
    assert_ne!(status.code(), Some(101), "{args:?}: {status}");
    use std::os::unix::process::ExitStatusExt;
    assert!(status.success() || status.signal() == Some(13), "{args:?}: {status}\n{stderr}");
}

#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    ends_quietly_when_stdout_closes(&["targets", "--json"]);
    ends_quietly_when_stdout_closes(&["dist", "--arch", host_arch_name(), "--dry-run", "--json"]);
    ends_quietly_when_stdout_closes(&["dist", "--arch", "armv7l", "--dry-run"]);
}

#[test]
fn every_command_documents_its_exit_codes() {
    for cmd in ["dist", "verify", "doctor", "check", "targets", "test", "release", "smoke-test"] {
        let out = Command::new(env!("CARGO_BIN_EXE_xtask")).args([cmd, "--help"]).output().unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{cmd} --help");
        assert!(
            help.contains("Exit status: 0 everything passed; 1 a check or step ran and failed; 2 a usage error"),
            "{cmd}:\n{help}"
        );
    }
}

#[test]
fn bench_loop_names_a_baseline_that_is_no_revision_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("repo");
    copy_repo(&root);
    let before = std::fs::read_to_string(root.join("BENCHMARKS.md")).ok();
    let out = xtask(&root, &["bench", "loop", "--baseline", "no-such-rev", "--runs", "1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("--baseline no-such-rev: not a revision of this repository"), "{err}");
    assert_eq!(std::fs::read_to_string(root.join("BENCHMARKS.md")).ok(), before);
    assert!(!root.join("target/xtask/bench/loop-baseline/src").exists(), "a worktree was left behind");
}

#[test]
fn targets_json_carries_the_envelope_and_a_failed_verify_its_exit_code() {
    let root = repo_root();
    let out = xtask(&root, &["targets", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let doc = document(&out);
    assert_eq!((doc["ok"].clone(), doc["schema_version"].clone()), (true.into(), 1.into()));
    assert!(doc["targets"].as_array().is_some_and(|t| t.iter().any(|t| t["arch"] == "armv7l")), "{doc}");
    assert!(doc.get("exit_code").is_none(), "{doc}");
    // This test's own executable is built for the host, so it cannot run on another arch.
    let foreign = if host_arch_name() == "arm64" { "x64" } else { "arm64" };
    let exe = std::env::current_exe().unwrap();
    let out = xtask(&root, &["verify", "--arch", foreign, "--json", exe.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let doc = document(&out);
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["exit_code"].as_i64(), out.status.code().map(i64::from), "{doc}");
    // An unreadable input exits 2, and the document says so.
    let out = xtask(&root, &["verify", "--arch", foreign, "--json", "/nonexistent/kt_service"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(document(&out)["exit_code"], 2);
}
