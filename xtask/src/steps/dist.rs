//! `cargo xtask dist` and `cargo xtask build-services`: config + arch → plan → run.

use anyhow::{Result, bail};

use crate::plan::Header;
use crate::{
    arch::Arch,
    config::{Base, Config, EngineChoice},
    engine::{Engine, NoEngine},
    host::Host,
    layout::Layout,
    plan::{Action, Plan, Step, StepKind},
    prereq::Prereq,
    steps::base_image,
    steps::electron,
    steps::package,
    steps::services,
};

/// What to build, already typed: the command line is turned into this at once.
#[derive(Clone, Debug)]
pub struct Request {
    pub arch: Arch,
    pub env: String,
    /// `--engine`, overriding dist.yaml.
    pub engine: Option<EngineChoice>,
    /// `build-services --service`: only these (all when empty).
    pub services: Vec<String>,
    /// `dist`: go on from the services to the app, the .deb and release/<version>/
    /// (`build-services` stops after the services).
    pub package: bool,
}

/// The engine the plan uses. Where `auto` finds none on this machine, the one it picks first on a
/// machine that has one, and why this machine cannot build: a dry run still shows the whole
/// plan, and the preflight of a real run fails with the reason and the fix.
fn planned_engine(
    config: &Config,
    arch: Arch,
    host: Option<Arch>,
    choice: Option<EngineChoice>,
    tools: &Host,
) -> Result<(Engine, Option<String>)> {
    match crate::engine::engine_for(config, arch, host, choice, tools) {
        Ok(e) => Ok((e, None)),
        Err(e) => match e.downcast::<NoEngine>() {
            Ok(none) => {
                let reason = none.to_string();
                Ok((none.planned.with_builder(config.target(arch)?.builder.clone()), Some(reason)))
            }
            Err(e) => Err(e),
        },
    }
}

/// Compute the whole plan before anything runs.
pub fn plan(config: &Config, req: &Request, host: Option<Arch>, tools: &Host) -> Result<Plan> {
    let (engine, no_engine) = planned_engine(config, req.arch, host, req.engine, tools)?;
    config.env_file(&req.env)?;
    let services = selected_services(config, &req.services)?;
    let layout = Layout::new(config, req.arch, &req.env, tools);

    let mut preflight = Step::new("preflight", "check the host can build this target", StepKind::Preflight);
    preflight.always = true;
    preflight.guard = true;
    // Every check runs and every failure is reported: one run names all that is missing.
    preflight.check_all = true;
    if let Some(reason) = no_engine {
        preflight.actions.push(Action::Fail { reason });
    }
    let mut steps = Vec::new();
    match &engine {
        Engine::Native => {
            if host != Some(req.arch) {
                preflight.actions.push(Action::RequireHost {
                    arch: req.arch,
                    fix: match req.arch.docker_platform() {
                        Some(_) => {
                            format!("use a container engine (`--engine docker`) or build on a {} machine", req.arch)
                        }
                        None => format!(
                            "{} builds only natively: run this on an Apple Silicon Mac (CI's macOS job does)",
                            req.arch
                        ),
                    },
                });
            }
            preflight
                .actions
                .push(Action::Prerequisites { needs: vec![Prereq::python_venv(&config.dist.python.interpreter)] });
            steps.push(preflight);
            steps.push(services::venv_step(config, &layout, tools));
            steps.push(services::stage_step(config, &layout, req.arch, &req.env)?);
            for s in &services {
                steps.push(services::native_service_step(config, &layout, req.arch, &req.env, s, tools)?);
            }
        }
        container => {
            let mut cross =
                services::cross_build_step(config, &layout, req.arch, &req.env, container, tools, &services)?;
            preflight.actions.push(Action::Prerequisites {
                needs: vec![Prereq::container_client(container.program().unwrap_or_default())],
            });
            preflight.actions.push(Action::EngineChecks {
                arch: req.arch,
                engine: container.clone(),
                image: config.base_image(req.arch)?,
            });
            let base_steps = match config.target(req.arch)?.base {
                Base::Debootstrap(suite) => {
                    base_image::add_preflight(&mut preflight);
                    let (base_steps, rootfs) =
                        base_image::steps(&config.root, req.arch, suite, container, &tools.cache)?;
                    cross.values.insert("base_rootfs".into(), rootfs);
                    base_steps
                }
                Base::Image(_) => Vec::new(),
            };
            steps.push(preflight);
            steps.extend(base_steps);
            steps.push(services::stage_step(config, &layout, req.arch, &req.env)?);
            steps.push(cross);
        }
    }
    if req.package {
        let service_steps: Vec<String> = steps
            .iter()
            .filter(|s| matches!(s.kind, StepKind::BuildService { .. } | StepKind::CrossBuild { .. }))
            .map(|s| s.id.clone())
            .collect();
        package_steps(config, req.arch, &layout, tools, &mut steps, service_steps)?;
    }
    let command = if req.package { "dist" } else { "build-services" };
    let header = Header {
        arch: Some(req.arch),
        host,
        env: Some(req.env.clone()),
        engine: Some(engine),
        ..Header::new(command, config)
    };
    Ok(Plan { header, root: config.root.clone(), steps })
}

