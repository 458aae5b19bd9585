//! Helpers shared by the integration tests: a scratch copy of the repository and a runner
//! for the xtask binary that returns its JSON report.
#![allow(dead_code)] // each test binary uses its own subset

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;

pub const SERVICES: [&str; 3] = ["kt_service", "print_service", "tts_service"];

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Copy what dist reads — dist.yaml, the version source, the Python project without its venv
/// and outputs, the Dockerfiles — so a test can edit sources without touching the checkout.
pub fn copy_repo(to: &Path) {
    let from = repo_root();
    let skip = [".venv", "dist", "build", "__pycache__", ".pytest_cache"];
    for top in ["dist.yaml", ".dockerignore", "electron-app/package.json", "python-service", "docker"] {
        for entry in walkdir::WalkDir::new(from.join(top))
            .into_iter()
            .filter_entry(|e| !skip.contains(&e.file_name().to_string_lossy().as_ref()))
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

/// Append a comment: a real content edit (BuildKit and our fingerprints hash contents, so a
/// `touch` would prove nothing). Unique per run: the same text twice would be replayed from
/// the engine's cache instead of rebuilt.
pub fn edit(file: &Path) {
    let mut text = std::fs::read_to_string(file).unwrap();
    let nonce = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    text.push_str(&format!("\n# edited by an integration test ({nonce})\n"));
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
