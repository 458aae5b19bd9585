//! `smoke-test --upgrade-from`: its plan (fast, always run), and the whole upgrade on a small
//! arm64 package written by the project's own .deb writer, so its maintainer scripts, kiosk
//! unit and unattended-upgrades conffile are the real ones, with shell scripts standing in for
//! the app and the services. The second is ignored by a plain `cargo test`: it needs root,
//! QEMU and debootstrap (`cargo xtask test --setup --only e2e` sets them up); run it with
//! `cargo test -p xtask --test upgrade -- --ignored --nocapture`.

mod common;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use common::{SERVICES, copy_repo};

fn xtask(root: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_xtask")).arg("--root").arg(root).args(args).output().unwrap()
}

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn the_upgrade_plan_shows_every_step() {
    let root = common::repo_root();
    let out = xtask(&root, &["smoke-test", "--arch", "arm64", "--upgrade-from", "/tmp/prev.deb", "--dry-run"]);
    let plan = text(&out);
    assert!(out.status.success(), "{plan}");
    for part in [
        "debootstrap bookworm arm64 rootfs",
        "unattended-upgrades",
        "--quick-gen-key",
        "publish /tmp/prev.deb and",
        "apt-get update must refuse a tampered Packages and a wrong keyring",
        "apt-get install kitchntabs=<previous>",
        "apt-get upgrade (policy-rc.d logs and denies)",
        "apt-get purge kitchntabs",
    ] {
        assert!(plan.contains(part), "no `{part}` in:\n{plan}");
    }
    // dist.yaml leaves unattended upgrades off: the plan does not expect the pattern.
    assert!(!plan.contains("unattended-upgrade --dry-run"), "{plan}");

    // A repository needs its keyring; a .deb comes with a key of its own.
    let out = xtask(&root, &["smoke-test", "--arch", "arm64", "--upgrade-from", "http://127.0.0.1:9/r", "--dry-run"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("pass --keyring FILE"), "{}", text(&out));
    let out = xtask(&root, &["smoke-test", "--arch", "arm64", "--keyring", "/k.gpg", "--dry-run"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("pass --upgrade-from too"), "{}", text(&out));
    let out = xtask(
        &root,
        &[
            "smoke-test",
            "--arch",
            "arm64",
            "--upgrade-from",
            "http://127.0.0.1:9/r",
            "--keyring",
            "/k.gpg",
            "--dry-run",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("use http://127.0.0.1:9/r (keyring /k.gpg)"), "{}", text(&out));
    assert!(!text(&out).contains("--quick-gen-key"), "{}", text(&out));
}

/// A small arm64 package of `version` through the project's own writer: shell scripts for the
/// app and the services, the kiosk unit, the unattended-upgrades origin pattern.
fn fake_package(dir: &Path, version: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let unpacked = dir.join(format!("unpacked-{version}"));
    let services = unpacked.join("resources/python-service");
    std::fs::create_dir_all(&services).unwrap();
    let script = |path: &Path, body: &str| {
        std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    script(&unpacked.join("kitchntabs"), &format!("echo kitchntabs {version}"));
    for s in SERVICES {
        script(
            &services.join(s),
            &format!("[ \"$1\" = --self-test ] && echo 'self-test ok: {s}' && exit 0\necho {s} {version}"),
        );
    }
    let app = xtask::deb::ElectronApp {
        product_name: "KitchnTabs".into(),
        package: "kitchntabs".into(),
        executable: "kitchntabs".into(),
        version: version.into(),
        arch: xtask::deb::DebArch::Arm64,
        maintainer: "KitchnTabs <dev@kitchntabs.com>".into(),
        homepage: None,
        description_short: "upgrade test package".into(),
        description_long: "A stand-in for the terminal.".into(),
        desktop_comment: "test".into(),
        categories: "Office;".into(),
        unpacked_dir: unpacked,
        icons: Vec::new(),
        depends: Vec::new(),
        recommends: Vec::new(),
        copyright: xtask::deb::CopyrightInfo {
            holder: "test".into(),
            license: "MIT".into(),
            license_text: "MIT".into(),
        },
        glibc_floor: None,
        kiosk: Some(xtask::deb::KioskService { user: "root".into(), args: Vec::new(), display: ":0".into() }),
        unattended: Some(xtask::deb::UnattendedOrigin { origin: "KitchnTabs".into(), suite: "stable".into() }),
        source_date_epoch: common::COMMIT_EPOCH,
    };
    let spec = xtask::deb::electron::electron_app_spec(&app).unwrap();
    let out = dir.join(format!("kitchntabs_{version}_arm64.deb"));
    xtask::deb::write_deb(&spec, &out).unwrap();
    out
}

/// A copy of the repository whose dist.yaml asks for the origin pattern. Its Depends stay the
/// real ones although the fake package needs none of them: they name the rootfs, so this test
/// debootstraps the same arm64 rootfs as the arm64 cross-build's smoke-test, which then finds it
/// cached (on a new machine one arm64 debootstrap under QEMU fewer, about 6 min).
fn checkout(dir: &Path) -> PathBuf {
    let root = dir.join("repo");
    copy_repo(&root);
    let yaml = std::fs::read_to_string(root.join("dist.yaml")).unwrap();
    let kiosk = yaml.replacen("unattended_upgrades: false", "unattended_upgrades: true", 1);
    assert_ne!(kiosk, yaml, "dist.yaml has no `unattended_upgrades: false`");
    std::fs::write(root.join("dist.yaml"), kiosk).unwrap();
    root
}

/// apt-ftparchive, which builds a repository with Debian's own tools, installed when missing.
fn require_apt_utils() {
    if Command::new("apt-ftparchive").arg("--version").output().is_ok_and(|o| o.status.success()) {
        return;
    }
    let ok = Command::new("apt-get")
        .args(["install", "-y", "-qq", "apt-utils"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "apt-ftparchive is missing and `apt-get install apt-utils` failed: install it");
}

#[test]
#[ignore = "needs root, QEMU and debootstrap: cargo test -p xtask --test upgrade -- --ignored"]
fn an_arm64_package_upgrades_through_its_signed_repository() {
    let tmp = tempfile::tempdir().unwrap();
    let root = checkout(tmp.path());
    let prev = fake_package(tmp.path(), "1.2.3~prev1");
    let new = fake_package(tmp.path(), "1.2.3");

    let t = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("--root")
        .arg(&root)
        .args(["smoke-test", "--arch", "arm64", "--deb"])
        .arg(&new)
        .arg("--upgrade-from")
        .arg(&prev)
        .env_remove("KT_GPG_KEY")
        .output()
        .unwrap();
    let log = text(&out);
    assert!(out.status.success(), "the upgrade test failed:\n{log}");
    eprintln!("{log}");
    for line in [
        "apt-get update refuses the repository under a wrong keyring",
        "apt-get update refuses a tampered Packages",
        "apt-get update verified the repository: kitchntabs 1.2.3",
        "unattended-upgrade --dry-run: Packages that will be upgraded: kitchntabs",
        "kept the edited conffiles: /etc/apt/apt.conf.d/52kitchntabs-unattended-upgrades",
        "dpkg --verify: the ",
        "/usr/bin/kitchntabs -> /opt/KitchnTabs/kitchntabs (alternative kitchntabs)",
        "python-service/print_service: self-test ok: print_service",
        "the upgrade asked to restart kitchntabs-kiosk.service",
        "upgrade 1.2.3~prev1 -> 1.2.3 checked in",
    ] {
        assert!(log.contains(line), "no `{line}` in:\n{log}");
    }
    eprintln!("upgrade test (fake arm64 package, rootfs cached or not): {:.1} s", t.elapsed().as_secs_f64());
}

/// A static file server on 127.0.0.1, stopped when dropped.
struct Served {
    child: std::process::Child,
    port: u16,
}

impl Served {
    fn start(dir: &Path) -> Served {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1", &port.to_string()])
            .current_dir(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 serves the test repository");
        // Owned from here on: a server that never answers is still stopped (Drop).
        let served = Served { child, port };
        for _ in 0..50 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return served;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("python3 -m http.server did not answer on 127.0.0.1:{port}");
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `--upgrade-from URL --keyring FILE`: a repository made with Debian's own tools
/// (apt-ftparchive, gpg), served over HTTP on 127.0.0.1.
#[test]
#[ignore = "needs root, QEMU and debootstrap: cargo test -p xtask --test upgrade -- --ignored"]
fn a_repository_served_on_localhost_upgrades_with_its_keyring() {
    require_apt_utils();
    let tmp = tempfile::tempdir().unwrap();
    let root = checkout(tmp.path());
    let prev = fake_package(tmp.path(), "1.2.3~prev1");
    let new = fake_package(tmp.path(), "1.2.3");
    let www = tmp.path().join("www");
    let repo = www.join("apt");
    let pool = repo.join("pool/main/k/kitchntabs");
    std::fs::create_dir_all(&pool).unwrap();
    for d in [&prev, &new] {
        std::fs::copy(d, pool.join(d.file_name().unwrap())).unwrap();
    }
    let index = repo.join("dists/stable/main/binary-arm64");
    std::fs::create_dir_all(&index).unwrap();
    let packages = ok(Command::new("apt-ftparchive").args(["packages", "pool"]).current_dir(&repo));
    std::fs::write(index.join("Packages"), packages).unwrap();
    let dists = repo.join("dists/stable");
    let release = ok(Command::new("apt-ftparchive")
        .args([
            "-o=APT::FTPArchive::Release::Origin=KitchnTabs",
            "-o=APT::FTPArchive::Release::Suite=stable",
            "-o=APT::FTPArchive::Release::Codename=stable",
            "-o=APT::FTPArchive::Release::Architectures=arm64",
            "-o=APT::FTPArchive::Release::Components=main",
            "release",
            ".",
        ])
        .current_dir(&dists));
    std::fs::write(dists.join("Release"), release).unwrap();
    let gnupg = tmp.path().join("gnupg");
    std::fs::create_dir(&gnupg).unwrap();
    std::fs::set_permissions(&gnupg, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let gpg = |args: &[&str]| {
        ok(Command::new("gpg").env("GNUPGHOME", &gnupg).arg("--batch").args(args).current_dir(&dists));
    };
    gpg(&[
        "--passphrase",
        "",
        "--quick-gen-key",
        "test repository <repo@kitchntabs.invalid>",
        "ed25519",
        "sign",
        "never",
    ]);
    gpg(&["--clearsign", "--output", "InRelease", "Release"]);
    let keyring = tmp.path().join("keyring.gpg");
    gpg(&["--output", keyring.to_str().unwrap(), "--export"]);
    let _ = Command::new("gpgconf").env("GNUPGHOME", &gnupg).args(["--kill", "gpg-agent"]).status();
    let served = Served::start(&www);

    let t = std::time::Instant::now();
    let url = format!("http://127.0.0.1:{}/apt", served.port);
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("--root")
        .arg(&root)
        .args(["smoke-test", "--arch", "arm64", "--deb"])
        .arg(&new)
        .args(["--upgrade-from", &url, "--keyring"])
        .arg(&keyring)
        .output()
        .unwrap();
    let log = text(&out);
    assert!(out.status.success(), "the upgrade test failed:\n{log}");
    eprintln!("{log}");
    for line in [
        format!("repository: URIs: {url}"),
        "apt-get update refuses the repository under a wrong keyring".into(),
        "apt-get update verified the repository: kitchntabs 1.2.3".into(),
        "unattended-upgrade --dry-run: Packages that will be upgraded: kitchntabs".into(),
        "upgrade 1.2.3~prev1 -> 1.2.3 checked in".into(),
    ] {
        assert!(log.contains(&line), "no `{line}` in:\n{log}");
    }
    eprintln!("upgrade test from http://127.0.0.1 (fake arm64 package): {:.1} s", t.elapsed().as_secs_f64());
}
