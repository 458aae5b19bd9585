//! The checks a container engine must pass before a long cross-build (reachable, BuildKit or
//! buildx platforms, QEMU binfmt registered with the F flag, a container of the platform
//! really runs, disk space), and the set-up the tests do for it: start dockerd, register QEMU.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use crate::{
    arch::Arch,
    checkup::{Checkup, HostCheck, Status},
    engine::Engine,
    process::Command,
};

/// Where the kernel's binfmt_misc entries and qemu-user-static's handler definitions live
/// (fixed in tests).
#[derive(Clone, Debug)]
pub struct Binfmt {
    pub proc_dir: PathBuf,
    pub conf_dir: PathBuf,
}

impl Default for Binfmt {
    fn default() -> Binfmt {
        Binfmt { proc_dir: "/proc/sys/fs/binfmt_misc".into(), conf_dir: "/usr/lib/binfmt.d".into() }
    }
}

/// One binfmt_misc entry as the kernel shows it.
#[derive(Debug, PartialEq, Eq)]
pub struct BinfmtEntry {
    pub enabled: bool,
    pub interpreter: String,
    pub flags: String,
}

impl BinfmtEntry {
    pub fn parse(text: &str) -> Option<BinfmtEntry> {
        let mut lines = text.lines();
        let enabled = match lines.next()?.trim() {
            "enabled" => true,
            "disabled" => false,
            _ => return None,
        };
        let mut interpreter = None;
        let mut flags = String::new();
        for l in lines {
            if let Some(i) = l.strip_prefix("interpreter ") {
                interpreter = Some(i.trim().to_string());
            } else if let Some(f) = l.strip_prefix("flags:") {
                flags = f.trim().to_string();
            }
        }
        Some(BinfmtEntry { enabled, interpreter: interpreter?, flags })
    }
}

impl Binfmt {
    /// Is QEMU registered for `arch`, usable from inside containers and chroots? The `F`
    /// flag makes the kernel open the interpreter at registration, so it need not exist in
    /// the container's file system: without it, an ARM container fails with
    /// "exec format error" or "no such file".
    pub fn check(&self, arch: Arch, fix: bool) -> HostCheck {
        let name = "binfmt".to_string();
        let Some(qemu) = arch.qemu_binfmt() else {
            return HostCheck::ok(name, "not needed");
        };
        let entry_path = self.proc_dir.join(qemu);
        let conf = self.conf_dir.join(format!("{qemu}.conf"));
        let how = format!(
            "register it from qemu-user-static's definition: `[ -e {p}/register ] || mount -t binfmt_misc binfmt_misc {p}; cat {c} > {p}/register` \
             (as root; `apt-get install qemu-user-static` provides {c}), or where a registry is reachable: \
             `docker run --privileged --rm tonistiigi/binfmt --install {short}`; or run `cargo xtask doctor --fix`",
            p = self.proc_dir.display(),
            c = conf.display(),
            short = if qemu == "qemu-aarch64" { "arm64" } else { "arm" },
        );
        let state = std::fs::read_to_string(&entry_path).ok().and_then(|t| BinfmtEntry::parse(&t));
        let problem = match &state {
            None => format!("{} is not registered", entry_path.display()),
            Some(e) if !e.enabled => format!("{} is disabled", entry_path.display()),
            Some(e) if !e.flags.contains('F') => {
                format!(
                    "{} lacks the F flag (flags: {}): containers cannot find {}",
                    entry_path.display(),
                    e.flags,
                    e.interpreter
                )
            }
            Some(e) => return HostCheck::ok(name, format!("{} (flags {})", e.interpreter, e.flags)),
        };
        if fix {
            match self.register(qemu, &conf, state.is_some()) {
                Ok(()) => {
                    return HostCheck {
                        check: name,
                        status: Status::Fixed,
                        found: format!("{problem}; registered from {}", conf.display()),
                        fix: None,
                    };
                }
                Err(e) => return HostCheck::fail(name, format!("{problem}; --fix failed: {e:#}"), how),
            }
        }
        HostCheck::fail(name, problem, how)
    }

