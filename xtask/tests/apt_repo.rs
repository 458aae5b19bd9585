//! `cargo xtask apt-repo`, checked by Debian's own tools over small packages built with
//! dpkg-deb: the Packages stanzas against `apt-ftparchive packages` on the same pool, the
//! signatures with gpgv, and the whole repository with a real `apt-get update` against a
//! file: URL, under a private apt configuration (no change to the host's apt state).

mod common;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    sync::Once,
};

use xtask::apt_repo::{Publish, parse_stanzas, publish};

/// Run a tool that must succeed; its stdout.
fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// apt-ftparchive (apt-utils), gpg, gpgv, dpkg-deb and xz, installed when missing: loud.
fn tools() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let ok = |p: &str, a: &str| Command::new(p).arg(a).output().is_ok_and(|o| o.status.success());
        let mut missing = Vec::new();
        for (prog, arg, pkg) in [
            ("apt-ftparchive", "--version", "apt-utils"),
            ("gpg", "--version", "gpg"),
            ("gpgv", "--version", "gpgv"),
            ("dpkg-deb", "--version", "dpkg"),
            ("xz", "--version", "xz-utils"),
            ("gpg-agent", "--version", "gpg-agent"),
        ] {
            if !ok(prog, arg) {
                missing.push(pkg);
            }
        }
        if missing.is_empty() {
            return;
        }
        eprintln!("apt_repo tests: installing {missing:?} with apt-get");
        run(Command::new("apt-get").args(["install", "-y", "-qq", "--no-install-recommends"]).args(&missing));
    });
}

/// A package built by dpkg-deb: `<dir>/<name>_<version>_<arch>.deb`.
fn make_deb(dir: &Path, name: &str, version: &str, arch: &str) -> PathBuf {
    make_deb_with(dir, name, version, arch, &format!("{name} {version} {arch}\n"))
}

fn make_deb_with(dir: &Path, name: &str, version: &str, arch: &str, readme: &str) -> PathBuf {
    let tree = make_tree(dir, name, version, arch, &[("README", readme.as_bytes())]);
    build(&tree, &dir.join(format!("{name}_{version}_{arch}.deb")), "xz")
}

