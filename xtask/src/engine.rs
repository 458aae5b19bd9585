//! Which engine builds the services for an arch, and the exact command it runs.
//!
//! Native where host = target; otherwise a container build under QEMU or on a remote native
//! node: `docker buildx`, the Docker client's built-in BuildKit, or podman.

use std::{
    ffi::OsStr,
    fmt,
    path::{Path, PathBuf},
};

use anyhow::{Result, bail};
use serde::Serialize;

use crate::{arch::Arch, config::EngineChoice, process::Command};

/// In JSON, `engine` is the name dist.yaml's `engine:` and `--engine` give it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "engine", rename_all = "snake_case")]
pub enum Engine {
    /// PyInstaller in `python-service/.venv` on this host.
    Native,
    /// `docker buildx build`, optionally on a named builder.
    Buildx {
        docker: String,
        builder: Option<String>,
        route: Route,
    },
    /// `DOCKER_BUILDKIT=1 docker build`: clients before 23 have BuildKit built in.
    #[serde(rename = "docker")]
    DockerBuildkit {
        docker: String,
        route: Route,
    },
    Podman {
        podman: String,
    },
}

/// Where a docker engine's builds go: a context or an endpoint (a remote native node).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Route {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub docker_host: Option<String>,
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let route = |f: &mut fmt::Formatter<'_>, r: &Route| {
            if let Some(c) = &r.context {
                write!(f, ", context {c}")?;
            }
            if let Some(h) = &r.docker_host {
                write!(f, ", DOCKER_HOST={h}")?;
            }
            Ok(())
        };
        match self {
            Engine::Native => f.write_str("native"),
            Engine::Buildx { docker, builder, route: r } => {
                write!(f, "buildx ({docker} buildx")?;
                if let Some(b) = builder {
                    write!(f, ", builder {b}")?;
                }
                route(f, r)?;
                f.write_str(")")
            }
            Engine::DockerBuildkit { docker, route: r } => {
                write!(f, "docker BuildKit ({docker}")?;
                route(f, r)?;
                f.write_str(")")
            }
            Engine::Podman { podman } => write!(f, "podman ({podman})"),
        }
    }
}

/// `auto` found no usable engine on this machine. `planned` is the one a machine that has one
/// would use first (buildx), so a dry run can still show the whole plan.
#[derive(Debug)]
pub struct NoEngine {
    pub arch: Arch,
    /// What detection found (each client and why it cannot build).
    pub why: String,
    pub fix: String,
    pub planned: Engine,
}

impl fmt::Display for NoEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no container engine can build {}: {}.\nfix: {}", self.arch, self.why, self.fix)
    }
}

impl std::error::Error for NoEngine {}

/// Everything a container build needs besides the engine.
#[derive(Clone)]
pub struct ContainerBuild<'a> {
    pub arch: Arch,
    pub root: &'a Path,
    pub dockerfile: &'a Path,
    /// The build's ignore file; BuildKit finds `<Dockerfile>.dockerignore` itself, podman is told.
    pub ignore_file: Option<&'a Path>,
    /// The stage whose files are exported.
    pub target: String,
    pub build_args: Vec<(String, String)>,
    /// The host's CA bundle, handed over as a BuildKit secret (never a layer or build arg).
    pub ca_bundle: Option<&'a Path>,
    pub dest: &'a Path,
}

