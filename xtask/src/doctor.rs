//! `cargo xtask doctor`: everything seed 000's "Caveats and Troubleshooting" asks a person to
//! check by hand, as checks that print the exact fix, and with `--fix` apply it where that is
//! safe (registering QEMU handlers, creating a buildx builder). `dist` runs the engine checks
//! for its target before any long step.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
};

use anyhow::{Result, bail};
use serde::Serialize;

use crate::{
    arch::Arch,
    config::{Base, Config},
    engine::Engine,
    host::Host,
    process::Command,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    /// Not a failure, but worth knowing (a check that could not run yet).
    Warn,
    Fail,
    /// Was failing; `--fix` repaired it.
    Fixed,
}

#[derive(Debug, Serialize)]
pub struct Finding {
    pub check: String,
    pub status: Status,
    pub found: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Finding {
    fn ok(check: impl Into<String>, found: impl Into<String>) -> Finding {
        Finding { check: check.into(), status: Status::Ok, found: found.into(), fix: None }
    }
    fn fail(check: impl Into<String>, found: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding { check: check.into(), status: Status::Fail, found: found.into(), fix: Some(fix.into()) }
    }
    fn warn(check: impl Into<String>, found: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding { check: check.into(), status: Status::Warn, found: found.into(), fix: Some(fix.into()) }
    }
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub findings: Vec<Finding>,
    pub ok: bool,
}

impl Report {
    pub fn new(findings: Vec<Finding>) -> Report {
        let ok = findings.iter().all(|f| f.status != Status::Fail);
        Report { findings, ok }
    }