/// A dpkg-deb tree: `files` under usr/share/doc/<name>/, DEBIAN/control, and DEBIAN/md5sums
/// as dh_md5sums writes it, by coreutils' md5sum (apt-repo checks data.tar against it).
fn make_tree(dir: &Path, name: &str, version: &str, arch: &str, files: &[(&str, &[u8])]) -> PathBuf {
    let tree = dir.join(format!("tree-{name}-{version}-{arch}"));
    std::fs::create_dir_all(tree.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(tree.join(format!("usr/share/doc/{name}"))).unwrap();
    let mut paths = Vec::new();
    for (file, bytes) in files {
        let path = format!("usr/share/doc/{name}/{file}");
        std::fs::write(tree.join(&path), bytes).unwrap();
        paths.push(path);
    }
    std::fs::write(
        tree.join("DEBIAN/control"),
        format!(
            "Package: {name}\nVersion: {version}\nArchitecture: {arch}\nMaintainer: KT Test <kt@example.com>\n\
             Installed-Size: 4\nDepends: libc6 (>= 2.36)\nSection: utils\nPriority: optional\n\
             Homepage: https://example.com\nDescription: test package {name}\n A test package.\n .\n Second paragraph.\n"
        ),
    )
    .unwrap();
    let sums = run(Command::new("md5sum").args(&paths).current_dir(&tree));
    std::fs::write(tree.join("DEBIAN/md5sums"), sums).unwrap();
    tree
}

/// dpkg-deb's package of `tree`, data.tar compressed with `z` (xz, zstd, gzip, none).
fn build(tree: &Path, out: &Path, z: &str) -> PathBuf {
    run(Command::new("dpkg-deb").args(["--root-owner-group", &format!("-Z{z}"), "--build"]).arg(tree).arg(out));
    out.to_path_buf()
}

const ARCHES: [&str; 3] = ["amd64", "arm64", "armhf"];

fn debs(dir: &Path, version: &str) -> Vec<PathBuf> {
    ARCHES.iter().map(|a| make_deb(dir, "kttest", version, a)).collect()
}

fn request(debs: Vec<PathBuf>, into: &Path) -> Publish {
    Publish {
        debs,
        into: into.to_path_buf(),
        suite: "stable".into(),
        keep: 3,
        origin: "KT".into(),
        label: "KT".into(),
        key: None,
        valid_for_days: None,
        url: None,
        name: "kttest".into(),
        gnupg_home: None,
    }
}

fn stanzas(text: &str) -> Vec<Vec<(String, String)>> {
    parse_stanzas(text).unwrap().into_iter().map(|s| s.0).collect()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

/// Every file under `dir`, relative, with its bytes.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| (e.path().strip_prefix(dir).unwrap().display().to_string(), std::fs::read(e.path()).unwrap()))
        .collect()
}

#[test]
fn packages_match_apt_ftparchive_and_release_hashes_match() {
    tools();
    let t = tempfile::tempdir().unwrap();
    let mut inputs = debs(t.path(), "1.0.0");
    inputs.extend(debs(t.path(), "1.0.0~rc1"));
    inputs.push(make_deb(t.path(), "aaa-tool", "2.0", "amd64"));
    let repo = t.path().join("repo");
    let published = publish(&request(inputs, &repo)).unwrap();
    assert_eq!(published.packages.len(), 7, "{:?}", published.packages);

    // apt-ftparchive over the same pool: one stanza per .deb, found by Filename.
    let theirs = stanzas(&run(Command::new("apt-ftparchive").args(["packages", "pool/"]).current_dir(&repo)));
    let by_file: BTreeMap<String, &Vec<(String, String)>> =
        theirs.iter().map(|s| (s.iter().find(|(k, _)| k == "Filename").unwrap().1.clone(), s)).collect();
    assert_eq!(by_file.len(), 7);
    let mut seen = 0;
    for arch in ARCHES {
        let ours = stanzas(&read(&repo.join(format!("dists/stable/main/binary-{arch}/Packages"))));
        // Sorted by package, then by dpkg version: the ~rc1 first.
        let order: Vec<(String, String)> =
            ours.iter().map(|s| (s[0].1.clone(), s.iter().find(|(k, _)| k == "Version").unwrap().1.clone())).collect();
        let mut want = vec![("kttest".to_string(), "1.0.0~rc1".to_string()), ("kttest".into(), "1.0.0".into())];
        if arch == "amd64" {
            want.insert(0, ("aaa-tool".into(), "2.0".into()));
        }
        assert_eq!(order, want, "{arch}");
        for s in &ours {
            seen += 1;
            let file = &s.iter().find(|(k, _)| k == "Filename").unwrap().1;
            let t = by_file.get(file).unwrap_or_else(|| panic!("apt-ftparchive has no stanza for {file}"));
            // The same fields in the same order, with the same values; apt-ftparchive adds SHA1
            // and SHA512, which this repository leaves out (apt checks SHA256).
            let theirs: Vec<&(String, String)> = t.iter().filter(|(k, _)| k != "SHA1" && k != "SHA512").collect();
            let ours: Vec<&(String, String)> = s.iter().collect();
            assert_eq!(ours, theirs, "{file}");
        }
    }
    assert_eq!(seen, 7);

    // Packages.xz decompresses (xz) to Packages; every index has its by-hash copy; Release's
    // sums are apt-ftparchive's for the same files.
    let suite = repo.join("dists/stable");
    let ftp_release = run(Command::new("apt-ftparchive").args(["release", "."]).current_dir(&suite));
    let sha_section = |text: &str| -> BTreeMap<String, String> {
        let body = text.split("SHA256:\n").nth(1).unwrap();
        body.lines()
            .take_while(|l| l.starts_with(' '))
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f[2].to_string(), format!("{} {}", f[0], f[1]))
            })
            .collect()
    };
    let ours = sha_section(&read(&suite.join("Release")));
    let theirs = sha_section(&ftp_release);
    assert_eq!(ours.len(), 6, "{ours:?}");
    for arch in ARCHES {
        let dir = suite.join(format!("main/binary-{arch}"));
        let unpacked = run(Command::new("xz").arg("-dc").arg(dir.join("Packages.xz")));
        assert_eq!(unpacked, read(&dir.join("Packages")));
        for name in ["Packages", "Packages.xz"] {
            let rel = format!("main/binary-{arch}/{name}");
            assert_eq!(ours.get(&rel), theirs.get(&rel), "{rel}");
            let sha = run(Command::new("sha256sum").arg(dir.join(name)));
            let sha = sha.split_whitespace().next().unwrap();
            assert_eq!(
                std::fs::read(dir.join("by-hash/SHA256").join(sha)).unwrap(),
                std::fs::read(dir.join(name)).unwrap()
            );
        }
    }
    let release = read(&suite.join("Release"));
    for line in [
        "Suite: stable",
        "Codename: stable",
        "Architectures: amd64 arm64 armhf",
        "Components: main",
        "Acquire-By-Hash: yes",
    ] {
        assert!(release.lines().any(|l| l == line), "no {line:?} in\n{release}");
    }
    assert!(!release.contains("Valid-Until"), "{release}");
    // Unsigned: the .sources says so, and apt takes the repository with it.
    let sources = read(&published.sources);
    assert!(sources.contains("Trusted: yes"));
    assert!(published.keyring.is_none());
    let apt = Apt::new(&t.path().join("apt"), &sources);
    let out = apt.cmd("apt-get", &["update"]);
    assert!(out.status.success() && !text(&out).contains("E:"), "{}", text(&out));
    let policy = text(&apt.cmd("apt-cache", &["policy", "aaa-tool"]));
    assert!(policy.contains("Candidate: 2.0"), "{policy}");
}

