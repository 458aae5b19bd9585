//! Real native builds of the three services through `cargo xtask dist`, in a copy of the
//! repository so edits do not touch the checkout: cold build, no-op run, a one-service edit,
//! and a touch that must rebuild nothing.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;

const SERVICES: [&str; 3] = ["kt_service", "print_service", "tts_service"];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "x64",
        "aarch64" if cfg!(target_os = "macos") => "darwin-arm64",
        "aarch64" => "arm64",
        "arm" => "armv7l",
        other => panic!("no target for host arch {other}"),
    }
}

/// Copy what a native dist reads: dist.yaml, the version source and the Python project
/// (without its venv and build outputs).
fn copy_repo(to: &Path) {
    let from = repo_root();
    let skip = [".venv", "dist", "build", "__pycache__", ".pytest_cache"];
    for top in ["dist.yaml", "electron-app/package.json", "python-service"] {
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

/// Run `dist --json` in `root`; return the run report (step id → outcome).
fn dist(root: &Path) -> Vec<(String, String)> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.arg("--root").arg(root).args(["dist", "--json"]);
    // Share the checkout's venv (synced by `cargo xtask test`) rather than download another.
    if std::env::var_os("KT_VENV").is_none() && repo_root().join("python-service/.venv/bin/python").exists() {
        cmd.env("KT_VENV", repo_root().join("python-service/.venv"));
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "dist failed:\n{stderr}");
    assert!(
        stderr.contains("step") && stderr.contains("result") && stderr.contains("seconds"),
        "no summary table:\n{stderr}"
    );
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    json["report"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_str().unwrap().to_string(), s["outcome"].as_str().unwrap().to_string()))
        .collect()
}

fn outcome<'a>(report: &'a [(String, String)], id: &str) -> &'a str {
    &report.iter().find(|(s, _)| s == id).unwrap_or_else(|| panic!("no step {id} in {report:?}")).1
}

fn run_binary(bin: &Path, arg: &str) -> String {
    let out = Command::new(bin).arg(arg).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{} {arg} failed: {text}", bin.display());
    text
}

#[test]
fn native_dist_builds_runs_and_rebuilds_only_what_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    copy_repo(root);
    let version = {
        let pkg: Value =
            serde_json::from_str(&std::fs::read_to_string(root.join("electron-app/package.json")).unwrap()).unwrap();
        pkg["version"].as_str().unwrap().to_string()
    };

    let cold = dist(root);
    for s in SERVICES {
        assert_eq!(outcome(&cold, s), "built", "{cold:?}");
        let bin = root.join("python-service/dist").join(host_arch()).join(s);
        let v = run_binary(&bin, "--version");
        assert_eq!(v.trim(), format!("{s} {version} (default, {})", host_arch()));
        let t = run_binary(&bin, "--self-test");
        assert!(t.contains(&format!("self-test ok: {s}")), "{t}");
    }

    let again = dist(root);
    for s in SERVICES.iter().chain(&["venv", "stage"]) {
        assert_eq!(outcome(&again, s), "up_to_date", "{again:?}");
    }

    // A real edit to one service rebuilds that service alone.
    let entry = root.join("python-service/src/print_service.py");
    let mut text = std::fs::read_to_string(&entry).unwrap();
    text.push_str("\n# edited by the native_build test\n");
    std::fs::write(&entry, text).unwrap();
    let edited = dist(root);
    assert_eq!(outcome(&edited, "print_service"), "built", "{edited:?}");
    assert_eq!(outcome(&edited, "kt_service"), "up_to_date", "{edited:?}");
    assert_eq!(outcome(&edited, "tts_service"), "up_to_date", "{edited:?}");

    // Touching a file without changing it rebuilds nothing.
    let kt = root.join("python-service/src/kt_service.py");
    let same = std::fs::read(&kt).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(&kt, same).unwrap();
    let touched = dist(root);
    assert!(touched.iter().all(|(id, o)| o == "up_to_date" || id == "preflight"), "{touched:?}");
}
