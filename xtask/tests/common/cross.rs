//! The end-to-end cross-builds shared by `cross_armv7l.rs` and `cross_arm64.rs`: `cargo xtask
//! dist` for an ARM arch, the three services through Docker BuildKit under QEMU, checked as
//! ELF for the right machine and run on their platform, then the app (a stand-in Electron of
//! the arch), the .deb and release/<version>/; the .deb is installed into a Debian rootfs of
//! the arch and used there (`cargo xtask smoke-test`). A real edit to one service's script is
//! repacked without a container build, and PyInstaller's build of the same edit must give the
//! same bytes; a no-op second run builds nothing; a second engine endpoint (another dockerd
//! on its own socket) serves one arch. On armv7l, a kiosk board on the first build upgrades to
//! the edited one through the signed repository (`smoke-test --upgrade-from`); arm64's upgrade
//! runs in `upgrade.rs` on a small package, which keeps the two binaries' times close.
//!
//! The two arches are two test binaries so `cargo xtask test` runs them at the same time: each
//! spends most of its time in one emulated process (debootstrap, pip, PyInstaller).
#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use super::{SERVICES, copy_repo, edit, elf_machine, outcome, outcomes, sha256, version, xtask_json};

/// A docker wrapper that logs each invocation, so a test can tell whether a run built anything.
fn logging_docker(dir: &Path, real: &str) -> (PathBuf, PathBuf) {
    let log = dir.join("docker-calls.log");
    let wrapper = dir.join("docker");
    std::fs::write(&wrapper, format!("#!/bin/sh\necho \"$*\" >> '{}'\nexec '{real}' \"$@\"\n", log.display())).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    (wrapper, log)
}

/// The docker client `dist` detects on this machine (from its plan).
fn detected_docker(root: &Path, arch: &str) -> String {
    let plan = xtask_json(root, &["dist", "--arch", arch, "--dry-run"], &[]);
    plan["engine"]["docker"]
        .as_str()
        .unwrap_or_else(|| panic!("no docker engine in plan: {}", plan["engine"]))
        .to_string()
}

fn docker_run(docker: &str, host: Option<&str>, platform: &str, image: &str, dist: &Path, args: &[&str]) -> String {
    let mut cmd = Command::new(docker);
    if let Some(h) = host {
        cmd.env("DOCKER_HOST", h);
    }
    // --tmpfs /tmp: one-file binaries unpack there; under QEMU on ext4 the cleanup can fail.
    cmd.args(["run", "--rm", "--network", "none", "--platform", platform, "--tmpfs", "/tmp", "-v"])
        .arg(format!("{}:/b:ro", dist.display()))
        .arg(image)
        .args(args);
    let out = cmd.output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{args:?} on {platform} failed: {text}");
    text
}

/// Whether `cross_build` also upgrades a board from the first .deb to the edited one.
#[derive(Clone, Copy, PartialEq)]
pub enum Upgrade {
    Test,
    Skip,
}

