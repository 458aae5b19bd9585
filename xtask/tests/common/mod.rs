//! Helpers shared by the integration tests: a scratch copy of the repository and a runner
//! for the xtask binary that returns its JSON report.
#![allow(dead_code)] // each test binary uses its own subset

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;

pub mod board;
pub mod cross;
pub mod package;

/// This machine's target name, as `--arch` takes it.
pub fn host_arch_name() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "x64",
        "aarch64" => "arm64",
        "arm" => "armv7l",
        other => other,
    }
}

pub const SERVICES: [&str; 3] = ["kt_service", "print_service", "tts_service"];

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Copy what dist reads — dist.yaml, the Electron app and the Python project without their
/// installed modules and outputs, the Dockerfiles, the license — into a new git repository
/// with one commit (its time is the release's SOURCE_DATE_EPOCH), so a test can edit sources
/// without touching the checkout.
pub fn copy_repo(to: &Path) {
    let from = repo_root();
    let skip = [".venv", "dist", "node_modules", "release", "__pycache__", ".pytest_cache"];
    let py_build = from.join("python-service/build");
    for top in [".gitignore", "dist.yaml", ".dockerignore", "LICENSE", "electron-app", "python-service", "docker"] {
        for entry in walkdir::WalkDir::new(from.join(top))
            .into_iter()
            .filter_entry(|e| !skip.contains(&e.file_name().to_string_lossy().as_ref()) && e.path() != py_build)
        {
            let entry = entry.unwrap();
            let dest = to.join(entry.path().strip_prefix(&from).unwrap());
            if entry.file_type().is_dir() {
                std::fs::create_dir_all(&dest).unwrap();
            } else {
                std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
                std::fs::copy(entry.path(), &dest).unwrap();
            }
        }
    }
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(["-c", "user.name=kt-test", "-c", "user.email=test@kitchntabs.invalid"])
            .args(args)
            .current_dir(to)
            .env("GIT_COMMITTER_DATE", "2026-01-02T03:04:05Z")
            .env("GIT_AUTHOR_DATE", "2026-01-02T03:04:05Z")
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    git(&["init", "-q"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "test tree"]);
}

/// The commit time `copy_repo` gives its repository.
pub const COMMIT_EPOCH: u64 = 1_767_323_045;

/// A stand-in for an unpacked Electron of `arch` (`xtask::stand_in`): real ELF of the target.
pub fn stand_in_electron(dir: &Path, arch: &str) -> PathBuf {
    let arch: xtask::arch::Arch = arch.parse().unwrap();
    xtask::stand_in::electron(dir, arch).unwrap_or_else(|e| panic!("{e:#}"))
}

pub fn version(root: &Path) -> String {
    let pkg: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("electron-app/package.json")).unwrap()).unwrap();
    pkg["version"].as_str().unwrap().to_string()
}

/// `cargo xtask --root ROOT ARGS... --json` with extra environment; the parsed stdout.
pub fn xtask_json(root: &Path, args: &[&str], env: &[(&str, &str)]) -> Value {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.arg("--root").arg(root).args(args).arg("--json");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "xtask {args:?} failed:\n{stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("no JSON from xtask {args:?}: {e}\n{stderr}"))
}

/// The run report of a JSON run: step id → outcome.
pub fn outcomes(json: &Value) -> Vec<(String, String)> {
    json["report"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_str().unwrap().to_string(), s["outcome"].as_str().unwrap().to_string()))
        .collect()
}

pub fn outcome<'a>(report: &'a [(String, String)], id: &str) -> &'a str {
    &report.iter().find(|(s, _)| s == id).unwrap_or_else(|| panic!("no step {id} in {report:?}")).1
}

pub fn seconds(json: &Value, id: &str) -> f64 {
    json["report"]["steps"].as_array().unwrap().iter().find(|s| s["id"] == id).unwrap()["seconds"].as_f64().unwrap()
}

/// Append a module-level assignment to a Python source: a real content edit (BuildKit and our
/// fingerprints hash contents, so a `touch` would prove nothing) that reaches the bytecode, so
/// the binary changes too (builds are reproducible: a comment alone gives the same bytes).
/// Unique per run: the same text twice would be replayed from the engine's cache.
pub fn edit(file: &Path) {
    let mut text = std::fs::read_to_string(file).unwrap();
    let nonce = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    text.push_str(&format!("\n_EDITED_BY_AN_INTEGRATION_TEST = {nonce}\n"));
    std::fs::write(file, text).unwrap();
}

pub fn sha256(path: &Path) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

/// (ELF class, e_machine) of an executable.
pub fn elf_machine(path: &Path) -> (u8, u16) {
    let head = std::fs::read(path).unwrap();
    assert_eq!(&head[..4], b"\x7fELF", "{} is not ELF", path.display());
    (head[4], u16::from_le_bytes([head[18], head[19]]))
}

/// The services of [`fourth_service`]'s tree.
pub const FOUR_SERVICES: [&str; 4] = ["kt_service", "print_service", "tts_service", "menu_service"];

/// Edit a scratch copy (from [`copy_repo`]) the way a team grows it: a fourth service whose
/// entry sits in a subfolder, and print_service's entry moved to another folder. The old entry
/// stays behind, broken, so a build that still read it fails its self-test.
pub fn fourth_service(root: &Path) {
    let src = root.join("python-service/src");
    std::fs::create_dir_all(src.join("app")).unwrap();
    std::fs::write(
        src.join("app/main.py"),
        r#""""menu_service: a fourth service, with its entry in a subfolder."""

import sys

from kt_common import base_parser, load_config, print_version, run_self_test

SERVICE = "menu_service"


def main(argv: list[str] | None = None) -> int:
    args = base_parser(SERVICE, "test service").parse_args(argv)
    if args.version:
        return print_version(SERVICE)
    if args.self_test:
        return run_self_test(SERVICE, lambda: load_config(args.config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
"#,
    )
    .unwrap();
    std::fs::create_dir_all(src.join("printing")).unwrap();
    std::fs::rename(src.join("print_service.py"), src.join("printing/print_service.py")).unwrap();
    std::fs::write(src.join("print_service.py"), "raise SystemExit('the old print_service entry was built')\n")
        .unwrap();
    let yaml = std::fs::read_to_string(root.join("dist.yaml")).unwrap();
    let moved = yaml.replacen("entry: src/print_service.py", "entry: src/printing/print_service.py", 1);
    let grown = moved.replacen(
        "  tts_service:\n    entry: src/tts_service.py\n",
        "  tts_service:\n    entry: src/tts_service.py\n  menu_service:\n    entry: src/app/main.py\n",
        1,
    );
    assert_ne!(moved, yaml, "dist.yaml has no print_service entry to move");
    assert_ne!(grown, moved, "dist.yaml has no tts_service entry to add after");
    std::fs::write(root.join("dist.yaml"), grown).unwrap();
}
