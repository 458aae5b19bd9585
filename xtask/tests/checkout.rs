//! The xtask acts on the checkout it runs in, never on the one it was compiled in: with a
//! shared CARGO_TARGET_DIR, `cargo xtask` in a second clone runs the binary built in the first
//! (cargo sets CARGO_MANIFEST_DIR to the second clone's xtask/), and a copied binary runs with
//! no CARGO_MANIFEST_DIR at all.

mod common;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use common::{copy_repo, host_arch_name, repo_root};

/// The binary `cargo test` built from this checkout, run with `cwd` and, when given, the
/// CARGO_MANIFEST_DIR that `cargo run` would set.
fn xtask_in(cwd: &Path, manifest_dir: Option<&Path>, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.current_dir(cwd).args(args).env_remove("CARGO_MANIFEST_DIR");
    if let Some(d) = manifest_dir {
        cmd.env("CARGO_MANIFEST_DIR", d);
    }
    cmd.output().unwrap()
}

fn planned_root(out: &std::process::Output) -> PathBuf {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "dry run failed:\n{stderr}");
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    PathBuf::from(plan["root"].as_str().unwrap())
}

fn git(root: &Path, args: &[&str]) {
    let out = Command::new("git").args(args).current_dir(root).output().unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_binary_built_in_one_clone_plans_and_checks_the_clone_it_runs_in() {
    let tmp = tempfile::tempdir().unwrap();
    let second = tmp.path().join("second");
    copy_repo(&second);
    assert_ne!(second, repo_root());
    let dry = ["dist", "--arch", host_arch_name(), "--dry-run", "--json"];

    // Run from a folder inside the second clone, as a copied binary would be.
    let inside = second.join("python-service/src");
    assert_eq!(planned_root(&xtask_in(&inside, None, &dry)), second);
    // Through `cargo xtask` with a shared target dir: cargo points CARGO_MANIFEST_DIR at the
    // second clone's xtask/, whatever the binary's own build path.
    let outside = tmp.path().join("elsewhere");
    std::fs::create_dir_all(&outside).unwrap();
    assert_eq!(planned_root(&xtask_in(&outside, Some(&second.join("xtask")), &dry)), second);
    // The current checkout wins over a CARGO_MANIFEST_DIR left over from another.
    assert_eq!(planned_root(&xtask_in(&second, Some(&repo_root().join("xtask")), &dry)), second);

    // Nowhere to act on: one error that says where it looked and what to do.
    let none = xtask_in(&outside, None, &dry);
    assert!(!none.status.success());
    let err = String::from_utf8_lossy(&none.stderr);
    assert!(err.contains(&format!("no dist.yaml in {} or any folder above it", outside.display())), "{err}");
    assert!(err.contains("pass --root DIR"), "{err}");

    // `check --staged` reads the second clone's index: a broken dist.yaml staged there fails,
    // naming that clone's file, while this checkout's dist.yaml is untouched.
    let yaml = std::fs::read_to_string(second.join("dist.yaml")).unwrap();
    std::fs::write(second.join("dist.yaml"), yaml.replacen("product:\n", "product:\n  colour: red\n", 1)).unwrap();
    git(&second, &["add", "dist.yaml"]);
    let out = xtask_in(&second, None, &["check", "--staged"]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("unknown field `colour`"), "{text}");
}

/// A PATH with only the named host tools (symlinks), so a test sees a machine without the rest.
fn path_with(dir: &Path, tools: &[&str]) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for t in tools {
        let real = which::which(t).unwrap_or_else(|_| panic!("{t} is needed to run this test"));
        std::os::unix::fs::symlink(real, bin.join(t)).unwrap();
    }
    bin
}