impl Engine {
    /// Pick the engine for `arch`. `auto`: native where host = target (and for darwin, which
    /// has no container platform), else the first of buildx, built-in BuildKit, podman that
    /// `path` offers. An explicit choice is taken as given; doctor checks it works.
    pub fn resolve(
        choice: EngineChoice,
        arch: Arch,
        host: Option<Arch>,
        docker: &str,
        route: Route,
        path: &OsStr,
    ) -> Result<Engine> {
        let native_possible = host == Some(arch);
        Ok(match choice {
            EngineChoice::Native => Engine::Native,
            EngineChoice::Auto if native_possible || arch.native_only() => Engine::Native,
            EngineChoice::Auto => {
                let found = Detected::probe(docker, path);
                match (found.buildx, found.builtin, found.podman) {
                    (Some(d), _, _) => Engine::Buildx { docker: d, builder: None, route },
                    (None, Some(d), _) => Engine::DockerBuildkit { docker: d, route },
                    (None, None, Some(p)) if route == Route::default() => Engine::Podman { podman: p },
                    _ => {
                        let why = if found.notes.is_empty() {
                            "no docker or podman on PATH".into()
                        } else {
                            found.notes.join("; ")
                        };
                        return Err(NoEngine {
                            arch,
                            why,
                            fix: "install Docker with the buildx plugin (Debian: apt-get install docker.io docker-buildx), \
                                  or podman; or point DOCKER at a client with BuildKit built in (Debian's /usr/bin/docker 20.10)"
                                .into(),
                            planned: Engine::Buildx { docker: docker.into(), builder: None, route },
                        }
                        .into());
                    }
                }
            }
            _ if arch.native_only() => {
                bail!(
                    "{arch} has no container platform: it builds natively on its own host (use --engine native there)"
                )
            }
            EngineChoice::Docker => Engine::DockerBuildkit { docker: docker.into(), route },
            EngineChoice::Buildx => Engine::Buildx { docker: docker.into(), builder: None, route },
            EngineChoice::Podman => {
                if route != Route::default() {
                    bail!(
                        "podman cannot use a docker context or DOCKER_HOST; remove them from the target or pick engine docker/buildx"
                    );
                }
                Engine::Podman { podman: "podman".into() }
            }
        })
    }

    /// The executable this engine runs, if any.
    pub fn program(&self) -> Option<&str> {
        match self {
            Engine::Native => None,
            Engine::Buildx { docker, .. } | Engine::DockerBuildkit { docker, .. } => Some(docker),
            Engine::Podman { podman } => Some(podman),
        }
    }

    pub fn with_builder(self, name: Option<String>) -> Engine {
        match self {
            Engine::Buildx { docker, route, .. } => Engine::Buildx { docker, builder: name, route },
            other => other,
        }
    }

    /// The one command that builds every service for `b.arch` and exports the binaries to
    /// `b.dest` (a `FROM scratch` final stage, `--output type=local`: no container is run
    /// and nothing is copied out by hand).
    pub fn container_build(&self, b: &ContainerBuild) -> Option<Command> {
        let platform = b.arch.docker_platform()?;
        let mut cmd = match self {
            Engine::Native => return None,
            Engine::Buildx { docker, builder, route } => {
                let mut c = docker_cmd(docker, route, b.root);
                c = c.args(["buildx", "build"]);
                if let Some(name) = builder {
                    c = c.args(["--builder", name]);
                }
                // CI: `KT_BUILDX_CACHE=type=gha,scope=armv7l` keeps BuildKit's layers in the
                // Actions cache, since a fresh runner's builder starts empty.
                if let Some(cache) = std::env::var("KT_BUILDX_CACHE").ok().filter(|c| !c.is_empty()) {
                    c = c.arg("--cache-from").arg(&cache).arg("--cache-to").arg(format!("{cache},mode=max"));
                }
                c
            }
            Engine::DockerBuildkit { docker, route } => {
                docker_cmd(docker, route, b.root).env("DOCKER_BUILDKIT", "1").arg("build")
            }
            Engine::Podman { podman } => {
                let mut c = Command::new(podman.clone(), b.root).args(["build", "--pull=never"]);
                if let Some(ignore) = b.ignore_file {
                    c = c.arg("--ignorefile").arg(ignore);
                }
                c
            }
        };
        cmd =
            cmd.args(["--platform", platform, "--network", "host", "--target", &b.target, "--file"]).arg(b.dockerfile);
        for (k, v) in &b.build_args {
            cmd = cmd.arg("--build-arg").arg(format!("{k}={v}"));
        }
        if let Some(ca) = b.ca_bundle {
            cmd = cmd.arg("--secret").arg(format!("id=cacert,src={}", ca.display()));
        }
        Some(cmd.arg("--output").arg(format!("type=local,dest={}", b.dest.display())).arg(b.root))
    }
}

