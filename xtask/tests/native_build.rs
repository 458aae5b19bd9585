//! Real native builds of the three services through `cargo xtask dist`, in a copy of the
//! repository so edits do not touch the checkout: cold build, no-op run, a one-service edit,
//! and a touch that must rebuild nothing.

mod common;

use std::{path::Path, process::Command};

use common::{SERVICES, copy_repo, outcome, outcomes, repo_root, version, xtask_json};

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "x64",
        "aarch64" if cfg!(target_os = "macos") => "darwin-arm64",
        "aarch64" => "arm64",
        "arm" => "armv7l",
        other => panic!("no target for host arch {other}"),
    }
}

/// Run `dist --json` in `root`; return the run report (step id → outcome).
fn dist(root: &Path) -> Vec<(String, String)> {
    // Share the checkout's venv (synced by `cargo xtask test`) rather than download another.
    let venv = repo_root().join("python-service/.venv");
    let env = match std::env::var("KT_VENV") {
        Ok(v) => v,
        Err(_) if venv.join("bin/python").exists() => venv.to_string_lossy().into_owned(),
        Err(_) => String::new(),
    };
    outcomes(&xtask_json(root, &["dist"], &[("KT_VENV", &env)]))
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
    let version = version(root);

    let cold = dist(root);
    for s in SERVICES {
        assert_eq!(outcome(&cold, s), "built", "{cold:?}");
        let bin = root.join("python-service/dist").join(host_arch()).join(s);
        let v = run_binary(&bin, "--version");
        assert_eq!(v.trim(), format!("{s} {version} (default, {})", host_arch()));
        let t = run_binary(&bin, "--self-test");
        assert!(t.contains(&format!("self-test ok: {s}")), "{t}");
    }

    // The real one-file binaries pass verify, every library inside their archives included,
    // and a floor below the build OS's glibc is caught inside the archive (libpython).
    let bins: Vec<String> = SERVICES
        .iter()
        .map(|s| root.join("python-service/dist").join(host_arch()).join(s).display().to_string())
        .collect();
    let mut args = vec!["verify", "--arch", host_arch()];
    args.extend(bins.iter().map(String::as_str));
    let clean = common::xtask_json(root, &args, &[]);
    assert_eq!(clean["findings"].as_array().unwrap().len(), 0, "{clean}");
    let archives = clean["archives"].as_array().unwrap();
    assert_eq!(archives.len(), 3, "{clean}");
    for a in archives {
        assert_eq!(a["python_version"], 311, "{a}");
        assert!(a["entries"].as_u64().unwrap() > 40, "{a}");
        assert!(a["binaries"].as_u64().unwrap() > 10, "{a}");
    }
    args.extend(["--glibc", "2.17"]);
    let out = Command::new(env!("CARGO_BIN_EXE_xtask")).arg("--root").arg(root).args(&args).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "a 2.17 floor must fail");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("libpython3.11.so.1.0"), "{table}");

    let again = dist(root);
    for s in SERVICES.iter().chain(&["venv", "stage"]) {
        assert_eq!(outcome(&again, s), "up_to_date", "{again:?}");
    }

    // A real edit to one service rebuilds that service alone.
    common::edit(&root.join("python-service/src/print_service.py"));
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
