use std::path::{Path, PathBuf};

use super::*;
use crate::snapshot::assert_snapshot;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn sha(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(bytes))
}

/// A release folder as two dist runs leave it: each arch's .deb and its manifest.
fn release_dir(arches: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (arch, deb_arch) in arches {
        let file = format!("kitchntabs_1.0.0_{deb_arch}.deb");
        let body = format!("a {arch} package");
        std::fs::write(d.path().join(&file), &body).unwrap();
        let manifest = serde_json::json!({
            "version": "1.0.0",
            "arch": arch,
            "git_commit": "0123456789abcdef0123456789abcdef01234567",
            "source_date_epoch": 1_700_000_000u64,
            "artifacts": [{"file": file, "arch": arch, "size": body.len(), "sha256": sha(body.as_bytes())}],
            "services": [{"name": "kt_service", "version": "1.0.0", "sha256": sha(b"svc"), "size": 3, "arch": arch}],
            "tools": {"python": "3.11.2"},
        });
        std::fs::write(d.path().join(format!("dist-manifest.{arch}.json")), manifest.to_string()).unwrap();
    }
    d
}

fn merge_err(dir: &Path) -> String {
    match merge(dir) {
        Ok(_) => panic!("merge of {} should fail", dir.display()),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn merge_writes_one_sha256sums_and_one_manifest_for_every_arch() {
    let d = release_dir(&[("x64", "amd64"), ("armv7l", "armhf")]);
    let merged = merge(d.path()).unwrap();
    write_merged(d.path(), &merged).unwrap();
    let sums = std::fs::read_to_string(d.path().join("SHA256SUMS")).unwrap();
    let lines: Vec<&str> = sums.lines().collect();
    assert_eq!(lines.len(), 2, "{sums}");
    assert!(lines[0].ends_with("  kitchntabs_1.0.0_amd64.deb"), "sorted by file: {sums}");
    assert!(lines[1].ends_with("  kitchntabs_1.0.0_armhf.deb"), "{sums}");
    // What users run against the release.
    let check =
        std::process::Command::new("sha256sum").arg("-c").arg("SHA256SUMS").current_dir(d.path()).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));

    let m: crate::release_record::ReleaseManifest =
        serde_json::from_str(&std::fs::read_to_string(d.path().join("dist-manifest.json")).unwrap()).unwrap();
    assert_eq!(m.version, "1.0.0");
    assert_eq!(m.git_commit, "0123456789abcdef0123456789abcdef01234567");
    assert_eq!(m.source_date_epoch, 1_700_000_000);
    assert_eq!(m.arches, [Arch::Armv7l, Arch::X64]);
    assert_eq!(m.artifacts.len(), 2);
    assert_eq!(m.services.keys().collect::<Vec<_>>(), [&Arch::Armv7l, &Arch::X64]);
    assert_eq!(m.services[&Arch::X64][0].name, "kt_service");
    assert_eq!(m.tools[&Arch::Armv7l]["python"], "3.11.2");
    // Nothing temporary is left behind.
    assert!(std::fs::read_dir(d.path()).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().starts_with('.')));
    // The same inputs give the same bytes.
    let again = merge(d.path()).unwrap();
    assert_eq!(again.sums, merged.sums);
}

#[test]
fn merge_refuses_an_artifact_that_does_not_match_its_manifest() {
    let d = release_dir(&[("x64", "amd64"), ("arm64", "arm64")]);
    let deb = d.path().join("kitchntabs_1.0.0_arm64.deb");
    std::fs::write(&deb, "a arm64 packagE").unwrap(); // same size, other bytes
    let err = merge_err(d.path());
    assert!(err.contains(&format!("{}: sha256 ", deb.display())), "{err}");
    assert!(err.contains("but dist-manifest.arm64.json says"), "{err}");

    std::fs::write(&deb, "longer than it was").unwrap();
    let err = merge_err(d.path());
    assert!(err.contains(&format!("{}: 18 bytes, but dist-manifest.arm64.json says 15", deb.display())), "{err}");

    std::fs::remove_file(&deb).unwrap();
    let err = merge_err(d.path());
    assert!(err.contains("kitchntabs_1.0.0_arm64.deb: listed in dist-manifest.arm64.json but missing"), "{err}");
}