impl Engine {
    /// Build a local image from a context folder, into the store this engine's builds read
    /// (`--load` for buildx: its builder's cache is not the image store).
    pub fn image_build(&self, platform: &str, tag: &str, labels: &[(&str, &str)], context: &Path) -> Option<Command> {
        let mut cmd = match self {
            Engine::Native => return None,
            Engine::Buildx { docker, builder, route } => {
                let mut c = docker_cmd(docker, route, context).args(["buildx", "build", "--load"]);
                if let Some(b) = builder {
                    c = c.args(["--builder", b]);
                }
                c
            }
            Engine::DockerBuildkit { docker, route } => {
                docker_cmd(docker, route, context).env("DOCKER_BUILDKIT", "1").arg("build")
            }
            Engine::Podman { podman } => Command::new(podman.clone(), context).arg("build"),
        };
        cmd = cmd.args(["--platform", platform]);
        for (k, v) in labels {
            cmd = cmd.arg("--label").arg(format!("{k}={v}"));
        }
        Some(cmd.args(["--tag", tag]).arg(context))
    }

    /// `python3` in a container of `image` for `platform` (QEMU runs it), with no network, with
    /// `env` set and host folders mounted at the paths given (read-only when marked); the
    /// arguments come after it. None for a route to another machine, which cannot see this
    /// host's folders. What it writes belongs to the container's user (root under rootful
    /// docker): the folder it writes to is the caller's, so the caller can still remove it.
    pub fn python_in_image(
        &self,
        platform: &str,
        image: &str,
        mounts: &[(&Path, &str, bool)],
        env: &[(&str, &str)],
        cwd: &Path,
    ) -> Option<Command> {
        let mut cmd = match self {
            Engine::Native => return None,
            Engine::Buildx { route, .. } | Engine::DockerBuildkit { route, .. }
                if route.context.is_some() || route.docker_host.is_some() =>
            {
                return None;
            }
            Engine::Buildx { docker, route, .. } | Engine::DockerBuildkit { docker, route } => {
                docker_cmd(docker, route, cwd).arg("run")
            }
            Engine::Podman { podman } => Command::new(podman.clone(), cwd).arg("run"),
        };
        cmd = cmd.args(["--rm", "--platform", platform, "--network", "none"]);
        for (host, inside, read_only) in mounts {
            let ro = if *read_only { ":ro" } else { "" };
            cmd = cmd.arg("--volume").arg(format!("{}:{inside}{ro}", host.display()));
        }
        for (k, v) in env {
            cmd = cmd.arg("--env").arg(format!("{k}={v}"));
        }
        Some(cmd.args([image, "python3"]))
    }

    /// Prints the id of image `tag` (fails when there is no such image).
    pub fn image_id(&self, tag: &str, cwd: &Path) -> Option<Command> {
        let cmd = match self {
            Engine::Native => return None,
            Engine::Buildx { docker, route, .. } | Engine::DockerBuildkit { docker, route } => {
                docker_cmd(docker, route, cwd)
            }
            Engine::Podman { podman } => Command::new(podman.clone(), cwd),
        };
        Some(cmd.args(["image", "inspect", "--format", "{{.Id}}", tag]))
    }

    /// Prints the value of `label` on image `tag` (fails when there is no such image).
    pub fn image_label(&self, tag: &str, label: &str, cwd: &Path) -> Option<Command> {
        let format = format!("{{{{index .Config.Labels \"{label}\"}}}}");
        let cmd = match self {
            Engine::Native => return None,
            Engine::Buildx { docker, route, .. } | Engine::DockerBuildkit { docker, route } => {
                docker_cmd(docker, route, cwd)
            }
            Engine::Podman { podman } => Command::new(podman.clone(), cwd),
        };
        Some(cmd.args(["image", "inspect", "--format", &format, tag]))
    }
}

