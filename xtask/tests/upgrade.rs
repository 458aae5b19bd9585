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

/// apt-ftparchive for the repository writer (the shim uses it), installed when missing.
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
    require_apt_utils();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("repo");
    copy_repo(&root);
    // The package's own Depends decide the rootfs: this one needs only what the scripts use.
    let yaml = std::fs::read_to_string(root.join("dist.yaml")).unwrap();
    let start = yaml.find("    depends: [").unwrap();
    let end = start + yaml[start..].find('\n').unwrap();
    let yaml = format!("{}    depends: [init-system-helpers]{}", &yaml[..start], &yaml[end..]).replacen(
        "unattended_upgrades: false",
        "unattended_upgrades: true",
        1,
    );
    std::fs::write(root.join("dist.yaml"), yaml).unwrap();
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
        "/usr/bin/kitchntabs -> /opt/KitchnTabs/kitchntabs (alternative kitchntabs)",
        "python-service/print_service: self-test ok: print_service",
        "the upgrade asked to restart kitchntabs-kiosk.service",
        "upgrade 1.2.3~prev1 -> 1.2.3 checked in",
    ] {
        assert!(log.contains(line), "no `{line}` in:\n{log}");
    }
    eprintln!("upgrade test (fake arm64 package, rootfs cached or not): {:.1} s", t.elapsed().as_secs_f64());
}