#[test]
fn without_an_engine_a_dry_run_shows_the_plan_and_a_real_run_names_everything_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("repo");
    copy_repo(&root);
    // A new machine: git and a shell, no docker, no debootstrap, no Node.js.
    let path = path_with(tmp.path(), &["git", "sh"]);
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_xtask"))
            .current_dir(&root)
            .env_remove("CARGO_MANIFEST_DIR")
            .env("PATH", &path)
            .env_remove("DOCKER")
            .args(args)
            .output()
            .unwrap()
    };
    let dry = run(&["dist", "--arch", "armv7l", "--dry-run"]);
    let text = String::from_utf8_lossy(&dry.stdout);
    assert!(dry.status.success(), "{}", String::from_utf8_lossy(&dry.stderr));
    assert!(text.contains("engine buildx (docker buildx)"), "{text}");
    assert!(text.contains("preflight — check the host can build this target  (will fail on this machine)"), "{text}");
    assert!(text.contains("FAILS on this machine: no container engine can build armv7l: no docker or podman on PATH"));
    assert!(text.contains("[10/10] release"), "{text}");
    let json = run(&["dist", "--arch", "armv7l", "--dry-run", "--json"]);
    assert!(json.status.success(), "{}", String::from_utf8_lossy(&json.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(plan["engine"]["engine"], "buildx");
    assert_eq!(plan["steps"][0]["actions"][0]["action"], "fail");
    assert_eq!(plan["steps"].as_array().unwrap().len(), 10);

    // The real run stops in its preflight, with every missing piece at once, and builds nothing.
    let real = run(&["dist", "--arch", "armv7l"]);
    let err = String::from_utf8_lossy(&real.stderr);
    assert!(!real.status.success(), "{err}");
    assert!(err.contains("step `preflight` failed"), "{err}");
    assert!(err.contains("no container engine can build armv7l"), "{err}");
    assert!(err.contains("docker --version"), "{err}");
    assert!(err.contains("debootstrap --version"), "{err}");
    assert!(err.contains("node --version"), "{err}");
    assert!(!root.join("target/xtask/stamps").exists(), "a step ran after the failed preflight");
}

/// The README's lines for another checkout, as a user types them: real cargo, the alias from
/// inside this checkout and `cargo run --manifest-path` from a folder outside every checkout.
#[test]
fn the_readme_lines_for_another_checkout_plan_that_checkout() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let lines: Vec<&str> = readme
        .lines()
        .skip_while(|l| !l.starts_with("# Operate on another checkout"))
        .skip(1)
        .skip_while(|l| l.starts_with('#'))
        .take_while(|l| l.starts_with("cargo "))
        .collect();
    assert_eq!(lines.len(), 2, "README's 'Operate on another checkout' block changed: {lines:?}");
    let tmp = tempfile::tempdir().unwrap();
    let other = tmp.path().join("other");
    copy_repo(&other);
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    // The binary cargo runs is the one this test binary's build made: same target dir.
    let target = Path::new(env!("CARGO_BIN_EXE_xtask")).parent().unwrap().parent().unwrap();
    for line in lines {
        // `cargo run --manifest-path` builds the named checkout's xtask; naming this checkout
        // keeps that build fresh, and the outside folder proves the manifest picks the root.
        let (checkout, cwd) = if line.contains("--manifest-path") {
            (repo_root(), outside.clone())
        } else {
            (other.clone(), repo_root())
        };
        let cmd = format!("{} --json", line.replace("/path/to/checkout", checkout.to_str().unwrap()));
        let out = Command::new("sh")
            .args(["-c", &cmd])
            .current_dir(&cwd)
            .env("CARGO_TARGET_DIR", target)
            .env_remove("CARGO_MANIFEST_DIR")
            .output()
            .unwrap();
        assert_eq!(planned_root(&out), checkout, "{cmd} in {}", cwd.display());
    }
}

/// A file README's examples write in the checkout (`cargo xtask ... > FILE`) is git-ignored:
/// `release` refuses a tree with untracked files, so following README must not dirty it.
#[test]
fn files_readme_tells_users_to_write_are_git_ignored() {
    let root = repo_root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let written: Vec<&str> = readme
        .lines()
        .filter(|l| l.trim_start().starts_with("cargo xtask"))
        .filter_map(|l| l.split('#').next()?.split_once(" > ").map(|(_, f)| f.trim()))
        .filter(|f| !f.starts_with('/'))
        .collect();
    assert!(written.contains(&"report.json"), "README's examples changed: {written:?}");
    for file in written {
        let mut check = Command::new("git");
        check.arg("-C").arg(&root).args(["check-ignore", "-q", "--no-index", file]);
        assert!(
            check.status().unwrap().success(),
            "README writes {file}, which git does not ignore: add it to .gitignore"
        );
    }
}