#[test]
fn valid_until_is_date_plus_the_configured_days() {
    tools();
    let t = tempfile::tempdir().unwrap();
    let repo = t.path().join("repo");
    let mut req = request(vec![make_deb(t.path(), "kttest", "1.0", "amd64")], &repo);
    req.valid_for_days = Some(7);
    publish(&req).unwrap();
    let release = read(&repo.join("dists/stable/Release"));
    let field =
        |k: &str| release.lines().find_map(|l| l.strip_prefix(k)).unwrap_or_else(|| panic!("no {k}")).to_string();
    let epoch = |d: &str| run(Command::new("date").args(["-u", "+%s", "-d", d])).trim().parse::<i64>().unwrap();
    assert_eq!(epoch(&field("Valid-Until: ")) - epoch(&field("Date: ")), 7 * 86400);
}

#[test]
fn keep_drops_the_oldest_version_and_its_pool_file() {
    tools();
    let t = tempfile::tempdir().unwrap();
    let repo = t.path().join("repo");
    let by_hash = || -> Vec<String> {
        let dir = repo.join("dists/stable/main/binary-amd64/by-hash/SHA256");
        let mut v: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    };
    let mut generations: Vec<Vec<String>> = Vec::new();
    for v in ["1.9.0", "1.10.0", "2.0.0~beta1"] {
        let inputs = debs(t.path(), v);
        let mut req = request(inputs.clone(), &repo);
        req.keep = 2;
        publish(&req).unwrap();
        // The pool file is the input, hard-linked (same filesystem).
        use std::os::unix::fs::MetadataExt;
        let pooled = repo.join(format!("pool/main/k/kttest/kttest_{v}_amd64.deb"));
        assert_eq!(std::fs::metadata(&pooled).unwrap().ino(), std::fs::metadata(&inputs[0]).unwrap().ino());
        generations.push(by_hash());
    }
    // by-hash holds this generation's indices and the previous one's, not older ones.
    let (first, second, third) = (&generations[0], &generations[1], &generations[2]);
    assert_eq!(first.len(), 2);
    assert!(first.iter().all(|h| second.contains(h)), "{first:?} {second:?}");
    let second_own: Vec<&String> = second.iter().filter(|h| !first.contains(h)).collect();
    assert_eq!(second_own.len(), 2, "{generations:?}");
    assert!(second_own.iter().all(|h| third.contains(h)), "{generations:?}");
    assert!(!first.iter().any(|h| third.contains(h)) && third.len() == 4, "{generations:?}");
    // dpkg's order: 1.9.0 < 1.10.0 < 2.0.0~beta1; the oldest (1.9.0) goes.
    let listed = stanzas(&run(Command::new("apt-ftparchive").args(["packages", "pool/"]).current_dir(&repo)));
    let mut versions: Vec<String> =
        listed.iter().map(|s| s.iter().find(|(k, _)| k == "Version").unwrap().1.clone()).collect();
    versions.sort();
    versions.dedup();
    assert_eq!(versions, ["1.10.0", "2.0.0~beta1"], "the pool after keep 2");
    for arch in ARCHES {
        assert!(!repo.join(format!("pool/main/k/kttest/kttest_1.9.0_{arch}.deb")).exists());
        let p = read(&repo.join(format!("dists/stable/main/binary-{arch}/Packages")));
        assert!(!p.contains("1.9.0") && p.contains("Version: 1.10.0") && p.contains("Version: 2.0.0~beta1"), "{p}");
    }
    // No leftover temporary folder beside the suite.
    let dists: Vec<String> = std::fs::read_dir(repo.join("dists"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(dists, ["stable"]);
}

#[test]
fn a_bad_deb_is_named_and_nothing_is_written() {
    tools();
    let t = tempfile::tempdir().unwrap();
    let good = make_deb(t.path(), "kttest", "1.0", "amd64");
    let not_deb = t.path().join("notes.deb");
    std::fs::write(&not_deb, "not a package\n").unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let cut = t.path().join("cut.deb");
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();

    // Into an empty place: nothing appears.
    let repo = t.path().join("repo");
    for bad in [&not_deb, &cut] {
        let err = publish(&request(vec![good.clone(), bad.clone()], &repo)).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains(&bad.display().to_string()), "{msg}");
        assert!(!repo.exists(), "{bad:?} left {:?}", tree(&repo).keys().collect::<Vec<_>>());
    }
    assert!(format!("{:#}", publish(&request(vec![cut.clone()], &repo)).unwrap_err()).contains("ends"));

    // Into an existing repository: it is left exactly as it was.
    publish(&request(vec![good.clone()], &repo)).unwrap();
    let before = tree(&repo);
    let newer = make_deb(t.path(), "kttest", "1.1", "amd64");
    assert!(publish(&request(vec![newer, cut], &repo)).is_err());
    assert_eq!(tree(&repo), before);
}

#[test]
fn a_published_version_never_changes() {
    tools();
    let t = tempfile::tempdir().unwrap();
    let repo = t.path().join("repo");
    let first = make_deb(t.path(), "kttest", "1.0", "amd64");
    publish(&request(vec![first.clone()], &repo)).unwrap();
    // The same bytes again: fine, and nothing changes.
    publish(&request(vec![first.clone()], &repo)).unwrap();
    // Other bytes under the same version: refused.
    let other = t.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let changed = make_deb_with(&other, "kttest", "1.0", "amd64", "changed\n");
    let err = format!("{:#}", publish(&request(vec![changed.clone()], &repo)).unwrap_err());
    assert!(err.contains("already published") && err.contains("bump the version"), "{err}");
    // Two inputs that disagree: refused, naming both.
    let err =
        format!("{:#}", publish(&request(vec![first.clone(), changed.clone()], &t.path().join("new"))).unwrap_err());
    assert!(err.contains(&first.display().to_string()) && err.contains(&changed.display().to_string()), "{err}");
}

// ---------------------------------------------------------------- signed, through apt

/// A GNUPGHOME with one new signing key; its e-mail names it. The agent is stopped on drop.
struct Gpg {
    home: tempfile::TempDir,
    email: String,
}

impl Gpg {
    fn new(email: &str) -> Gpg {
        // Under /tmp: gpg-agent's socket path must stay short.
        let home = tempfile::Builder::new().prefix("kt-gpg").tempdir_in("/tmp").unwrap();
        run(Command::new("gpg")
            .env("GNUPGHOME", home.path())
            .args(["--batch", "--passphrase", "", "--quick-gen-key"])
            .arg(format!("KT Test <{email}>"))
            .args(["ed25519", "sign", "never"]));
        Gpg { home, email: email.into() }
    }

    fn export(&self, to: &Path) {
        let out =
            Command::new("gpg").env("GNUPGHOME", self.home.path()).args(["--export", &self.email]).output().unwrap();
        assert!(out.status.success() && !out.stdout.is_empty());
        std::fs::write(to, out.stdout).unwrap();
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf").env("GNUPGHOME", self.home.path()).args(["--kill", "gpg-agent"]).output();
    }
}

fn xtask_apt_repo(args: &[&str], env: &[(&str, &Path)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.arg("--root").arg(common::repo_root()).arg("apt-repo").args(args).env_remove("KT_GPG_KEY");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// apt-get/apt-cache with every path in `dir`: sources, lists, cache, status, no trusted keys
/// but the source's Signed-By, no host configuration.
struct Apt {
    dir: PathBuf,
}

impl Apt {
    fn new(dir: &Path, sources: &str) -> Apt {
        for d in ["state/lists/partial", "cache/archives/partial", "etc", "empty"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        std::fs::write(dir.join("status"), "").unwrap();
        std::fs::write(dir.join("etc/test.sources"), sources).unwrap();
        let d = dir.display();
        std::fs::write(
            dir.join("apt.conf"),
            format!(
                "Dir::Etc::parts \"{d}/empty\";\nDir::Etc::main \"/dev/null\";\n\
                 Dir::Etc::sourcelist \"{d}/etc/test.sources\";\nDir::Etc::sourceparts \"{d}/empty\";\n\
                 Dir::Etc::trusted \"{d}/none.gpg\";\nDir::Etc::trustedparts \"{d}/empty\";\n\
                 Dir::Etc::preferences \"{d}/none.pref\";\nDir::Etc::preferencesparts \"{d}/empty\";\n\
                 Dir::State \"{d}/state\";\nDir::State::status \"{d}/status\";\nDir::Cache \"{d}/cache\";\n\
                 APT::Architecture \"amd64\";\nAPT::Architectures {{ \"amd64\"; \"arm64\"; \"armhf\"; }};\n\
                 APT::Sandbox::User \"root\";\nAcquire::Languages \"none\";\n"
            ),
        )
        .unwrap();
        Apt { dir: dir.to_path_buf() }
    }

    fn cmd(&self, prog: &str, args: &[&str]) -> std::process::Output {
        Command::new(prog).env("APT_CONFIG", self.dir.join("apt.conf")).args(args).output().unwrap()
    }
}

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn signed_repository_passes_gpgv_and_apt_get_update() {
    tools();
    let t = tempfile::tempdir().unwrap();
    let gpg = Gpg::new("repo@example.com");
    let repo = t.path().join("repo");
    let mut inputs = debs(t.path(), "1.0.0");
    inputs.extend(debs(t.path(), "1.1.0"));
    let mut args = vec!["--into".to_string(), repo.display().to_string()];
    for d in &inputs {
        args.extend(["--deb".to_string(), d.display().to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    // Without KT_GPG_KEY: refused, naming both ways out.
    let out = xtask_apt_repo(&args, &[]);
    assert!(
        !out.status.success() && text(&out).contains("KT_GPG_KEY") && text(&out).contains("--unsigned"),
        "{}",
        text(&out)
    );
    assert!(!repo.exists());

    // --dry-run shows the gpg commands and writes nothing.
    let key = Path::new("repo@example.com");
    let env = [("GNUPGHOME", gpg.home.path()), ("KT_GPG_KEY", key), ("SOURCE_DATE_EPOCH", Path::new("1796221787"))];
    let out = xtask_apt_repo(&[&args[..], &["--dry-run"]].concat(), &env);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("--clearsign --output InRelease Release"), "{}", text(&out));
    assert!(!repo.exists());

    let out = xtask_apt_repo(&[&args[..], &["--json"]].concat(), &env);
    assert!(out.status.success(), "{}", text(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["packages"].as_array().unwrap().len(), 6, "{json}");

    let suite = repo.join("dists/stable");
    let release = read(&suite.join("Release"));
    assert!(release.contains("\nDate: Wed, 02 Dec 2026 14:29:47 UTC\n"), "{release}");
    let keyring = repo.join("kitchntabs-archive-keyring.gpg");
    run(Command::new("gpgv").arg("--keyring").arg(&keyring).arg(suite.join("InRelease")));
    run(Command::new("gpgv").arg("--keyring").arg(&keyring).arg(suite.join("Release.gpg")).arg(suite.join("Release")));
    let sources = read(&repo.join("kitchntabs.sources"));
    assert!(sources.contains("Signed-By: /usr/share/keyrings/kitchntabs-archive-keyring.gpg\n"), "{sources}");
    assert!(sources.contains(&format!("URIs: file:{}\n", repo.display())), "{sources}");
    // The same .sources, with the keyring where this test keeps it.
    let sources = sources.replace("/usr/share/keyrings/kitchntabs-archive-keyring.gpg", &keyring.display().to_string());

    let apt = Apt::new(&t.path().join("apt-ok"), &sources);
    let out = apt.cmd("apt-get", &["update"]);
    let said = text(&out);
    assert!(out.status.success() && !said.contains("W:") && !said.contains("E:"), "{said}");
    // Every index came by hash, at the first try.
    assert!(!said.contains("Ign:"), "{said}");
    let policy = text(&apt.cmd("apt-cache", &["policy", "kttest"]));
    assert!(policy.contains("Candidate: 1.1.0"), "{policy}");
    let show = text(&apt.cmd("apt-cache", &["show", "kttest:arm64"]));
    assert!(show.contains("Version: 1.1.0") && show.contains("Version: 1.0.0"), "{show}");

    // A tampered index: every copy of amd64's Packages lists another size.
    let dir = suite.join("main/binary-amd64");
    let tampered = read(&dir.join("Packages")).replacen("Installed-Size: 4", "Installed-Size: 5", 1);
    let xz = {
        let mut child = Command::new("xz")
            .arg("-c")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(tampered.as_bytes()).unwrap();
        child.wait_with_output().unwrap().stdout
    };
    let original = std::fs::read(dir.join("Packages")).unwrap();
    let original_xz = std::fs::read(dir.join("Packages.xz")).unwrap();
    for f in std::fs::read_dir(dir.join("by-hash/SHA256")).unwrap() {
        let p = f.unwrap().path();
        let b = std::fs::read(&p).unwrap();
        std::fs::write(
            &p,
            if b == original_xz {
                xz.clone()
            } else if b == original {
                tampered.clone().into_bytes()
            } else {
                b
            },
        )
        .unwrap();
    }
    std::fs::write(dir.join("Packages"), &tampered).unwrap();
    std::fs::write(dir.join("Packages.xz"), &xz).unwrap();
    let apt = Apt::new(&t.path().join("apt-tampered"), &sources);
    let out = apt.cmd("apt-get", &["update"]);
    assert!(!out.status.success() || text(&out).contains("E:"), "{}", text(&out));
    assert!(
        text(&out).contains("Hash Sum mismatch") || text(&out).contains("File has unexpected size"),
        "{}",
        text(&out)
    );

    // Signed by a key the source does not name: apt refuses the repository.
    let other = Gpg::new("other@example.com");
    let wrong = t.path().join("wrong.gpg");
    other.export(&wrong);
    let sources = sources.replace(&keyring.display().to_string(), &wrong.display().to_string());
    let apt = Apt::new(&t.path().join("apt-wrong-key"), &sources);
    let out = apt.cmd("apt-get", &["update"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("NO_PUBKEY") && text(&out).contains("not signed"), "{}", text(&out));
}

#[test]
fn the_command_names_a_bad_deb_in_its_json_error_and_exits_2() {
    tools();
    let t = tempfile::tempdir().unwrap();
    let bad = t.path().join("kitchntabs_1.0.0_arm64.deb");
    std::fs::write(&bad, "!<arch>\ndebian-binary   0           0     0     100644  4         `\n2.0\n").unwrap();
    let repo = t.path().join("repo");
    let bad_s = bad.display().to_string();
    let repo_s = repo.display().to_string();
    let out = xtask_apt_repo(&["--unsigned", "--into", &repo_s, "--deb", &bad_s, "--json"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let err = doc["error"].as_str().unwrap();
    assert!(err.contains(&bad_s) && err.contains("control.tar"), "{err}");
    assert!(!repo.exists());
}

/// CI's publish job: `release --merge DIR` over two arches' .debs and manifests, with
/// apt_repo.into in dist.yaml and KT_GPG_KEY set, merges, signs SHA256SUMS and publishes the
/// signed repository; `--dry-run` shows those steps and writes nothing.
#[test]
fn release_merge_signs_and_publishes_the_repository() {
    tools();
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("checkout");
    common::copy_repo(&root);
    let repo = t.path().join("public-apt");
    let yaml = std::fs::read_to_string(root.join("dist.yaml")).unwrap();
    let yaml = yaml.replacen("\napt_repo: {}\n", &format!("\napt_repo:\n  into: {}\n", repo.display()), 1);
    std::fs::write(root.join("dist.yaml"), yaml).unwrap();
    let version = common::version(&root);

    // What two dist jobs leave: each arch's .deb and its manifest.
    let dir = t.path().join("downloaded");
    std::fs::create_dir(&dir).unwrap();
    for (arch, debarch) in [("x64", "amd64"), ("armv7l", "armhf")] {
        let deb = make_deb(t.path(), "kitchntabs", &version, debarch);
        let name = deb.file_name().unwrap().to_string_lossy().into_owned();
        std::fs::copy(&deb, dir.join(&name)).unwrap();
        let bytes = std::fs::read(&deb).unwrap();
        let manifest = serde_json::json!({
            "version": version,
            "arch": arch,
            "git_commit": "0123456789abcdef0123456789abcdef01234567",
            "source_date_epoch": 1_796_221_787u64,
            "artifacts": [{"file": name, "arch": arch, "size": bytes.len(), "sha256": common::sha256(&deb)}],
            "services": [],
            "tools": {},
        });
        std::fs::write(dir.join(format!("dist-manifest.{arch}.json")), manifest.to_string()).unwrap();
    }
    let gpg = Gpg::new("releases@example.com");
    let merge = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_xtask"))
            .arg("--root")
            .arg(&root)
            .args(["release", "--tag", &format!("v{version}"), "--merge"])
            .arg(&dir)
            .args(extra)
            .env("GNUPGHOME", gpg.home.path())
            .env("KT_GPG_KEY", "releases@example.com")
            .output()
            .unwrap()
    };

    let out = merge(&["--dry-run"]);
    assert!(out.status.success(), "{}", text(&out));
    let plan = text(&out);
    for step in ["] merge ", "] sign SHA256SUMS", "--detach-sign", &format!("] apt-repo: publish {}", dir.display())] {
        assert!(plan.contains(step), "no `{step}` in:\n{plan}");
    }
    assert!(!dir.join("SHA256SUMS").exists() && !repo.exists(), "--dry-run wrote something");

    let out = merge(&[]);
    assert!(out.status.success(), "{}", text(&out));
    let keyring = t.path().join("key.gpg");
    gpg.export(&keyring);
    run(Command::new("gpgv")
        .arg("--keyring")
        .arg(&keyring)
        .arg(dir.join("SHA256SUMS.asc"))
        .arg(dir.join("SHA256SUMS")));
    let suite = repo.join("dists/stable");
    run(Command::new("gpgv").arg("--keyring").arg(&keyring).arg(suite.join("InRelease")));
    for debarch in ["amd64", "armhf"] {
        let packages = read(&suite.join(format!("main/binary-{debarch}/Packages")));
        assert_eq!(packages.matches("Package: ").count(), 1, "{packages}");
        for line in
            ["Package: kitchntabs".to_string(), format!("Version: {version}"), format!("Architecture: {debarch}")]
        {
            assert!(packages.lines().any(|l| l == line), "no `{line}` in:\n{packages}");
        }
    }
}

// ---------------------------------------------------------------- damaged inputs, failed runs

/// Every entry under `dir` (folders too, so an empty `dists/` shows), relative, with a
/// file's bytes.
fn listing(dir: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
    walkdir::WalkDir::new(dir)
        .min_depth(1)
        .into_iter()
        .map(Result::unwrap)
        .map(|e| {
            let bytes = e.file_type().is_file().then(|| std::fs::read(e.path()).unwrap());
            (e.path().strip_prefix(dir).unwrap().display().to_string(), bytes)
        })
        .collect()
}

/// 256 KiB that no compressor shrinks, so data.tar fills the middle of the .deb.
fn noise() -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..1 << 18)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// `kttest` 1.0 amd64 with a large file, data.tar compressed with `z`.
fn big_deb(dir: &Path, z: &str) -> PathBuf {
    let dir = dir.join(format!("big-{z}"));
    std::fs::create_dir_all(&dir).unwrap();
    let tree = make_tree(&dir, "kttest", "1.0", "amd64", &[("README", b"readme\n"), ("blob", &noise())]);
    build(&tree, &dir.join("kttest_1.0_amd64.deb"), z)
}

/// What dpkg itself says of a package: unpack it and check its md5sums with md5sum.
fn dpkg_accepts(deb: &Path) -> bool {
    let out = tempfile::tempdir().unwrap();
    let unpacked = Command::new("dpkg-deb").arg("-R").arg(deb).arg(out.path()).output().unwrap();
    unpacked.status.success()
        && Command::new("md5sum")
            .args(["--quiet", "-c", "DEBIAN/md5sums"])
            .current_dir(out.path())
            .output()
            .unwrap()
            .status
            .success()
}

/// Publish `bad` into an empty place and into a repository holding another version: both
/// refused with exit 2, naming the .deb, `names` and the rebuild, and every folder is left as
/// it was; then `good` (the same version) is accepted, and no lock file is left beside it.
fn refused_then_good_accepted(t: &Path, bad: &Path, good: &Path, names: &str) {
    let place = t.join("place");
    let repo = place.join("repo");
    let repo_s = repo.display().to_string();
    let publish_cli =
        |deb: &Path| xtask_apt_repo(&["--unsigned", "--into", &repo_s, "--deb", &deb.display().to_string()], &[]);
    for existing in [false, true] {
        if existing {
            let older = make_deb(&t.join("older"), "kttest", "0.9", "amd64");
            assert!(publish_cli(&older).status.success());
        } else {
            std::fs::create_dir_all(&place).unwrap();
        }
        let before = listing(&place);
        let out = publish_cli(bad);
        let said = text(&out);
        assert_eq!(out.status.code(), Some(2), "{said}");
        for part in [&bad.display().to_string(), names, "cargo xtask dist", "nothing was published"] {
            assert!(said.contains(part), "no {part:?} in: {said}");
        }
        assert_eq!(listing(&place), before, "the failed run changed {}", place.display());
    }
    let out = publish_cli(good);
    assert!(out.status.success(), "{}", text(&out));
    let left: Vec<String> = listing(&place).into_keys().filter(|k| !k.starts_with("repo/")).collect();
    assert_eq!(left, ["repo"], "beside the repository after a run");
    let packages = read(&repo.join("dists/stable/main/binary-amd64/Packages"));
    assert!(packages.contains("\nVersion: 1.0\n"), "{packages}");
}

#[test]
fn a_deb_damaged_inside_data_tar_is_refused_in_every_compression() {
    tools();
    for z in ["xz", "zstd", "gzip", "none"] {
        let t = tempfile::tempdir().unwrap();
        let good = big_deb(t.path(), z);
        let mut bytes = std::fs::read(&good).unwrap();
        let mid = bytes.len() / 2;
        for b in &mut bytes[mid..mid + 100] {
            *b ^= 0xff;
        }
        let bad = t.path().join("bad.deb");
        std::fs::write(&bad, &bytes).unwrap();
        assert!(dpkg_accepts(&good) && !dpkg_accepts(&bad), "{z}: the fixture is not what dpkg says");
        let data = match z {
            "xz" => "data.tar.xz",
            "zstd" => "data.tar.zst",
            "gzip" => "data.tar.gz",
            _ => "data.tar",
        };
        refused_then_good_accepted(t.path(), &bad, &good, data);
    }
}

#[test]
fn a_deb_whose_files_disagree_with_its_md5sums_is_refused() {
    tools();
    let t = tempfile::tempdir().unwrap();
    let good = big_deb(t.path(), "xz");
    let tree = t.path().join("big-xz/tree-kttest-1.0-amd64");
    let sums = read(&tree.join("DEBIAN/md5sums"));
    // A sum that names another file's bytes: data.tar itself is a valid stream.
    let wrong = format!("{}{}", if sums.starts_with('0') { '1' } else { '0' }, &sums[1..]);
    std::fs::write(tree.join("DEBIAN/md5sums"), wrong).unwrap();
    let bad = build(&tree, &t.path().join("wrong-sum.deb"), "xz");
    assert!(!dpkg_accepts(&bad));
    let first = sums.lines().next().unwrap()[34..].to_string();
    refused_then_good_accepted(t.path(), &bad, &good, &format!("./{first}"));

    // A line naming a file the package does not hold.
    let t = tempfile::tempdir().unwrap();
    let good = big_deb(t.path(), "xz");
    let tree = t.path().join("big-xz/tree-kttest-1.0-amd64");
    let extra =
        format!("{}d41d8cd98f00b204e9800998ecf8427e  usr/share/doc/kttest/gone\n", read(&tree.join("DEBIAN/md5sums")));
    std::fs::write(tree.join("DEBIAN/md5sums"), extra).unwrap();
    let bad = build(&tree, &t.path().join("extra-line.deb"), "xz");
    assert!(!dpkg_accepts(&bad));
    refused_then_good_accepted(t.path(), &bad, &good, "./usr/share/doc/kttest/gone");

    // No md5sums at all: nothing to hold data.tar against.
    let t = tempfile::tempdir().unwrap();
    let good = big_deb(t.path(), "xz");
    let tree = t.path().join("big-xz/tree-kttest-1.0-amd64");
    std::fs::remove_file(tree.join("DEBIAN/md5sums")).unwrap();
    let bad = build(&tree, &t.path().join("no-sums.deb"), "xz");
    refused_then_good_accepted(t.path(), &bad, &good, "control.tar holds no ./md5sums");
}

#[test]
fn a_failed_sign_leaves_every_folder_as_it_was_and_a_good_run_leaves_no_lock() {
    tools();
    let t = tempfile::tempdir().unwrap();
    let gpg = Gpg::new("repo@example.com");
    let place = t.path().join("place");
    std::fs::create_dir(&place).unwrap();
    let repo = place.join("repo");
    let args =
        |deb: &Path| ["--into".to_string(), repo.display().to_string(), "--deb".to_string(), deb.display().to_string()];
    let run_with = |deb: &Path, key: &str| {
        let a = args(deb);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        xtask_apt_repo(&a, &[("GNUPGHOME", gpg.home.path()), ("KT_GPG_KEY", Path::new(key))])
    };
    let first = make_deb(t.path(), "kttest", "1.0", "amd64");
    let second = make_deb(t.path(), "kttest", "1.1", "amd64");

    // Into a fresh folder, then over a published repository: a key gpg does not hold.
    for (deb, published) in [(&first, false), (&second, true)] {
        if published {
            let out = run_with(&first, "repo@example.com");
            assert!(out.status.success(), "{}", text(&out));
            assert_eq!(listing(&place).into_keys().filter(|k| !k.starts_with("repo/")).collect::<Vec<_>>(), ["repo"]);
        }
        let before = listing(&place);
        let out = run_with(deb, "nobody@example.com");
        assert!(!out.status.success(), "{}", text(&out));
        assert!(text(&out).contains("nobody@example.com"), "{}", text(&out));
        assert_eq!(listing(&place), before, "a failed sign changed {}", place.display());
    }
}

#[test]
fn a_url_apt_cannot_fetch_is_refused_naming_the_flag() {
    let t = tempfile::tempdir().unwrap();
    let deb = t.path().join("kttest_1.0_amd64.deb");
    let repo = t.path().join("repo");
    let (deb_s, repo_s) = (deb.display().to_string(), repo.display().to_string());
    let out = xtask_apt_repo(&["--unsigned", "--into", &repo_s, "--deb", &deb_s, "--url", "not a url"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--url \"not a url\"") && text(&out).contains("https://"), "{}", text(&out));
    assert!(!repo.exists());
}