#[test]
fn merge_refuses_arches_from_different_commits_and_empty_folders() {
    let d = release_dir(&[("x64", "amd64"), ("arm64", "arm64")]);
    let path = d.path().join("dist-manifest.x64.json");
    let text = std::fs::read_to_string(&path).unwrap().replace("0123456789abcdef0123", "fedcba98765432100123");
    std::fs::write(&path, text).unwrap();
    let err = merge_err(d.path());
    assert!(err.contains("dist-manifest.x64.json has git_commit fedcba"), "{err}");
    assert!(err.contains("but dist-manifest.arm64.json has 0123"), "{err}");

    let empty = tempfile::tempdir().unwrap();
    let err = merge_err(empty.path());
    assert!(
        err.contains("no dist-manifest.<arch>.json; build with `cargo xtask dist --arch ARCH --env prod`"),
        "{err}"
    );

    let d = release_dir(&[("x64", "amd64")]);
    let path = d.path().join("dist-manifest.x64.json");
    let text = std::fs::read_to_string(&path).unwrap().replace("kitchntabs_1.0.0_amd64.deb", "../etc/passwd");
    std::fs::write(&path, text).unwrap();
    assert!(merge_err(d.path()).contains("artifact `../etc/passwd` is not a file name in the release folder"));
}

fn facts(dirty: &[&str], head: &str, tag: Option<&str>) -> GitFacts {
    GitFacts {
        dirty: dirty.iter().map(|s| s.to_string()).collect(),
        head: head.into(),
        tag_commit: tag.map(str::to_string),
    }
}

#[test]
fn release_refuses_a_wrong_tag_a_dirty_tree_and_a_tag_that_is_not_head() {
    let head = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    assert!(preconditions("v1.0.0", "1.0.0", &facts(&[], head, Some(head))).is_ok());

    let err = preconditions("v1.1.0", "1.0.0", &facts(&[], head, Some(head))).unwrap_err().to_string();
    assert!(
        err.starts_with(
            "tag `v1.1.0` does not match the package version 1.0.0 (electron-app/package.json); release `--tag v1.0.0`"
        ),
        "{err}"
    );
    let err = preconditions("1.0.0", "1.0.0", &facts(&[], head, Some(head))).unwrap_err().to_string();
    assert_eq!(
        err,
        "tag `1.0.0` must be `v1.0.0` for version 1.0.0: release tags start with `v`; \
         run `cargo xtask release --tag v1.0.0`"
    );

    let err = preconditions("v1.0.0", "1.0.0", &facts(&[" M dist.yaml", "?? notes.txt"], head, Some(head)))
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("the working tree is not clean ( M dist.yaml, ?? notes.txt)"), "{err}");
    assert!(err.contains("commit or stash the changes"), "{err}");

    let err = preconditions("v1.0.0", "1.0.0", &facts(&[], head, None)).unwrap_err().to_string();
    assert!(err.contains("tag `v1.0.0` does not exist; create it on HEAD: `git tag -a v1.0.0"), "{err}");

    let err =
        preconditions("v1.0.0", "1.0.0", &facts(&[], head, Some("bbbbbbbbbbbbbbbbbbbb"))).unwrap_err().to_string();
    assert!(err.starts_with("tag `v1.0.0` points at bbbbbbbbbbbb, but HEAD is aaaaaaaaaaaa"), "{err}");
}