/// From the built services to release/<version>/: node_modules, electron-builder, afterpack,
/// the .deb, the release record. The preflight (first step) learns what these need.
fn package_steps(
    config: &Config,
    arch: Arch,
    layout: &Layout,
    tools: &Host,
    steps: &mut Vec<Step>,
    service_steps: Vec<String>,
) -> Result<()> {
    let electron_dist = electron::electron_dist(config, arch, tools.electron_dist.as_deref());
    let preflight = &mut steps[0];
    if config.dist.packaging.deb.compression == crate::config::Codec::Zstd && arch.debian_arch().is_some() {
        // zstd members are written by Debian's zstd tool.
        preflight.actions.push(Action::Prerequisites { needs: vec![Prereq::runs("zstd", &["--version"], &["zstd"])] });
    }
    preflight.actions.push(Action::Prerequisites { needs: vec![Prereq::node()] });
    match &electron_dist {
        // A wrong-arch, wrong-version or missing electronDist fails here, not after the service builds.
        Some(dist) => {
            preflight.actions.push(Action::Verify { paths: vec![dist.join("electron")], arch, glibc: None });
            let version = config.app.electron()?.to_string();
            preflight.actions.push(Action::RequireElectronVersion { dist: dist.clone(), version });
        }
        None => preflight.actions.push(Action::RequireElectron {
            zip: crate::electron_source::electron_zip(
                config.app.electron()?,
                arch,
                &crate::electron_source::process_env,
            )?,
            version: config.app.electron()?.to_string(),
        }),
    }
    steps.push(electron::node_modules_step(config, tools.node.as_deref())?);
    steps.push(electron::builder_step(config, arch, electron_dist.as_deref(), tools.node.as_deref()));
    let mut afterpack = electron::afterpack_step(config, arch, &layout.dist);
    afterpack.after.extend(service_steps);
    steps.push(afterpack);
    let epoch = tools.source_date_epoch.clone().map_err(anyhow::Error::msg)?;
    let app = crate::layout::unpacked(&config.root, arch);
    // Linux ships a .deb, macOS the app bundle as a tarball.
    let artifact = if arch.debian_arch().is_some() {
        package::deb_step(config, arch, &app, epoch)?
    } else {
        package::archive_step(config, arch, &app, epoch)
    };
    let record = crate::steps::release::record(
        config,
        tools,
        arch,
        &artifact.outputs[0],
        &layout.dist,
        electron_dist.as_deref(),
    )?;
    let release = crate::steps::release::step(record, &artifact, &config.root);
    steps.push(artifact);
    steps.push(release);
    Ok(())
}