pub fn cross_build(arch: &str, platform: &str, class: u8, machine: u16, upgrade: Upgrade) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("repo");
    copy_repo(&root);
    if upgrade == Upgrade::Test {
        // The packages a self-updating kiosk board gets: the unit and the origin pattern.
        let yaml = std::fs::read_to_string(root.join("dist.yaml")).unwrap();
        let kiosk = yaml.replacen("kiosk_service: false", "kiosk_service: true", 1).replacen(
            "unattended_upgrades: false",
            "unattended_upgrades: true",
            1,
        );
        assert_eq!(kiosk.matches(": true").count(), yaml.matches(": true").count() + 2, "dist.yaml changed its keys");
        std::fs::write(root.join("dist.yaml"), kiosk).unwrap();
    }
    let electron = super::stand_in_electron(tmp.path(), arch);
    let real = detected_docker(&root, arch);
    let (wrapper, log) = logging_docker(tmp.path(), &real);
    let env = [("DOCKER", wrapper.to_str().unwrap()), ("KT_ELECTRON_DIST", electron.to_str().unwrap())];
    let image = format!("kitchntabs-build-base:bookworm-{arch}");
    let dist_dir = root.join("python-service/dist").join(arch);

    let cold = xtask_json(&root, &["dist", "--arch", arch], &env);
    let report = outcomes(&cold);
    for step in ["cross-build", "electron-builder", "afterpack", "deb", "release"] {
        assert_eq!(outcome(&report, step), "built", "{report:?}");
    }
    eprintln!(
        "{arch}: first build in a fresh tree {:.1} s (a cache replay on a warm engine)",
        super::seconds(&cold, "cross-build")
    );
    let version = version(&root);
    for s in SERVICES {
        let bin = dist_dir.join(s);
        assert_eq!(elf_machine(&bin), (class, machine), "{}", bin.display());
        let v = docker_run(&real, None, platform, &image, &dist_dir, &[&format!("/b/{s}"), "--version"]);
        assert_eq!(v.trim(), format!("{s} {version} (default, {arch})"));
        let t = docker_run(&real, None, platform, &image, &dist_dir, &[&format!("/b/{s}"), "--self-test"]);
        assert!(t.contains(&format!("self-test ok: {s}")), "{t}");
    }
    let debarch = if arch == "armv7l" { "armhf" } else { arch };
    let deb = root.join(format!("release/{version}/kitchntabs_{version}_{debarch}.deb"));
    let info = Command::new("dpkg-deb").arg("--field").arg(&deb).arg("Architecture").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&info.stdout).trim(), debarch);
    {
        // Installed on the OS of the board, under QEMU: dpkg -i, each service's self-test,
        // /usr/bin/kitchntabs, dpkg -r leaving nothing behind.
        let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .arg("--root")
            .arg(&root)
            .args(["smoke-test", "--arch", arch])
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "smoke-test failed:\n{text}");
        for s in SERVICES {
            assert!(text.contains(&format!("python-service/{s}: self-test ok: {s}")), "{text}");
        }
    }

    // The first .deb, as the version a board has before this one: the same package under
    // `<version>~prev1`, repacked by dpkg-deb itself.
    let previous = (upgrade == Upgrade::Test).then(|| previous_version(&deb, tmp.path(), &version));

    // A real edit of one service: the step runs again, BuildKit rebuilds that stage alone,
    // so the other two binaries come back byte for byte.
    // It changes the body of the entry script alone, so the installed binary is repacked:
    // the script compiled in the base image under QEMU, no container build at all. The last
    // check below builds it with PyInstaller and compares the bytes.
    let before: Vec<String> = SERVICES.iter().map(|s| sha256(&dist_dir.join(s))).collect();
    edit(&root.join("python-service/src/print_service.py"));
    std::fs::write(&log, "").unwrap();
    let edited = xtask_json(&root, &["dist", "--arch", arch], &env);
    assert_eq!(outcome(&outcomes(&edited), "cross-build"), "built");
    let calls = std::fs::read_to_string(&log).unwrap();
    assert!(!calls.lines().any(|l| l.starts_with("build ")), "a body edit ran a container build:\n{calls}");
    assert!(calls.lines().any(|l| l.starts_with("run ") && l.contains("repack_tool.py")), "no analysis:\n{calls}");
    let after: Vec<String> = SERVICES.iter().map(|s| sha256(&dist_dir.join(s))).collect();
    assert_eq!(before[0], after[0], "kt_service was rebuilt");
    assert_ne!(before[1], after[1], "print_service was not rebuilt");
    assert_eq!(before[2], after[2], "tts_service was rebuilt");
    for step in ["afterpack", "deb", "release"] {
        assert_eq!(outcome(&outcomes(&edited), step), "built", "{step}");
    }
    assert_eq!(outcome(&outcomes(&edited), "electron-builder"), "up_to_date");
    eprintln!("{arch}: one-service edit {:.1} s", super::seconds(&edited, "cross-build"));

    // Nothing changed: every step is up to date and the engine builds nothing.
    std::fs::write(&log, "").unwrap();
    let again = xtask_json(&root, &["dist", "--arch", arch], &env);
    for (id, o) in outcomes(&again) {
        assert!(o == "up_to_date" || (id == "preflight" && o == "skipped"), "{id}: {o}");
    }
    let calls = std::fs::read_to_string(&log).unwrap();
    // Detection asks the client for its version; nothing may build or run.
    let work = |l: &str| l.starts_with("build ") || l.starts_with("buildx build") || l.starts_with("run ");
    assert!(!calls.lines().any(work), "the engine was asked to work:\n{calls}");

    if let Some(previous) = previous {
        // A board on the first build upgrades to the edited one through the signed repository:
        // the real binaries of the arch, the real maintainer scripts, the kiosk unit.
        let t = std::time::Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .arg("--root")
            .arg(&root)
            .args(["smoke-test", "--arch", arch, "--deb"])
            .arg(&deb)
            .arg("--upgrade-from")
            .arg(&previous)
            .env_remove("KT_GPG_KEY")
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "the upgrade test failed:\n{text}");
        let mut expected = vec![
            "apt-get update refuses the repository under a wrong keyring".to_string(),
            "apt-get update refuses a tampered Packages".into(),
            format!("apt-get update verified the repository: kitchntabs {version}"),
            "unattended-upgrade --dry-run: Packages that will be upgraded: kitchntabs".into(),
            "kept the edited conffiles: /etc/apt/apt.conf.d/52kitchntabs-unattended-upgrades".into(),
            "match its md5sums".into(),
            "the upgrade asked to restart kitchntabs-kiosk.service".into(),
            format!("upgrade {version}~prev1 -> {version} checked in"),
        ];
        expected.extend(SERVICES.iter().map(|s| format!("python-service/{s}: self-test ok: {s}")));
        for line in expected {
            assert!(text.contains(&line), "no `{line}` in:\n{text}");
        }
        eprintln!(
            "{arch}: upgrade of the cross-built package through its repository {:.1} s",
            t.elapsed().as_secs_f64()
        );
    }

    // The repack is PyInstaller's binary: PyInstaller run on the edited sources gives the
    // same bytes (and so builds are reproducible too).
    let built = std::fs::read(dist_dir.join("print_service")).unwrap();
    let t = std::time::Instant::now();
    let again = rebuilt_in_container(&root, arch, &real, tmp.path(), "print_service");
    eprintln!("{arch}: print_service built again from the same sources {:.1} s", t.elapsed().as_secs_f64());
    assert!(
        built == again,
        "{arch}: the repacked print_service differs from PyInstaller's build of the same sources ({} vs {} bytes)",
        built.len(),
        again.len()
    );
}