/// The engine dist.yaml (or `--engine`) gives `arch` on this host, with the target's route
/// and builder, the client from DOCKER over `docker.executable`.
pub fn engine_for(
    config: &crate::config::Config,
    arch: Arch,
    host: Option<Arch>,
    choice: Option<EngineChoice>,
    tools: &crate::host::Host,
) -> Result<Engine> {
    let target = config.target(arch)?;
    let route = Route { context: target.context.clone(), docker_host: target.docker_host.clone() };
    let docker = tools.docker.as_deref().unwrap_or(&config.dist.docker.executable);
    let engine = Engine::resolve(choice.unwrap_or(target.engine), arch, host, docker, route, &tools.path)?;
    Ok(engine.with_builder(target.builder.clone()))
}

/// What a PATH offers for container builds, found by running the clients (no daemon needed).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Detected {
    /// A docker client whose `buildx` plugin answers.
    pub buildx: Option<String>,
    /// A docker client older than 23, which runs BuildKit builds itself (`DOCKER_BUILDKIT=1`).
    pub builtin: Option<String>,
    pub podman: Option<String>,
    /// Why each docker found is unusable, for the error when nothing is.
    pub notes: Vec<String>,
}

impl Detected {
    /// Every `docker` on `path` is considered, in order, not just the first: a machine may
    /// have a new client without buildx ahead of one with BuildKit built in.
    pub fn probe(docker: &str, path: &OsStr) -> Detected {
        let cwd = std::env::current_dir().unwrap_or_else(|_| "/".into());
        let candidates: Vec<PathBuf> = if Path::new(docker).is_absolute() {
            vec![PathBuf::from(docker)]
        } else {
            which::which_in_all(docker, Some(path), &cwd).map(|it| it.collect()).unwrap_or_default()
        };
        // A merged /usr makes /bin/docker and /usr/bin/docker one client: probe it once.
        let mut seen = std::collections::HashSet::new();
        let candidates: Vec<PathBuf> = candidates
            .into_iter()
            .filter(|c| seen.insert(std::fs::canonicalize(c).unwrap_or_else(|_| c.clone())))
            .collect();
        let runs = |c: &Path, args: &[&str]| {
            std::process::Command::new(c)
                .args(args)
                .env("PATH", path)
                .stdin(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        };
        // Every client answers both questions at once (each is a process start of ~10-25 ms,
        // paid by every `dist`); the answers are then read in PATH order.
        let answers: Vec<(Option<String>, Option<String>)> = std::thread::scope(|s| {
            let asked: Vec<_> = candidates
                .iter()
                .map(|c| (s.spawn(|| runs(c, &["buildx", "version"])), s.spawn(|| runs(c, &["--version"]))))
                .collect();
            asked.into_iter().map(|(b, v)| (b.join().unwrap_or(None), v.join().unwrap_or(None))).collect()
        });
        let mut found = Detected::default();
        for (c, (buildx, version)) in candidates.iter().zip(answers) {
            let name = c.to_string_lossy().into_owned();
            if found.buildx.is_none() && buildx.is_some() {
                found.buildx = Some(name);
                continue;
            }
            match version.as_deref().and_then(docker_major) {
                Some(major) if major < 23 => {
                    found.builtin.get_or_insert(name);
                }
                Some(major) => found.notes.push(format!("{name} is Docker {major} without the buildx plugin")),
                None => found.notes.push(format!("{name} does not answer `--version`")),
            }
        }
        found.podman = which::which_in("podman", Some(path), &cwd).ok().map(|p| p.to_string_lossy().into_owned());
        found
    }
}

impl Engine {
    /// The engine's client with its route (context, DOCKER_HOST) applied, ready for arguments.
    pub fn command(&self, cwd: &Path) -> Command {
        match self {
            Engine::Native => Command::new("true", cwd),
            Engine::Buildx { docker, route, .. } | Engine::DockerBuildkit { docker, route } => {
                docker_cmd(docker, route, cwd)
            }
            Engine::Podman { podman } => Command::new(podman.clone(), cwd),
        }
    }
}

/// `Docker version 20.10.24+dfsg1, build 297e128` → 20.
pub fn docker_major(version: &str) -> Option<u32> {
    let rest = version.trim().strip_prefix("Docker version ")?;
    rest.split('.').next()?.parse().ok()
}

fn docker_cmd(docker: &str, route: &Route, cwd: &Path) -> Command {
    let mut c = Command::new(docker, cwd);
    if let Some(h) = &route.docker_host {
        c = c.env("DOCKER_HOST", h.clone());
    }
    if let Some(ctx) = &route.context {
        c = c.args(["--context", ctx]);
    }
    c
}

#[cfg(test)]
pub(crate) mod tests {
    use std::ffi::OsString;

