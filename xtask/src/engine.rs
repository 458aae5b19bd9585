//! Which engine builds the services for an arch, and the exact command it runs.
//!
//! Native where host = target; otherwise a container build under QEMU or on a remote native
//! node: `docker buildx`, the Docker client's built-in BuildKit, or podman.

use std::{fmt, path::Path};

use anyhow::{bail, Result};
use serde::Serialize;

use crate::{arch::Arch, config::EngineChoice, plan::Command};

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

/// Everything a container build needs besides the engine.
pub struct ContainerBuild<'a> {
    pub arch: Arch,
    pub root: &'a Path,
    pub dockerfile: &'a Path,
    pub build_args: Vec<(String, String)>,
    /// The host's CA bundle, handed over as a BuildKit secret (never a layer or build arg).
    pub ca_bundle: Option<&'a Path>,
    pub dest: &'a Path,
}

impl Engine {
    /// Pick the engine for `arch`. Container engines are not probed here yet: `auto` for a
    /// foreign arch means the configured Docker client with built-in BuildKit.
    pub fn resolve(choice: EngineChoice, arch: Arch, host: Option<Arch>, docker: &str, route: Route) -> Result<Engine> {
        let native_possible = host == Some(arch);
        Ok(match choice {
            EngineChoice::Native => Engine::Native,
            EngineChoice::Auto if native_possible || arch.docker_platform().is_none() => Engine::Native,
            EngineChoice::Auto | EngineChoice::Docker => Engine::DockerBuildkit { docker: docker.into(), route },
            EngineChoice::Buildx => Engine::Buildx { docker: docker.into(), builder: None, route },
            EngineChoice::Podman => {
                if route != Route::default() {
                    bail!("podman cannot use a docker context or DOCKER_HOST; remove them from the target or pick engine docker/buildx");
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
                c
            }
            Engine::DockerBuildkit { docker, route } => {
                docker_cmd(docker, route, b.root).env("DOCKER_BUILDKIT", "1").arg("build")
            }
            Engine::Podman { podman } => Command::new(podman.clone(), b.root).args(["build", "--pull=never"]),
        };
        cmd = cmd.args(["--platform", platform, "--network", "host", "--file"]).arg(b.dockerfile);
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