fn selected_services(config: &Config, wanted: &[String]) -> Result<Vec<String>> {
    let all: Vec<String> = config.dist.services.keys().cloned().collect();
    if wanted.is_empty() {
        return Ok(all);
    }
    for w in wanted {
        if !all.contains(w) {
            bail!("--service {w}: no such service in dist.yaml; services are: {}", all.join(", "));
        }
    }
    Ok(all.into_iter().filter(|s| wanted.contains(s)).collect())
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::host::CA_BUNDLE;
    use crate::{engine::Route, plan::Force};

    fn repo_root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
    }

    /// Fixed host facts, so a snapshot says the same on every machine.
    fn tools() -> Host {
        Host {
            python: Some("Python 3.11.7".into()),
            ca_bundle: Some(CA_BUNDLE.into()),
            venv: None,
            docker: None,
            cache: "/var/cache/kitchntabs".into(),
            // Like this machine: a Docker 28 client without buildx ahead of Debian's 20.10.
            path: crate::engine::tests::fake_path(&["new-docker", "buildkit"]),
            electron_dist: Some("/opt/electron/{arch}".into()),
            source_date_epoch: Ok(1_767_323_045),
            node: Some("v20.19.0".into()),
            git: Ok(("0123456789abcdef0123456789abcdef01234567".into(), false)),
        }
    }

    fn request(arch: Arch, engine: Option<EngineChoice>) -> Request {
        Request { arch, env: "prod".into(), engine, services: Vec::new(), package: true }
    }

    fn rendered(req: &Request) -> Result<String> {
        let config = Config::load(&repo_root()).unwrap();
        let plan = plan(&config, req, Some(Arch::X64), &tools())?;
        Ok(plan.render_with(None)?.replace(&repo_root().to_string_lossy().into_owned(), "<root>"))
    }

    /// Every engine × arch, from an x64 host. darwin-arm64 has no container engine.
    #[test]
    fn plan_snapshots_hold_the_exact_commands() {
        let engines = [
            (None, "auto"),
            (Some(EngineChoice::Buildx), "buildx"),
            (Some(EngineChoice::Docker), "docker"),
            (Some(EngineChoice::Podman), "podman"),
        ];
        for arch in Arch::ALL {
            for (choice, name) in engines {
                match rendered(&request(arch, choice)) {
                    Ok(text) => crate::snapshot::assert_snapshot(&format!("dist-{arch}-{name}"), &text),
                    Err(e) => {
                        assert_eq!(arch, Arch::DarwinArm64, "{arch} with {name}: {e:#}");
                        assert!(e.to_string().contains("builds natively on its own host"), "{e:#}");
                    }
                }
            }
        }
    }

    #[test]
    fn plan_json_has_typed_steps_and_commands() {
        let config = Config::load(&repo_root()).unwrap();
        let plan = plan(&config, &request(Arch::Armv7l, None), Some(Arch::X64), &tools()).unwrap();
        let json = plan.to_json_value(Some(&Force::None)).unwrap();
        assert_eq!(json["arch"], "armv7l");
        assert_eq!(json["engine"]["engine"], "docker");
        let steps = json["steps"].as_array().unwrap();
        let kinds: Vec<_> = steps.iter().map(|s| s["kind"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "preflight",
                "rootfs",
                "base_image",
                "stage_config",
                "cross_build",
                "node_modules",
                "electron_builder",
                "afterpack",
                "deb",
                "release"
            ]
        );
        assert_eq!(steps[8]["file"], format!("kitchntabs_{}_armhf.deb", config.version));
        assert_eq!(steps[7]["after"], serde_json::json!(["electron-builder", "cross-build"]));
        let cross = &steps[4];
        assert_eq!(cross["services"], serde_json::json!(["kt_service", "print_service", "tts_service"]));
        let build = cross["actions"].as_array().unwrap().iter().find(|a| a["action"] == "cross_build").unwrap();
        let run = &build["all"];
        assert_eq!(run["env"], serde_json::json!([["DOCKER_BUILDKIT", "1"]]));
        // The repack's analysis: the base image's python3 under QEMU, sources read-only, no network.
        let analysis: Vec<_> = build["repack"]["analysis"]["command"]["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        let tail = analysis.iter().position(|a| *a == "--rm").unwrap();
        let py = config.python_dir().to_string_lossy().into_owned();
        let scratch = config.root.join("target/xtask/tmp/armv7l/repack").to_string_lossy().into_owned();
        assert_eq!(
            analysis[tail..analysis.len() - 1],
            [
                "--rm",
                "--platform",
                "linux/arm/v7",
                "--network",
                "none",
                "--volume",
                &format!("{py}:/src:ro"),
                "--volume",
                &format!("{scratch}:/work"),
                "--env",
                "PYTHONHASHSEED=0",
                "kitchntabs-build-base:bookworm-armv7l",
                "python3",
                "/work/repack_tool.py"
            ]
        );
        let jobs: serde_json::Value = serde_json::from_str(analysis.last().unwrap()).unwrap();
        assert_eq!(
            jobs[1],
            serde_json::json!(["/src/src/print_service.py", "print_service", "/work/print_service.script"])
        );
        assert_eq!(build["objcopy"]["program"], "arm-linux-gnueabihf-objcopy");
        let each: Vec<_> = build["each"].as_array().unwrap().iter().map(|c| c["args"][6].as_str().unwrap()).collect();
        assert_eq!(each, ["export-service-kt_service", "export-service-print_service", "export-service-tts_service"]);
        let args: Vec<_> = run["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
        assert_eq!(&args[..3], ["build", "--platform", "linux/arm/v7"]);
        assert!(args.contains(&"REQUIREMENTS=requirements-armv7l.txt"), "{args:?}");
        assert!(args.contains(&"id=cacert,src=/etc/ssl/certs/ca-certificates.crt"), "{args:?}");
    }

    #[test]
    fn native_plan_builds_each_service_in_its_own_step() {
        let config = Config::load(&repo_root()).unwrap();
        let plan = plan(&config, &request(Arch::X64, None), Some(Arch::X64), &tools()).unwrap();
        let ids: Vec<_> = plan.steps.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "preflight",
                "venv",
                "stage",
                "kt_service",
                "print_service",
                "tts_service",
                "node-modules",
                "electron-builder",
                "afterpack",
                "deb",
                "release"
            ]
        );
        // Each service's own entry script is an input of its step alone.
        for s in &plan.steps[3..6] {
            let entries: Vec<_> = s.inputs.iter().filter(|p| p.extension().is_some_and(|e| e == "py")).collect();
            assert_eq!(entries, [&config.python_dir().join(format!("src/{}.py", s.id))]);
        }
    }

    #[test]
    fn engine_override_and_routes_reach_the_command() {
        let mut config = Config::load(&repo_root()).unwrap();
        let t = config.dist.targets.get_mut(&Arch::Arm64).unwrap();
        t.docker_host = Some("ssh://builder@arm64-node".into());
        t.builder = Some("kt-builder".into());
        let p = plan(&config, &request(Arch::Arm64, Some(EngineChoice::Buildx)), Some(Arch::X64), &tools()).unwrap();
        let text = p.render_with(None).unwrap();
        assert!(
            text.contains("engine buildx (docker buildx, builder kt-builder, DOCKER_HOST=ssh://builder@arm64-node)"),
            "{text}"
        );
        assert!(
            text.contains(
                "DOCKER_HOST=ssh://builder@arm64-node docker buildx build --builder kt-builder --platform linux/arm64"
            ),
            "{text}"
        );

        // DOCKER names a client with BuildKit built in (a fake one: no unit test needs Docker).
        let mut tools = tools();
        let docker = crate::engine::tests::fixture("buildkit", "docker");
        tools.docker = Some(docker.clone());
        let p = plan(&config, &request(Arch::Armv7l, None), Some(Arch::X64), &tools).unwrap();
        let text = p.render_with(None).unwrap();
        assert!(text.contains(&format!("DOCKER_BUILDKIT=1 {docker} build --platform linux/arm/v7")), "{text}");
    }

    #[test]
    fn without_any_engine_the_plan_is_whole_and_its_preflight_fails_with_the_fix() {
        let config = Config::load(&repo_root()).unwrap();
        let mut tools = tools();
        // Only a Docker 28 client without buildx: nothing on this PATH can build armv7l.
        tools.path = crate::engine::tests::fake_path(&["new-docker"]);
        let p = plan(&config, &request(Arch::Armv7l, None), Some(Arch::X64), &tools).unwrap();
        // The engine `auto` picks first on a machine that has one.
        assert_eq!(
            p.header.engine,
            Some(Engine::Buildx { docker: "docker".into(), builder: None, route: Route::default() })
        );
        let ids: Vec<_> = p.steps.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "preflight",
                "rootfs",
                "base-image",
                "stage",
                "cross-build",
                "node-modules",
                "electron-builder",
                "afterpack",
                "deb",
                "release"
            ]
        );
        let Action::Fail { reason } = &p.steps[0].actions[0] else { panic!("{:?}", p.steps[0].actions) };
        assert!(reason.contains("no container engine can build armv7l"), "{reason}");
        assert!(reason.contains("is Docker 28 without the buildx plugin"), "{reason}");
        assert!(reason.contains("fix: install Docker with the buildx plugin"), "{reason}");
        let text = p.render_with(None).unwrap();
        assert!(text.contains("[1/10] preflight — check the host can build this target  (will fail on this machine)"));
        assert!(text.contains("docker buildx build --platform linux/arm/v7"), "{text}");
        // An explicit engine is taken as given: nothing to fail at planning.
        let p = plan(&config, &request(Arch::Armv7l, Some(EngineChoice::Docker)), Some(Arch::X64), &tools).unwrap();
        assert!(!p.steps[0].actions.iter().any(|a| matches!(a, Action::Fail { .. })));
    }

    #[test]
    fn a_targets_own_requirements_apply_to_native_builds_too() {
        let mut config = Config::load(&repo_root()).unwrap();
        config.dist.targets.get_mut(&Arch::X64).unwrap().requirements = Some("requirements-armv7l.txt".into());
        let p = plan(&config, &request(Arch::X64, None), Some(Arch::X64), &tools()).unwrap();
        let pins = config.python_dir().join("requirements-armv7l.txt");
        let plain = config.python_dir().join("requirements.txt");
        for id in ["venv", "kt_service", "print_service", "tts_service"] {
            let step = p.steps.iter().find(|s| s.id == id).unwrap();
            assert!(step.inputs.contains(&pins), "{id}: {:?}", step.inputs);
            assert!(!step.inputs.contains(&plain), "{id} still reads python.requirements: {:?}", step.inputs);
        }
        let venv = p.steps.iter().find(|s| s.id == "venv").unwrap();
        let Action::Run(pip) = &venv.actions[1] else { panic!("{:?}", venv.actions) };
        assert!(pip.args.contains(&pins.to_string_lossy().into_owned()), "{:?}", pip.args);
    }

    #[test]
    fn unknown_service_env_and_force_step_are_refused_with_the_choices() {
        let config = Config::load(&repo_root()).unwrap();
        let mut req = request(Arch::X64, None);
        req.services = vec!["scanner".into()];
        let err = plan(&config, &req, Some(Arch::X64), &tools()).unwrap_err().to_string();
        assert_eq!(
            err,
            "--service scanner: no such service in dist.yaml; services are: kt_service, print_service, tts_service"
        );
        let mut req = request(Arch::X64, None);
        req.env = "staging".into();
        let err = plan(&config, &req, Some(Arch::X64), &tools()).unwrap_err().to_string();
        assert_eq!(err, "unknown env `staging`, expected one of default, ngrok, prod (dist.yaml: envs)");
    }

    #[test]
    fn build_services_filters_to_the_named_service_and_stops_there() {
        let config = Config::load(&repo_root()).unwrap();
        let mut req = request(Arch::X64, None);
        req.services = vec!["tts_service".into()];
        req.package = false;
        let plan = plan(&config, &req, Some(Arch::X64), &tools()).unwrap();
        let ids: Vec<_> = plan.steps.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["preflight", "venv", "stage", "tts_service"]);
    }

    #[test]
    fn a_wrong_arch_electron_dist_is_checked_before_the_builds() {
        let config = Config::load(&repo_root()).unwrap();
        let p = plan(&config, &request(Arch::Armv7l, None), Some(Arch::X64), &tools()).unwrap();
        let text = p.render_with(None).unwrap();
        assert!(text.contains("verify /opt/electron/armv7l/electron runs on armv7l"), "{text}");
        let mut tools = tools();
        tools.electron_dist = None;
        let text =
            plan(&config, &request(Arch::Armv7l, None), Some(Arch::X64), &tools).unwrap().render_with(None).unwrap();
        assert!(
            text.contains(
                "require electron-v43.8.11-linux-armv7l.zip in electron-builder's cache, or the ELECTRON_MIRROR or github.com host answering"
            ),
            "{text}"
        );
        assert!(!text.contains("KT_ELECTRON_DIST="), "{text}");
        tools.source_date_epoch = Err("not a git checkout".into());
        let err = plan(&config, &request(Arch::Armv7l, None), Some(Arch::X64), &tools).unwrap_err();
        assert_eq!(err.to_string(), "not a git checkout");
    }
}