    pub fn render(&self) -> String {
        let w = self.findings.iter().map(|f| f.check.len()).max().unwrap_or(5).max(5);
        let mut out = String::new();
        for f in &self.findings {
            let status = match f.status {
                Status::Ok => "ok",
                Status::Warn => "warn",
                Status::Fail => "FAIL",
                Status::Fixed => "fixed",
            };
            let _ = writeln!(out, "{:<w$}  {status:<5}  {}", f.check, f.found);
            if let (Some(fix), Status::Fail | Status::Warn) = (&f.fix, f.status) {
                let _ = writeln!(out, "{:<w$}         fix: {fix}", "");
            }
        }
        let failed = self.findings.iter().filter(|f| f.status == Status::Fail).count();
        let _ = writeln!(
            out,
            "{}",
            if failed == 0 {
                "doctor: all checks pass".to_string()
            } else {
                format!("doctor: {failed} check(s) failed")
            }
        );
        out
    }
}

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
    /// "exec format error" or "no such file" (seed 000, caveats 1 and 4).
    pub fn check(&self, arch: Arch, fix: bool) -> Finding {
        let name = "binfmt".to_string();
        let Some(qemu) = arch.qemu_binfmt() else {
            return Finding::ok(name, "not needed");
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
            Some(e) => return Finding::ok(name, format!("{} (flags {})", e.interpreter, e.flags)),
        };
        if fix {
            match self.register(qemu, &conf, state.is_some()) {
                Ok(()) => {
                    return Finding {
                        check: name,
                        status: Status::Fixed,
                        found: format!("{problem}; registered from {}", conf.display()),
                        fix: None,
                    };
                }
                Err(e) => return Finding::fail(name, format!("{problem}; --fix failed: {e:#}"), how),
            }
        }
        Finding::fail(name, problem, how)
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
fn free_bytes(dir: &str) -> Option<u64> {
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
) -> Vec<Finding> {
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
            out.push(Finding::ok(format!("{prefix}engine reachable"), format!("{what} {v} via {program}")));
            true
        }
        Err(e) => {
            out.push(Finding::fail(
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
                Err(e) => out.push(Finding::fail(
                    format!("{prefix}buildx builder"),
                    e,
                    "install the buildx plugin (apt-get install docker-buildx, or Docker Desktop)",
                )),
                Ok(text) => {
                    let platforms = buildx_platforms(&text);
                    let want = arch.docker_platform().unwrap_or_default();
                    let create = "docker buildx create --name kt-builder --driver docker-container --platform linux/amd64,linux/arm64,linux/arm/v7 --bootstrap --use";
                    if platforms.iter().any(|p| p == want) {
                        out.push(Finding::ok(
                            format!("{prefix}buildx platforms"),
                            format!("{want} in {}", platforms.join(", ")),
                        ));
                    } else if fix && base_cmd(&create.split(' ').skip(1).collect::<Vec<_>>()).capture().is_ok() {
                        out.push(Finding {
                            check: format!("{prefix}buildx platforms"),
                            status: Status::Fixed,
                            found: "created builder kt-builder".into(),
                            fix: None,
                        });
                    } else {
                        out.push(Finding::fail(
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
                Some(m) if m < 23 => out.push(Finding::ok(format!("{prefix}BuildKit"), format!("built into {docker} ({version})"))),
                _ => out.push(Finding::fail(
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
        out.push(Finding::ok(format!("{prefix}binfmt"), "remote engine: its own host runs the builds"));
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
                    out.push(Finding::ok(format!("{prefix}disk space"), format!("{} GB free in {dir}", free >> 30)))
                }
                Some(free) => out.push(Finding::fail(
                    format!("{prefix}disk space"),
                    format!("{} GB free in {dir}, below {min_free_gb} GB", free >> 30),
                    format!("free space: `{program} builder prune -f` (build cache), then `{program} image prune -f`; `{program} system prune -a -f --volumes` removes everything unused"),
                )),
                None => out.push(Finding::warn(format!("{prefix}disk space"), format!("cannot read free space of {dir}"), "check `df -h` yourself")),
            }
        }
    }
    out
}

/// A container of the target platform really runs: QEMU registered is not QEMU working.
fn container_runs(root: &Path, arch: Arch, engine: &Engine, image: &str, prefix: &str) -> Finding {
    let check = format!("{prefix}container runs");
    let inspect = engine.command(root).args(["image", "inspect", "--format", "{{.Architecture}}", image]);
    if inspect.capture().is_err() {
        return Finding::warn(
            check,
            format!("not checked: image {image} is not here yet"),
            format!("`cargo xtask base-image --arch {arch}` (dist builds it before the services)"),
        );
    }
    let platform = arch.docker_platform().unwrap_or_default();
    let run =
        engine.command(root).args(["run", "--rm", "--platform", platform, "--network", "none", image, "uname", "-m"]);
    match run.capture() {
        Ok(m) if m == arch.uname_machine() => Finding::ok(check, format!("`uname -m` in {image} says {m}")),
        Ok(m) => Finding::fail(
            check,
            format!("`uname -m` in {image} says {m}, expected {}", arch.uname_machine()),
            "the image is for another platform: rebuild it with `cargo xtask base-image --arch ... --force`",
        ),
        Err(e) => Finding::fail(
            check,
            format!("{platform} container does not start: {e}"),
            "register QEMU for this arch (see binfmt above), then retry",
        ),
    }
}

/// Host tools and the CA bundle: the checks that do not depend on an arch. Each tool is
/// probed by running it, as dist's preflight does.
fn host_checks(config: &Config, tools: &Host) -> Vec<Finding> {
    let mut out = Vec::new();
    let cwd = std::env::current_dir().unwrap_or_else(|_| "/".into());
    // The client `auto` picks for container builds: not just the first `docker` on PATH.
    let docker = tools.docker.as_deref().unwrap_or(&config.dist.docker.executable);
    let found = crate::engine::Detected::probe(docker, &tools.path);
    out.push(match (&found.buildx, &found.builtin, &found.podman) {
        (Some(d), _, _) => Finding::ok("container client", format!("{d} (buildx)")),
        (None, Some(d), _) => Finding::ok("container client", format!("{d} (BuildKit built in)")),
        (None, None, Some(p)) => Finding::ok("container client", format!("{p} (podman)")),
        _ => Finding::warn(
            "container client",
            if found.notes.is_empty() { "no docker or podman on PATH".into() } else { found.notes.join("; ") },
            "needed only for cross targets: apt-get install docker.io (or podman)",
        ),
    });
    let probe = |check: &str, p: &crate::prereq::Prereq| match p.check() {
        Ok(()) => Finding::ok(check, p.describe()),
        Err(why) => Finding::fail(
            check,
            format!("{}: {why}", p.describe()),
            p.fix.clone().unwrap_or_else(|| format!("apt-get install {}", p.packages.join(" "))),
        ),
    };
    out.push(probe("python", &crate::prereq::Prereq::python_venv(&config.dist.python.interpreter)));
    out.push(probe("node", &crate::prereq::Prereq::node()));
    let find = |names: &[&str]| names.iter().find_map(|n| which::which_in(n, Some(&tools.path), &cwd).ok());
    out.push(match find(&["pnpm", "npm"]) {
        Some(p) => Finding::ok("tool pnpm or npm", p.display().to_string()),
        None => Finding::fail(
            "tool pnpm or npm",
            "none of pnpm, npm on PATH",
            "apt-get install npm (or `npm install -g pnpm`)",
        ),
    });
    out.push(match &tools.ca_bundle {
        Some(ca) => Finding::ok(
            "CA bundle",
            format!("{} is handed to container builds as BuildKit secret `cacert`", ca.display()),
        ),
        None => Finding::ok("CA bundle", "none on this host: builds use their image's CA roots"),
    });
    out
}

/// Where `dist` would take Electron for `arch` from: the electronDist (its binary verified
/// for the arch), electron-builder's cache, ELECTRON_MIRROR or github.com.
fn electron_check(config: &Config, arch: Arch, tools: &Host, env: crate::electron::Env) -> Finding {
    let check = format!("{arch}: electron");
    match crate::electron::electron_dist(config, arch, tools.electron_dist.as_deref()) {
        Some(dist) => {
            let exe =
                dist.join(if arch == Arch::DarwinArm64 { "Electron.app/Contents/MacOS/Electron" } else { "electron" });
            match crate::verify::check_release(std::slice::from_ref(&exe), arch, None) {
                Ok(()) => Finding::ok(check, format!("electronDist {}", dist.display())),
                Err(e) => Finding::fail(
                    check,
                    format!("electronDist {}: {e:#}", dist.display()),
                    "point KT_ELECTRON_DIST (or dist.yaml electron.dist) at an unpacked Electron of this arch",
                ),
            }
        }
        None => {
            let version = match config.app.electron() {
                Ok(v) => v,
                Err(e) => {
                    return Finding::fail(
                        check,
                        format!("{e:#}"),
                        "pin an exact Electron in electron-app/package.json",
                    );
                }
            };
            let zip = match crate::electron::electron_zip(version, arch, env) {
                Ok(z) => z,
                Err(e) => {
                    return Finding::fail(
                        check,
                        format!("{e:#}"),
                        "pin an exact Electron in electron-app/package.json",
                    );
                }
            };
            match crate::electron::download(version, &zip, env) {
                Ok(crate::electron::Download::Available(from)) => Finding::ok(check, format!("download {from}")),
                Ok(crate::electron::Download::Unchecked(note)) => {
                    Finding::warn(check, note, "set KT_ELECTRON_DIST to build without a download")
                }
                Err(e) => {
                    let text = format!("{e:#}");
                    let (found, fix) = text
                        .split_once(": point ")
                        .map_or((text.clone(), String::new()), |(a, b)| (a.to_string(), format!("point {b}")));
                    Finding::fail(check, found, fix)
                }
            }
        }
    }
}

/// Free space where native builds write (the checkout's target/), against `min_free_gb`.
fn native_disk_check(config: &Config, arch: Arch, min_free_gb: u64) -> Finding {
    let check = format!("{arch}: disk space");
    let dir = config.root.to_string_lossy().into_owned();
    match free_bytes(&dir) {
        Some(free) if free >= min_free_gb << 30 => Finding::ok(check, format!("{} GB free in {dir}", free >> 30)),
        Some(free) => Finding::fail(
            check,
            format!("{} GB free in {dir}, below {min_free_gb} GB", free >> 30),
            "free space (`cargo clean`, old release/ folders), or pass a lower --min-free-gb",
        ),
        None => Finding::warn(check, format!("cannot read free space of {dir}"), "check `df -h` yourself"),
    }
}

/// The image a target's container builds start from.
pub fn base_image_name(config: &Config, arch: Arch) -> Result<String> {
    Ok(match &config.target(arch)?.base {
        Base::Image(i) => i.clone(),
        Base::Debootstrap(suite) => crate::base_image::tag(arch, *suite),
    })
}

/// What `dist`'s preflight runs for a container target: the engine checks, failing with
/// every fix at once before any long step starts.
pub fn preflight(root: &Path, arch: Arch, engine: &Engine, image: &str) -> Result<()> {
    let findings = engine_checks(root, arch, engine, image, &Binfmt::default(), false, DIST_MIN_FREE_GB);
    let report = Report::new(findings);
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

#[derive(clap::Args)]
pub struct DoctorArgs {
    /// Check these arches (default: every configured target this host can build).
    #[arg(long = "arch", value_parser = crate::parse_arch)]
    arches: Vec<Arch>,
    /// Repair what can be repaired safely (QEMU registration, the buildx builder).
    #[arg(long)]
    fix: bool,
    #[arg(long)]
    json: bool,
    /// Minimum free space for the engine's data root.
    #[arg(long, default_value_t = 20)]
    min_free_gb: u64,
}

/// Exit code 0 when every check passes, 1 when one fails.
pub fn run(config: &Config, args: &DoctorArgs) -> Result<i32> {
    let tools = Host::probe(config);
    let arches: Vec<Arch> = if args.arches.is_empty() {
        config
            .dist
            .targets
            .keys()
            .copied()
            .filter(|a| a.docker_platform().is_some() || Arch::host() == Some(*a))
            .collect()
    } else {
        args.arches.clone()
    };
    let report =
        Report::new(findings(config, &tools, &arches, args, &Binfmt::default(), &crate::electron::process_env));
    if args.json {
        crate::exit::print_json(&report, report.ok)?;
    } else {
        print!("{}", report.render());
    }
    Ok(if report.ok { crate::exit::OK } else { crate::exit::FAILED })
}

/// Every check for `arches`: what `dist --arch A` would need of this host, so doctor passes
/// only what dist then accepts.
fn findings(
    config: &Config,
    tools: &Host,
    arches: &[Arch],
    args: &DoctorArgs,
    binfmt: &Binfmt,
    env: crate::electron::Env,
) -> Vec<Finding> {
    let mut findings = host_checks(config, tools);
    let host = Arch::host();
    for &arch in arches {
        let check = format!("{arch}: engine");
        match crate::dist::engine_for(config, arch, host, None, tools) {
            Ok(Engine::Native) if host == Some(arch) => {
                findings.push(Finding::ok(check, "native build on this host"));
                findings.push(native_disk_check(config, arch, args.min_free_gb));
            }
            Ok(Engine::Native) => findings.push(Finding::fail(
                check,
                format!(
                    "{arch} builds natively, and this host is {}",
                    host.map_or("not a known target".to_string(), |h| h.to_string())
                ),
                match arch.docker_platform() {
                    None => format!("{arch} builds only on its own host: run this on an Apple Silicon Mac (CI's macOS job does)"),
                    Some(_) => format!("set `engine: auto` (or docker, buildx, podman) for {arch} in dist.yaml, or build on a {arch} machine"),
                },
            )),
            Ok(engine) => {
                findings.push(Finding::ok(check, engine.to_string()));
                match base_image_name(config, arch) {
                    Ok(image) => findings.extend(engine_checks(
                        &config.root,
                        arch,
                        &engine,
                        &image,
                        binfmt,
                        args.fix,
                        args.min_free_gb,
                    )),
                    Err(e) => findings.push(Finding::fail(format!("{arch}: base image"), format!("{e:#}"), "fix dist.yaml targets")),
                }
            }
            Err(e) => match e.downcast_ref::<crate::engine::NoEngine>() {
                Some(none) => findings.push(Finding::fail(check, none.why.clone(), none.fix.clone())),
                None => findings.push(Finding::fail(check, format!("{e:#}"), format!("fix targets.{arch} in dist.yaml, or pass another --arch"))),
            },
        }
        findings.push(electron_check(config, arch, tools, env));
    }
    findings
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

    #[test]
    fn report_renders_fixes_and_serialises_its_shape() {
        let r = Report::new(vec![
            Finding::ok("tool node", "/usr/bin/node"),
            Finding::fail("armv7l: binfmt", "qemu-arm is not registered", "cat conf > register"),
        ]);
        assert!(!r.ok);
        let text = r.render();
        assert!(text.contains("armv7l: binfmt  FAIL   qemu-arm is not registered"), "{text}");
        assert!(text.contains("fix: cat conf > register"), "{text}");
        assert!(text.ends_with("doctor: 1 check(s) failed\n"), "{text}");
        let json: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert_eq!(json["ok"], false);
        assert_eq!(json["findings"][1]["status"], "fail");
        assert_eq!(json["findings"][1]["fix"], "cat conf > register");
        assert!(json["findings"][0].get("fix").is_none());
    }

    fn config() -> Config {
        Config::load(Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()).unwrap()
    }

    /// Host facts fixed for a test: engines only from the fake clients on `path`.
    fn tools(path: &[&str]) -> Host {
        let mut tools = Host::probe(&config());
        tools.path = crate::engine::tests::fake_path(path);
        tools.docker = None;
        tools.electron_dist = None;
        tools
    }

    fn args(min_free_gb: u64) -> DoctorArgs {
        DoctorArgs { arches: Vec::new(), fix: false, json: true, min_free_gb }
    }

    fn finding<'a>(all: &'a [Finding], check: &str) -> &'a Finding {
        all.iter().find(|f| f.check == check).unwrap_or_else(|| panic!("no {check} in {all:#?}"))
    }

    /// No electron download variables, and a cache that holds nothing.
    fn no_env(name: &str) -> Option<String> {
        (name == "ELECTRON_CACHE").then(|| "/nonexistent/kt-electron-cache".into())
    }

    #[test]
    fn the_container_client_reported_is_the_one_dist_uses() {
        // A Docker 28 without buildx comes first on PATH; dist uses the 20.10 client behind it.
        let f = host_checks(&config(), &tools(&["new-docker", "buildkit"]));
        let client = finding(&f, "container client");
        assert_eq!(client.status, Status::Ok);
        assert!(client.found.ends_with("fake-path/buildkit/docker (BuildKit built in)"), "{}", client.found);
        let f = host_checks(&config(), &tools(&["podman"]));
        assert!(finding(&f, "container client").found.ends_with("fake-path/podman/podman (podman)"));
    }

    #[test]
    fn a_native_only_target_fails_on_another_host_as_dist_refuses_it() {
        let config = config();
        if Arch::host() == Some(Arch::DarwinArm64) {
            return;
        }
        let f = findings(&config, &tools(&["buildkit"]), &[Arch::DarwinArm64], &args(0), &Binfmt::default(), &no_env);
        let engine = finding(&f, "darwin-arm64: engine");
        assert_eq!(engine.status, Status::Fail, "{engine:?}");
        assert!(engine.found.starts_with("darwin-arm64 builds natively, and this host is"), "{}", engine.found);
        assert!(engine.fix.as_deref().unwrap().contains("Apple Silicon Mac"), "{:?}", engine.fix);
    }

    #[test]
    fn no_engine_says_why_and_the_fix_itself_in_json() {
        let config = config();
        let f = findings(&config, &tools(&["new-docker"]), &[Arch::Armv7l], &args(0), &Binfmt::default(), &no_env);
        let engine = finding(&f, "armv7l: engine");
        assert_eq!(engine.status, Status::Fail);
        assert!(engine.found.contains("is Docker 28 without the buildx plugin"), "{}", engine.found);
        let json = serde_json::to_value(engine).unwrap();
        assert!(json["fix"].as_str().unwrap().starts_with("install Docker with the buildx plugin"), "{json}");
    }

    #[test]
    fn min_free_gb_applies_to_native_targets_too() {
        let Some(host) = Arch::host() else { return };
        let config = config();
        let f = findings(&config, &tools(&[]), &[host], &args(1 << 30), &Binfmt::default(), &no_env);
        let disk = finding(&f, &format!("{host}: disk space"));
        assert_eq!(disk.status, Status::Fail, "{disk:?}");
        assert!(disk.found.ends_with(&format!("below {} GB", 1u64 << 30)), "{}", disk.found);
        let f = findings(&config, &tools(&[]), &[host], &args(0), &Binfmt::default(), &no_env);
        assert_eq!(finding(&f, &format!("{host}: disk space")).status, Status::Ok);
    }

    #[test]
    fn electron_must_be_obtainable_and_the_mirror_variables_count() {
        let config = config();
        let tools = tools(&["buildkit"]);
        let f = electron_check(&config, Arch::Arm64, &tools, &no_env);
        // These machines reach no github.com: without a dist, cache or mirror, it fails.
        if crate::electron::download(config.app.electron().unwrap(), "x.zip", &no_env).is_err() {
            assert_eq!(f.status, Status::Fail, "{f:?}");
            assert!(f.fix.as_deref().unwrap().starts_with("point KT_ELECTRON_DIST"), "{f:?}");
        }
        // A file:// ELECTRON_MIRROR that holds the zip under v<version>/.
        let d = tempfile::tempdir().unwrap();
        let zip = crate::electron::electron_zip(config.app.electron().unwrap(), Arch::Arm64, &no_env).unwrap();
        let dir = d.path().join(format!("v{}", config.app.electron().unwrap()));
        std::fs::create_dir_all(&dir).unwrap();
        let mirror = format!("file://{}/", d.path().display());
        let env = |n: &str| match n {
            "ELECTRON_MIRROR" => Some(mirror.clone()),
            other => no_env(other),
        };
        let missing = electron_check(&config, Arch::Arm64, &tools, &env);
        assert_eq!(missing.status, Status::Fail, "{missing:?}");
        assert!(missing.found.contains(&format!("{}", dir.join(&zip).display())), "{missing:?}");
        std::fs::write(dir.join(&zip), b"zip").unwrap();
        let ok = electron_check(&config, Arch::Arm64, &tools, &env);
        assert_eq!(ok.status, Status::Ok, "{ok:?}");
        assert!(ok.found.contains("ELECTRON_MIRROR file"), "{ok:?}");
        // A cached zip counts too, under ELECTRON_CACHE.
        let cache = d.path().join("cache/abc");
        std::fs::create_dir_all(&cache).unwrap();
        std::fs::write(cache.join(&zip), b"zip").unwrap();
        let cache_root = d.path().join("cache").display().to_string();
        let env = |n: &str| (n == "ELECTRON_CACHE").then(|| cache_root.clone());
        assert_eq!(electron_check(&config, Arch::Arm64, &tools, &env).status, Status::Ok);
    }
}