    use super::*;

    /// A PATH made of fixture folders (`xtask/tests/fake-path/<name>`), in order.
    pub fn fake_path(dirs: &[&str]) -> OsString {
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake-path");
        std::env::join_paths(dirs.iter().map(|d| base.join(d))).unwrap()
    }

    /// One fake client of `xtask/tests/fake-path/<dir>`, as an absolute path.
    pub fn fixture(dir: &str, tool: &str) -> String {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fake-path")
            .join(dir)
            .join(tool)
            .to_string_lossy()
            .into_owned()
    }

    fn auto(path: &[&str]) -> Result<Engine> {
        Engine::resolve(EngineChoice::Auto, Arch::Armv7l, Some(Arch::X64), "docker", Route::default(), &fake_path(path))
    }

    #[test]
    fn detection_prefers_buildx_then_builtin_buildkit_then_podman() {
        let buildx = Engine::Buildx { docker: fixture("buildx", "docker"), builder: None, route: Route::default() };
        let builtin = Engine::DockerBuildkit { docker: fixture("buildkit", "docker"), route: Route::default() };
        let podman = Engine::Podman { podman: fixture("podman", "podman") };
        assert_eq!(auto(&["buildkit", "buildx", "podman"]).unwrap(), buildx);
        assert_eq!(auto(&["podman", "buildkit"]).unwrap(), builtin);
        // A new client without buildx first on PATH (this machine's case) is skipped.
        assert_eq!(auto(&["new-docker", "buildkit"]).unwrap(), builtin);
        assert_eq!(auto(&["new-docker", "podman"]).unwrap(), podman);
        assert_eq!(auto(&["podman"]).unwrap(), podman);
    }

    #[test]
    fn detection_failure_says_why_and_how_to_fix() {
        let err = auto(&["new-docker"]).unwrap_err().to_string();
        assert!(
            err.contains(&format!("{} is Docker 28 without the buildx plugin", fixture("new-docker", "docker"))),
            "{err}"
        );
        assert!(err.contains("fix: install Docker with the buildx plugin"), "{err}");
        let err = auto(&[]).unwrap_err().to_string();
        assert!(err.contains("no docker or podman on PATH"), "{err}");
    }

    #[test]
    fn native_where_host_is_target_and_routes_keep_podman_out() {
        let path = fake_path(&["buildx"]);
        let native = Engine::resolve(EngineChoice::Auto, Arch::X64, Some(Arch::X64), "docker", Route::default(), &path);
        assert_eq!(native.unwrap(), Engine::Native);
        let routed = Route { context: None, docker_host: Some("tcp://arm64-node:2375".into()) };
        let err = Engine::resolve(EngineChoice::Podman, Arch::Arm64, Some(Arch::X64), "docker", routed, &path);
        assert!(err.unwrap_err().to_string().starts_with("podman cannot use a docker context or DOCKER_HOST"));
        let err = Engine::resolve(
            EngineChoice::Docker,
            Arch::DarwinArm64,
            Some(Arch::X64),
            "docker",
            Route::default(),
            &path,
        );
        assert!(err.unwrap_err().to_string().starts_with("darwin-arm64 has no container platform"));
    }

    #[test]
    fn docker_versions_parse() {
        assert_eq!(docker_major("Docker version 20.10.24+dfsg1, build 297e128\n"), Some(20));
        assert_eq!(docker_major("Docker version 28.2.2, build e6534b4"), Some(28));
        assert_eq!(docker_major("podman version 4.3.1"), None);
    }
}