fn git(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.com",
            "-c",
            "commit.gpgsign=false",
            "-c",
            "tag.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn git_facts_see_dirt_untracked_files_and_where_the_tag_points() {
    let d = tempfile::tempdir().unwrap();
    git(d.path(), &["init", "-q"]);
    std::fs::write(d.path().join("a.txt"), "1").unwrap();
    git(d.path(), &["add", "."]);
    git(d.path(), &["commit", "-qm", "one"]);
    git(d.path(), &["tag", "-a", "v1.0.0", "-m", "one"]);
    let f = git_facts(d.path(), "v1.0.0").unwrap();
    assert!(f.dirty.is_empty());
    assert_eq!(f.tag_commit.as_deref(), Some(f.head.as_str()), "an annotated tag resolves to its commit");
    assert!(preconditions("v1.0.0", "1.0.0", &f).is_ok());

    std::fs::write(d.path().join("new.txt"), "x").unwrap();
    let err = preconditions("v1.0.0", "1.0.0", &git_facts(d.path(), "v1.0.0").unwrap()).unwrap_err().to_string();
    assert!(err.contains("not clean (?? new.txt)"), "{err}");

    git(d.path(), &["add", "."]);
    git(d.path(), &["commit", "-qm", "two"]);
    let err = preconditions("v1.0.0", "1.0.0", &git_facts(d.path(), "v1.0.0").unwrap()).unwrap_err().to_string();
    assert!(err.contains("tag `v1.0.0` points at"), "{err}");
    assert_eq!(git_facts(d.path(), "v9.9.9").unwrap().tag_commit, None);
}

fn rendered(arches: &[Arch], key: Option<&SigningKey>, host: Arch) -> Result<String> {
    let config = Config::load(&repo_root()).unwrap();
    Ok(plan(&config, &format!("v{}", config.version), arches, key, Some(host))?.render(&repo_root()))
}

#[test]
fn release_dry_run_snapshots() {
    let key = SigningKey("releases@kitchntabs.com".into());
    assert_snapshot("release-all-from-x64-signed", &rendered(&[], Some(&key), Arch::X64).unwrap());
    assert_snapshot("release-arm64-unsigned", &rendered(&[Arch::Arm64], None, Arch::X64).unwrap());
    assert_snapshot("release-darwin-arm64-on-a-mac", &rendered(&[Arch::DarwinArm64], None, Arch::DarwinArm64).unwrap());
}

#[test]
fn darwin_is_skipped_off_macos_unless_asked_for_and_unknown_arches_are_refused() {
    let text = rendered(&[], None, Arch::X64).unwrap();
    assert!(text.contains("skip darwin-arm64: builds only on an Apple Silicon Mac (CI's macos-14 job)"), "{text}");
    let err = rendered(&[Arch::DarwinArm64], None, Arch::X64).unwrap_err().to_string();
    assert!(
        err.starts_with("--arch darwin-arm64: builds only natively, on an Apple Silicon Mac, and this host is x64"),
        "{err}"
    );

    let mut config = Config::load(&repo_root()).unwrap();
    config.dist.targets.remove(&Arch::Arm64);
    let err = plan(&config, "v1.0.0", &[Arch::Arm64], None, Some(Arch::X64)).unwrap_err().to_string();
    assert!(err.starts_with("--arch arm64: not a target in dist.yaml (targets: armv7l, x64, darwin-arm64)"), "{err}");
}

#[test]
fn a_signed_release_ends_with_the_apt_repository_when_apt_repo_into_is_set() {
    let mut config = Config::load(&repo_root()).unwrap();
    config.dist.apt_repo.into = Some("public/apt".into());
    let key = SigningKey("releases@kitchntabs.com".into());
    let signed = plan(&config, "v1.0.0", &[Arch::X64], Some(&key), Some(Arch::X64)).unwrap();
    match signed.steps.last() {
        Some(ReleaseStep::AptRepo { dir, publish }) => {
            assert_eq!(*dir, signed.dir);
            assert_eq!(publish.into, repo_root().join("public/apt"));
            assert_eq!((publish.suite.as_str(), publish.keep), ("stable", 3));
            assert_eq!(publish.key.as_deref(), Some("releases@kitchntabs.com"));
        }
        other => panic!("last step {other:?}"),
    }
    assert!(signed.render(&repo_root()).contains("apt-repo: publish release/"), "{}", signed.render(&repo_root()));
    // Unsigned, or with no apt_repo.into: no repository step.
    let unsigned = plan(&config, "v1.0.0", &[Arch::X64], None, Some(Arch::X64)).unwrap();
    assert!(!unsigned.steps.iter().any(|s| matches!(s, ReleaseStep::AptRepo { .. })));
    config.dist.apt_repo.into = None;
    let plain = plan(&config, "v1.0.0", &[Arch::X64], Some(&key), Some(Arch::X64)).unwrap();
    assert!(!plain.steps.iter().any(|s| matches!(s, ReleaseStep::AptRepo { .. })));
}