/// `deb` as version `<version>~prev1`: unpacked and built again by dpkg-deb, with the
/// control file's Version changed and nothing else.
fn previous_version(deb: &Path, scratch: &Path, version: &str) -> PathBuf {
    let tree = scratch.join("previous-tree");
    let run = |cmd: &mut Command| {
        let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(Command::new("dpkg-deb").arg("-R").arg(deb).arg(&tree));
    let control = tree.join("DEBIAN/control");
    let text = std::fs::read_to_string(&control).unwrap();
    let field = format!("\nVersion: {version}\n");
    assert!(text.contains(&field), "no `{}` in {}", field.trim(), control.display());
    std::fs::write(&control, text.replacen(&field, &format!("\nVersion: {version}~prev1\n"), 1)).unwrap();
    let out = scratch.join(format!("kitchntabs_{version}~prev1.deb"));
    run(Command::new("dpkg-deb").args(["--root-owner-group", "-Zxz", "--build"]).arg(&tree).arg(&out));
    out
}

/// `service` built for `arch` again from the same sources: the exact build command of the
/// plan, on a copy of the generated Dockerfile whose service stage starts with an `ENV` line of
/// its own, so BuildKit runs PyInstaller again instead of replaying its cache.
fn rebuilt_in_container(root: &Path, arch: &str, docker: &str, scratch: &Path, service: &str) -> Vec<u8> {
    let plan =
        xtask_json(root, &["build-services", "--arch", arch, "--service", service, "--dry-run"], &[("DOCKER", docker)]);
    let step = plan["steps"].as_array().unwrap().iter().find(|s| s["id"] == "cross-build").expect("a cross-build step");
    let run = &step["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["action"] == "cross_build")
        .unwrap_or_else(|| panic!("no build command in {step}"))["all"];
    let generated = root.join("target/xtask/docker/Dockerfile.services");
    let text = std::fs::read_to_string(&generated).unwrap();
    let nonce = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let stage = format!("\nFROM common AS service-{service}\n");
    assert!(text.contains(&stage), "no stage for {service} in the generated Dockerfile");
    let again = generated.with_file_name("Dockerfile.again");
    std::fs::write(&again, text.replace(&stage, &format!("{stage}ENV KT_REBUILD={nonce}\n"))).unwrap();
    std::fs::copy(
        generated.with_file_name("Dockerfile.services.dockerignore"),
        generated.with_file_name("Dockerfile.again.dockerignore"),
    )
    .unwrap();
    let out_dir = scratch.join(format!("again-{service}"));
    let mut args: Vec<String> =
        run["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect();
    for i in 0..args.len() - 1 {
        if args[i] == "--file" {
            args[i + 1] = again.to_string_lossy().into_owned();
        }
        if args[i] == "--output" {
            args[i + 1] = format!("type=local,dest={}", out_dir.display());
        }
    }
    let mut cmd = Command::new(docker);
    cmd.args(&args).current_dir(run["cwd"].as_str().unwrap());
    for kv in run["env"].as_array().into_iter().flatten() {
        cmd.env(kv[0].as_str().unwrap(), kv[1].as_str().unwrap());
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "the second build failed: {}", String::from_utf8_lossy(&out.stderr));
    std::fs::read(out_dir.join(service)).unwrap()
}

/// A second dockerd on its own socket, stopped when the test ends.
struct SecondDaemon {
    child: std::process::Child,
    host: String,
}

impl SecondDaemon {
    fn start(docker: &str) -> SecondDaemon {
        let base = Path::new("/var/lib/kitchntabs-e2e-dockerd2");
        let run = Path::new("/run/kitchntabs-e2e-dockerd2");
        std::fs::create_dir_all(run).unwrap();
        let sock = run.join("docker.sock");
        let host = format!("unix://{}", sock.display());
        let log = std::fs::File::create(run.join("dockerd.log")).unwrap();
        let child = Command::new("dockerd")
            .arg("--host")
            .arg(&host)
            .arg("--data-root")
            .arg(base)
            .arg("--exec-root")
            .arg(run.join("exec"))
            .arg("--pidfile")
            .arg(run.join("dockerd.pid"))
            .args(["--bridge", "none", "--iptables=false"])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("dockerd must be installed for the e2e tests (apt-get install docker.io)");
        // Owned from here on: a failed start below still stops it (Drop).
        let daemon = SecondDaemon { child, host };
        for _ in 0..60 {
            let ok = Command::new(docker)
                .env("DOCKER_HOST", &daemon.host)
                .args(["version"])
                .output()
                .is_ok_and(|o| o.status.success());
            if ok {
                return daemon;
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        panic!("the second dockerd did not answer on {}; see {}", daemon.host, run.join("dockerd.log").display());
    }
}

impl Drop for SecondDaemon {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

/// arm64 routed to a second engine endpoint (as it would be to a native arm64 node) builds
/// there, and armv7l stays on the first.
pub fn routed_to_another_endpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("repo");
    copy_repo(&root);
    let docker = detected_docker(&root, "arm64");
    let second = SecondDaemon::start(&docker);

    // arm64 goes to the second engine (as it would to a native arm64 node); armv7l stays.
    let yaml = std::fs::read_to_string(root.join("dist.yaml")).unwrap();
    let routed = yaml.replacen("  arm64:\n", &format!("  arm64:\n    docker_host: {}\n", second.host), 1);
    assert_ne!(yaml, routed);
    std::fs::write(root.join("dist.yaml"), routed).unwrap();
    let plan = xtask_json(&root, &["dist", "--arch", "arm64", "--dry-run"], &[]);
    assert_eq!(plan["engine"]["route"]["docker_host"], second.host.as_str());
    let other = xtask_json(&root, &["dist", "--arch", "armv7l", "--dry-run"], &[]);
    assert!(other["engine"].get("route").and_then(|r| r.get("docker_host")).is_none(), "{}", other["engine"]);

    let run = xtask_json(&root, &["build-services", "--arch", "arm64", "--service", "tts_service"], &[]);
    assert_eq!(outcome(&outcomes(&run), "cross-build"), "built");
    let dist = root.join("python-service/dist/arm64");
    assert_eq!(elf_machine(&dist.join("tts_service")), (2, 183));
    // The base image and the build cache live in the second engine, not the first.
    let inspect = |host: Option<&str>| {
        let mut c = Command::new(&docker);
        if let Some(h) = host {
            c.env("DOCKER_HOST", h);
        }
        c.args(["image", "inspect", "kitchntabs-build-base:bookworm-arm64"]).output().unwrap().status.success()
    };
    assert!(inspect(Some(&second.host)), "base image missing on the routed engine");
    let v = docker_run(
        &docker,
        Some(&second.host),
        "linux/arm64",
        "kitchntabs-build-base:bookworm-arm64",
        &dist,
        &["/b/tts_service", "--version"],
    );
    assert!(v.starts_with("tts_service "), "{v}");
}

/// dist.yaml decides what the container build builds: a fourth service and a moved entry
/// cross-build, and every binary runs its self-test on its platform.
pub fn fourth_service_cross(arch: &str, platform: &str, class: u8, machine: u16) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("repo");
    copy_repo(&root);
    super::fourth_service(&root);
    let real = detected_docker(&root, arch);
    let run = xtask_json(&root, &["build-services", "--arch", arch], &[("DOCKER", real.as_str())]);
    assert_eq!(outcome(&outcomes(&run), "cross-build"), "built");
    let dist_dir = root.join("python-service/dist").join(arch);
    let image = format!("kitchntabs-build-base:bookworm-{arch}");
    for s in super::FOUR_SERVICES {
        let bin = dist_dir.join(s);
        assert_eq!(elf_machine(&bin), (class, machine), "{}", bin.display());
        let t = docker_run(&real, None, platform, &image, &dist_dir, &[&format!("/b/{s}"), "--self-test"]);
        assert!(t.contains(&format!("self-test ok: {s}")), "{t}");
    }
}