    fn register(&self, qemu: &str, conf: &Path, exists: bool) -> Result<()> {
        let definition = std::fs::read_to_string(conf)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e} (apt-get install qemu-user-static)", conf.display()))?;
        let register = self.proc_dir.join("register");
        if !register.exists() {
            let status = std::process::Command::new("mount")
                .args(["-t", "binfmt_misc", "binfmt_misc"])
                .arg(&self.proc_dir)
                .status()?;
            if !status.success() {
                bail!("mount binfmt_misc failed ({status})");
            }
        }
        if exists {
            // A disabled or flag-less entry must go before it can be registered again.
            std::fs::write(self.proc_dir.join(qemu), "-1")?;
        }
        let line = definition.lines().find(|l| l.starts_with(':')).unwrap_or(definition.trim());
        std::fs::write(&register, line)?;
        Ok(())
    }
}

/// Parse `docker buildx inspect`'s `Platforms:` lines.
pub fn buildx_platforms(inspect: &str) -> Vec<String> {
    inspect
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Platforms:"))
        .flat_map(|p| p.split(','))
        .map(|p| p.trim().trim_end_matches('*').to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// `df -Pk DIR` → free bytes.
pub fn free_bytes(dir: &str) -> Option<u64> {
    let out = std::process::Command::new("df").args(["-Pk", dir]).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let kib: u64 = text.lines().nth(1)?.split_whitespace().nth(3)?.parse().ok()?;
    Some(kib * 1024)
}

/// The checks one target's container engine must pass before `dist` starts a long build.
/// `image` is the target's base image, which `container runs` starts.
pub fn engine_checks(
    root: &Path,
    arch: Arch,
    engine: &Engine,
    image: &str,
    binfmt: &Binfmt,
    fix: bool,
    min_free_gb: u64,
) -> Vec<HostCheck> {
    let mut out = Vec::new();
    let Some(program) = engine.program() else { return out };
    let cwd = root;
    let prefix = format!("{arch}: ");
    let base_cmd = |args: &[&str]| -> Command {
        let mut c = engine.command(cwd);
        c = c.args(args);
        c
    };

    // Reachable: "Cannot connect to the Docker daemon" is the first thing that goes wrong.
    let (probe, what) = match engine {
        Engine::Podman { .. } => (base_cmd(&["info", "--format", "{{.Version.Version}}"]), "podman"),
        _ => (base_cmd(&["version", "--format", "{{.Server.Version}}"]), "docker engine"),
    };
    let reachable = match probe.capture() {
        Ok(v) => {
            out.push(HostCheck::ok(format!("{prefix}engine reachable"), format!("{what} {v} via {program}")));
            true
        }
        Err(e) => {
            out.push(HostCheck::fail(
                format!("{prefix}engine reachable"),
                format!("{program}: {e}"),
                match engine {
                    Engine::Podman { .. } => "install podman (apt-get install podman)".to_string(),
                    _ => "start the daemon (`systemctl start docker`, or `dockerd &` where there is no systemd), or fix DOCKER_HOST / the target's docker_host or context".to_string(),
                },
            ));
            false
        }
    };

    match engine {
        Engine::Buildx { builder, .. } => {
            let mut inspect = vec!["buildx", "inspect"];
            if let Some(b) = builder {
                inspect.push(b);
            }
            match base_cmd(&inspect).capture() {
                Err(e) => out.push(HostCheck::fail(
                    format!("{prefix}buildx builder"),
                    e,
                    "install the buildx plugin (apt-get install docker-buildx, or Docker Desktop)",
                )),
                Ok(text) => {
                    let platforms = buildx_platforms(&text);
                    let want = arch.docker_platform().unwrap_or_default();
                    let create = format!(
                        "docker buildx create --name kt-builder --driver docker-container --platform {} --bootstrap --use",
                        Arch::all_docker_platforms().join(",")
                    );
                    if platforms.iter().any(|p| p == want) {
                        out.push(HostCheck::ok(
                            format!("{prefix}buildx platforms"),
                            format!("{want} in {}", platforms.join(", ")),
                        ));
                    } else if fix && base_cmd(&create.split(' ').skip(1).collect::<Vec<_>>()).capture().is_ok() {
                        out.push(HostCheck {
                            check: format!("{prefix}buildx platforms"),
                            status: Status::Fixed,
                            found: "created builder kt-builder".into(),
                            fix: None,
                        });
                    } else {
                        out.push(HostCheck::fail(
                            format!("{prefix}buildx platforms"),
                            format!("builder lists {} but not {want}", if platforms.is_empty() { "no platforms".into() } else { platforms.join(", ") }),
                            format!("register QEMU (see binfmt) and recreate the builder: `docker buildx rm kt-builder; {create}`, then set `builder: kt-builder` for the target in dist.yaml"),
                        ));
                    }
                }
            }
        }
        Engine::DockerBuildkit { docker, .. } => {
            let version = Command::new(docker.clone(), cwd).arg("--version").capture().unwrap_or_default();
            match crate::engine::docker_major(&version) {
                Some(m) if m < 23 => out.push(HostCheck::ok(format!("{prefix}BuildKit"), format!("built into {docker} ({version})"))),
                _ => out.push(HostCheck::fail(
                    format!("{prefix}BuildKit"),
                    format!("{docker} ({version}) needs the buildx plugin for BuildKit builds"),
                    "install the buildx plugin and use `--engine buildx`, or point DOCKER at a client with BuildKit built in (Debian's /usr/bin/docker 20.10)",
                )),
            }
        }
        _ => {}
    }

    let routed = matches!(engine, Engine::Buildx { route, .. } | Engine::DockerBuildkit { route, .. } if route.context.is_some() || route.docker_host.is_some());
    if routed {
        out.push(HostCheck::ok(format!("{prefix}binfmt"), "remote engine: its own host runs the builds"));
    } else if Arch::host() != Some(arch) {
        let mut f = binfmt.check(arch, fix);
        f.check = format!("{prefix}{}", f.check);
        out.push(f);
        if reachable {
            out.push(container_runs(root, arch, engine, image, &prefix));
        }
    }

    if reachable && !routed {
        let root_dir = match engine {
            Engine::Podman { .. } => base_cmd(&["info", "--format", "{{.Store.GraphRoot}}"]).capture(),
            _ => base_cmd(&["info", "--format", "{{.DockerRootDir}}"]).capture(),
        };
        if let Ok(dir) = root_dir {
            match free_bytes(&dir) {
                Some(free) if free >= min_free_gb << 30 => {
                    out.push(HostCheck::ok(format!("{prefix}disk space"), format!("{} GB free in {dir}", free >> 30)))
                }
                Some(free) => out.push(HostCheck::fail(
                    format!("{prefix}disk space"),
                    format!("{} GB free in {dir}, below {min_free_gb} GB", free >> 30),
                    format!("free space: `{program} builder prune -f` (build cache), then `{program} image prune -f`; `{program} system prune -a -f --volumes` removes everything unused"),
                )),
                None => out.push(HostCheck::warn(format!("{prefix}disk space"), format!("cannot read free space of {dir}"), "check `df -h` yourself")),
            }
        }
    }
    out
}

/// A container of the target platform really runs: QEMU registered is not QEMU working.
fn container_runs(root: &Path, arch: Arch, engine: &Engine, image: &str, prefix: &str) -> HostCheck {
    let check = format!("{prefix}container runs");
    let inspect = engine.command(root).args(["image", "inspect", "--format", "{{.Architecture}}", image]);
    if inspect.capture().is_err() {
        return HostCheck::warn(
            check,
            format!("not checked: image {image} is not here yet"),
            format!("`cargo xtask base-image --arch {arch}` (dist builds it before the services)"),
        );
    }
    let platform = arch.docker_platform().unwrap_or_default();
    let run =
        engine.command(root).args(["run", "--rm", "--platform", platform, "--network", "none", image, "uname", "-m"]);
    match run.capture() {
        Ok(m) if m == arch.uname_machine() => HostCheck::ok(check, format!("`uname -m` in {image} says {m}")),
        Ok(m) => HostCheck::fail(
            check,
            format!("`uname -m` in {image} says {m}, expected {}", arch.uname_machine()),
            "the image is for another platform: rebuild it with `cargo xtask base-image --arch ... --force`",
        ),
        Err(e) => HostCheck::fail(
            check,
            format!("{platform} container does not start: {e}"),
            "register QEMU for this arch (see binfmt above), then retry",
        ),
    }
}

/// What `dist`'s preflight runs for a container target: the engine checks, failing with
/// every fix at once before any long step starts.
pub fn preflight(root: &Path, arch: Arch, engine: &Engine, image: &str) -> Result<()> {
    let findings = engine_checks(root, arch, engine, image, &Binfmt::default(), false, DIST_MIN_FREE_GB);
    let report = Checkup::new(findings);
    if !report.ok {
        bail!("the {arch} build cannot start:\n{}", report.render());
    }
    Ok(())
}

/// `dist` asks for less room than `doctor`'s default: a warm cache needs little more.
pub const DIST_MIN_FREE_GB: u64 = 5;

/// Start a Docker daemon in the background when none answers (CI machines start with none).
/// Its log goes to `log`; it outlives this process on purpose, like a service would.
pub fn ensure_dockerd(log: &Path) -> Result<()> {
    let cwd = Path::new("/");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let docker = crate::engine::Detected::probe("docker", &path);
    let client = docker
        .buildx
        .or(docker.builtin)
        .ok_or_else(|| anyhow::anyhow!("no usable docker client: {}", docker.notes.join("; ")))?;
    let ping = Command::new(client.clone(), cwd).args(["version", "--format", "{{.Server.Version}}"]);
    if ping.capture().is_ok() {
        return Ok(());
    }
    let dockerd =
        which::which("dockerd").map_err(|_| anyhow::anyhow!("dockerd is not installed: apt-get install docker.io"))?;
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir)?;
    }
    eprintln!("    starting {} (log: {})", dockerd.display(), log.display());
    let out = std::fs::File::create(log)?;
    std::process::Command::new(&dockerd)
        .stdout(out.try_clone()?)
        .stderr(out)
        .stdin(std::process::Stdio::null())
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", dockerd.display()))?;
    for _ in 0..60 {
        std::thread::sleep(std::time::Duration::from_millis(500));
        if ping.capture().is_ok() {
            return Ok(());
        }
    }
    let tail = std::fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = tail.lines().rev().take(15).collect();
    bail!(
        "dockerd did not answer within 30 s; last lines of {}:\n{}",
        log.display(),
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    )
}

