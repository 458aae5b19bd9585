//! `install-hooks` in a scratch git repository: the pre-commit hook refuses a commit whose
//! staged content has a defect, and lets a clean one through.

mod common;

use std::{path::Path, process::Command};

fn git(root: &Path, args: &[&str]) -> std::process::Output {
    Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"])
        .args(args)
        .current_dir(root)
        // The hook runs this build of the xtask rather than building one in the scratch repo.
        .env("KT_XTASK", env!("CARGO_BIN_EXE_xtask"))
        .output()
        .unwrap()
}

fn ok(out: std::process::Output) -> String {
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    text
}

fn refused(out: std::process::Output) -> String {
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "the commit should have been refused:\n{text}");
    text
}

#[test]
fn the_pre_commit_hook_refuses_staged_defects_and_lets_clean_commits_through() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    common::copy_repo(root);
    for f in ["ci/requirements-tools.txt", "rustfmt.toml"] {
        std::fs::create_dir_all(root.join(f).parent().unwrap()).unwrap();
        std::fs::copy(common::repo_root().join(f), root.join(f)).unwrap();
    }
    // A one-file Rust workspace: fmt and clippy in seconds.
    std::fs::write(root.join("Cargo.toml"), "[workspace]\nmembers = [\"xtask\"]\nresolver = \"2\"\n").unwrap();
    std::fs::create_dir_all(root.join("xtask/src")).unwrap();
    std::fs::write(
        root.join("xtask/Cargo.toml"),
        "[package]\nname = \"xtask\"\nversion = \"0.1.0\"\nedition = \"2024\"\npublish = false\n",
    )
    .unwrap();
    std::fs::write(root.join("xtask/src/main.rs"), "fn main() {\n    println!(\"fixture\");\n}\n").unwrap();
    std::fs::write(root.join(".gitignore"), "/target/\n").unwrap();
    ok(git(root, &["init", "-q"]));
    ok(git(root, &["add", "."]));
    ok(git(root, &["commit", "-q", "--no-verify", "-m", "start"]));

    let out = Command::new(env!("CARGO_BIN_EXE_xtask")).arg("--root").arg(root).arg("install-hooks").output().unwrap();
    ok(out);
    let hook = root.join(".git/hooks/pre-commit");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&hook).unwrap().permissions().mode() & 0o111, 0o111, "the hook is executable");
    }
    assert!(std::fs::read_to_string(&hook).unwrap().contains("check --staged"));

    // A secret-looking build arg in the staged Dockerfile: refused, naming file, line and fix.
    let dockerfile = root.join("docker/Dockerfile.services");
    let clean = std::fs::read_to_string(&dockerfile).unwrap();
    std::fs::write(&dockerfile, clean.replace("FROM system AS deps\n", "FROM system AS deps\nARG DB_PASSWORD\n"))
        .unwrap();
    ok(git(root, &["add", "docker/Dockerfile.services"]));
    let text = refused(git(root, &["commit", "-q", "-m", "add a password"]));
    assert!(text.contains("docker/Dockerfile.services:"), "{text}");
    assert!(text.contains("ARG DB_PASSWORD looks like a secret"), "{text}");
    assert!(text.contains("fix: drop the ARG and pass it as a BuildKit secret"), "{text}");

    // The staged content is what counts: the defect left unstaged in the working tree does
    // not stop a clean staged edit of the same file's neighbours.
    ok(git(root, &["reset", "-q"]));
    let config = root.join("python-service/config.yaml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("SPEECH_LANGUAGE: \"es\"", "SPEECH_LANGUAGE: \"ca\"")).unwrap();
    ok(git(root, &["add", "python-service/config.yaml"]));
    ok(git(root, &["commit", "-q", "-m", "speak Catalan"]));
    std::fs::write(&dockerfile, &clean).unwrap();

    // Unformatted Rust: refused by fmt; formatted, it passes (fmt and clippy).
    std::fs::write(root.join("xtask/src/main.rs"), "fn main(){println!(\"two\");}\n").unwrap();
    ok(git(root, &["add", "xtask/src/main.rs"]));
    let text = refused(git(root, &["commit", "-q", "-m", "unformatted"]));
    assert!(text.contains("xtask/src/main.rs:1: not formatted as rustfmt.toml says"), "{text}");
    std::fs::write(root.join("xtask/src/main.rs"), "fn main() {\n    println!(\"two\");\n}\n").unwrap();
    ok(git(root, &["add", "xtask/src/main.rs"]));
    ok(git(root, &["commit", "-q", "-m", "formatted"]));

    // Nothing a check reads: the hook has nothing to do.
    std::fs::write(root.join("NOTES.md"), "notes\n").unwrap();
    ok(git(root, &["add", "NOTES.md"]));
    ok(git(root, &["commit", "-q", "-m", "notes"]));
}