/// Register QEMU for each arch (as `doctor --fix` does), failing with the fix when it cannot.
pub fn register_binfmt(arches: &[Arch]) -> Result<()> {
    let b = Binfmt::default();
    let failed: Vec<String> = arches
        .iter()
        .map(|a| b.check(*a, true))
        .filter(|f| f.status == Status::Fail)
        .map(|f| format!("{}: {} (fix: {})", f.check, f.found, f.fix.unwrap_or_default()))
        .collect();
    if failed.is_empty() { Ok(()) } else { bail!("QEMU is not usable: {}", failed.join("; ")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARM_ENABLED: &str = "enabled\ninterpreter /usr/libexec/qemu-binfmt/arm-binfmt-P\nflags: POF\noffset 0\nmagic 7f454c4601010100000000000000000002002800\nmask ffffffffffffff00fffffffffffffffffeffffff\n";

    fn binfmt_with(entries: &[(&str, &str)]) -> (tempfile::TempDir, Binfmt) {
        let d = tempfile::tempdir().unwrap();
        let proc_dir = d.path().join("proc");
        std::fs::create_dir_all(&proc_dir).unwrap();
        for (name, text) in entries {
            std::fs::write(proc_dir.join(name), text).unwrap();
        }
        let b = Binfmt { proc_dir, conf_dir: d.path().join("binfmt.d") };
        (d, b)
    }

    #[test]
    fn binfmt_entries_parse() {
        let e = BinfmtEntry::parse(ARM_ENABLED).unwrap();
        assert_eq!(
            e,
            BinfmtEntry {
                enabled: true,
                interpreter: "/usr/libexec/qemu-binfmt/arm-binfmt-P".into(),
                flags: "POF".into()
            }
        );
        assert!(!BinfmtEntry::parse("disabled\ninterpreter /usr/bin/qemu-aarch64-static\nflags: \n").unwrap().enabled);
        assert_eq!(BinfmtEntry::parse("garbage"), None);
        assert_eq!(BinfmtEntry::parse("enabled\nflags: F\n"), None, "no interpreter");
    }

    #[test]
    fn binfmt_check_reports_missing_disabled_and_flagless_entries_with_the_fix() {
        let (_d, b) = binfmt_with(&[("qemu-arm", ARM_ENABLED)]);
        assert_eq!(b.check(Arch::Armv7l, false).status, Status::Ok);
        let missing = b.check(Arch::Arm64, false);
        assert_eq!(missing.status, Status::Fail);
        assert!(missing.found.ends_with("proc/qemu-aarch64 is not registered"), "{}", missing.found);
        assert!(missing.fix.as_ref().unwrap().contains("binfmt.d/qemu-aarch64.conf > "), "{:?}", missing.fix);
        assert!(missing.fix.as_ref().unwrap().contains("tonistiigi/binfmt --install arm64"), "{:?}", missing.fix);

        let (_d, b) = binfmt_with(&[("qemu-arm", &ARM_ENABLED.replace("enabled", "disabled"))]);
        assert!(b.check(Arch::Armv7l, false).found.ends_with("qemu-arm is disabled"));
        let (_d, b) = binfmt_with(&[("qemu-arm", &ARM_ENABLED.replace("flags: POF", "flags: "))]);
        assert!(b.check(Arch::Armv7l, false).found.contains("lacks the F flag"));
    }

    #[test]
    fn binfmt_fix_registers_from_the_conf_file() {
        let (d, b) = binfmt_with(&[("register", "")]);
        std::fs::create_dir_all(&b.conf_dir).unwrap();
        let def = ":qemu-aarch64:M::\\x7fELF\\x02:\\xff:/usr/libexec/qemu-binfmt/aarch64-binfmt-P:OPF";
        std::fs::write(b.conf_dir.join("qemu-aarch64.conf"), format!("# comment\n{def}\n")).unwrap();
        let f = b.check(Arch::Arm64, true);
        assert_eq!(f.status, Status::Fixed, "{f:?}");
        assert_eq!(std::fs::read_to_string(d.path().join("proc/register")).unwrap(), def);
    }

    #[test]
    fn buildx_inspect_platforms_parse() {
        let text = "Name:   kt-builder\nDriver: docker-container\n\nNodes:\nName:      kt-builder0\nEndpoint:  unix:///var/run/docker.sock\nStatus:    running\nPlatforms: linux/amd64*, linux/arm64*, linux/arm/v7*,\n           linux/386\n";
        // Continuation lines are not prefixed; buildx prints all on one line in practice.
        assert_eq!(buildx_platforms(text), ["linux/amd64", "linux/arm64", "linux/arm/v7"]);
        assert!(buildx_platforms("Name: x\n").is_empty());
    }
}
