//! The steps that turn `python-service/` into one-file executables for one arch:
//! venv (native only), staged config, then PyInstaller per service (native) or one container
//! build of all services (cross).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::layout::Layout;
use crate::{
    arch::Arch,
    config::{Base, Config},
    engine::{ContainerBuild, Engine},
    host::Host,
    plan::{Action, Step, StepKind},
    process::Command,
    pyi_repack::{Analysis, CrossBuild, Objcopy, Repack, Service, ServiceBuild},
    steps::service_stages::{self, Paths},
};

/// `python3 -m venv` then `pip install -r ...`, only when the requirements or the interpreter
/// changed. The venv is synced in place rather than rebuilt and renamed (venvs are not
/// relocatable); an interrupted sync writes no stamp, so the next run syncs again.
/// The runtime pins are the target's own when dist.yaml gives them (`targets.<arch>.requirements`).
pub fn venv_step(config: &Config, layout: &Layout, tools: &Host) -> Step {
    let py = &config.dist.python;
    let dir = config.python_dir();
    let mut step =
        Step::new("venv", format!("sync {}", crate::fsx::rel(&layout.root, &layout.venv).display()), StepKind::Venv);
    let requirements =
        [config.requirements_for(layout.arch), py.build_requirements.clone(), py.dev_requirements.clone()];
    step.inputs = requirements.iter().map(|r| dir.join(r)).collect();
    step.values.insert("python".into(), tools.python.clone().unwrap_or_else(|| "missing".into()));
    step.outputs.push(layout.venv_python());
    step.actions
        .push(Action::Run(Command::new(py.interpreter.clone(), &layout.root).args(["-m", "venv"]).arg(&layout.venv)));
    let mut pip = Command::new(layout.venv_python().to_string_lossy(), &layout.root).args([
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--require-virtualenv",
        "--quiet",
    ]);
    for r in &requirements {
        pip = pip.arg("-r").arg(dir.join(r));
    }
    step.actions.push(Action::Run(pip));
    step
}

/// The build info every binary carries (`--version` prints it). No commit hash: that would
/// rebuild every service on every commit.
pub fn build_info(config: &Config, arch: Arch, env: &str) -> String {
    let info = serde_json::json!({ "version": config.version, "env": env, "arch": arch.name() });
    serde_json::to_string(&info).expect("static JSON")
}

pub fn stage_step(config: &Config, layout: &Layout, arch: Arch, env: &str) -> Result<Step> {
    let src = config.python_dir().join(config.env_file(env)?);
    let mut step = Step::new("stage", format!("stage config for env {env}"), StepKind::StageConfig { env: env.into() });
    step.inputs.push(src.clone());
    let info = build_info(config, arch, env);
    step.values.insert("build_info".into(), info.clone());
    step.outputs = vec![layout.stage.join("config.yaml"), layout.stage.join("build-info.json")];
    step.actions.push(Action::CopyFile { from: src, to: layout.stage.join("config.yaml") });
    step.actions.push(Action::WriteFile { path: layout.stage.join("build-info.json"), contents: info });
    Ok(step)
}

/// Inputs every service build shares: the shared code, the chosen env's config and the
/// requirements that decide what gets bundled.
fn shared_inputs(config: &Config, env: &str, requirements: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let dir = config.python_dir();
    let mut inputs: Vec<PathBuf> = config.dist.shared_sources.iter().map(|p| dir.join(p)).collect();
    inputs.push(dir.join(config.env_file(env)?));
    inputs.extend(requirements.iter().map(|r| dir.join(r)));
    Ok(inputs)
}

/// One PyInstaller one-file build on this host. Its inputs are the sources, not the staged
/// copies, so whether it is up to date is known before anything runs.
pub fn native_service_step(
    config: &Config,
    layout: &Layout,
    arch: Arch,
    env: &str,
    service: &str,
    tools: &Host,
) -> Result<Step> {
    let svc = &config.dist.services[service];
    let dir = config.python_dir();
    let tmp = layout.tmp.join(service);
    let work = layout.work.join(service);
    let mut step = Step::new(
        service,
        format!("build {service} (native {arch})"),
        StepKind::BuildService { service: service.into() },
    );
    // The services share nothing but their inputs: build them side by side.
    step.parallel = true;
    step.inputs.push(dir.join(&svc.entry));
    step.inputs.extend(service_stages::beside_modules(config, service)?.iter().map(|m| dir.join(m)));
    step.inputs.extend(svc.add_data.iter().map(|d| dir.join(&d.src)));
    let py = &config.dist.python;
    step.inputs.extend(shared_inputs(config, env, &[config.requirements_for(arch), py.build_requirements.clone()])?);
    step.values.insert("build_info".into(), build_info(config, arch, env));
    step.values.insert("python".into(), tools.python.clone().unwrap_or_else(|| "missing".into()));
    step.outputs.push(layout.binary(service));

    let mut args = service_stages::pyinstaller_args(config, service, &Paths { python: &dir, stage: &layout.stage });
    let entry = args.pop().expect("the entry script is the last argument");
    let cmd = Command::new(layout.venv_python().to_string_lossy(), &layout.root)
        .env("PYTHONHASHSEED", service_stages::PYTHONHASHSEED)
        // PyInstaller caches processed binaries here only when it strips, UPX-packs or signs
        // them.
        .env("PYINSTALLER_CONFIG_DIR", layout.pyinstaller_cache.join(service).to_string_lossy())
        .args(["-m", "PyInstaller"])
        .args(args)
        // Empties the work folder and that cache first. The work folder's compiled modules
        // are reused by mtime and size alone, so a same-size edit with its mtime put back
        // (`cp -p`, `rsync -t`, `tar -x`) would ship the old code; this step only runs
        // PyInstaller when an input changed or it is forced. A warm folder saved 9 s of 53 on an
        // edit (BENCHMARKS.md): the analysis and the level-9 CArchive are redone anyway.
        .arg("--clean")
        .arg("--distpath")
        .arg(&tmp)
        .arg("--workpath")
        .arg(&work)
        .arg("--specpath")
        .arg(&work)
        .arg(entry);

    step.actions.push(Action::Clean { path: tmp.clone() });
    if arch.os() == crate::arch::Os::Linux {
        // On Linux the archive is an ELF section objcopy swaps; a macOS binary is signed.
        let script = dir.join(&svc.entry);
        let service = Service {
            name: service.into(),
            inputs: step.inputs.iter().filter(|p| **p != script).cloned().collect(),
            values: step.values.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            script,
            compiled: tmp.join(format!("{service}.script")),
            out: tmp.join(service),
            previous: layout.binary(service),
            record: work.join("repack.json"),
        };
        let python = Command::new(layout.venv_python().to_string_lossy(), &layout.root)
            .env("PYTHONHASHSEED", service_stages::PYTHONHASHSEED);
        let host_path = |p: &Path| p.to_string_lossy().into_owned();
        let tool = tmp.join("repack_tool.py");
        let analysis = Analysis::new(python, tool, std::slice::from_ref(&service), &host_path, None);
        let objcopy = Objcopy { program: "objcopy".into(), package: "binutils".into() };
        let build = ServiceBuild { service, analysis, objcopy, pyinstaller: cmd, root: layout.root.clone() };
        step.actions.push(Action::BuildService(Box::new(build)));
    } else {
        step.actions.push(Action::Run(cmd));
    }
    // Verified before it is installed: a binary that cannot run never reaches dist/.
    step.actions.push(Action::Verify { paths: vec![tmp.join(service)], arch, glibc: config.target(arch)?.glibc });
    step.actions.push(Action::Install { from: tmp.join(service), to: layout.binary(service), executable: true });
    step.actions.push(Action::Clean { path: tmp });
    Ok(step)
}

/// All services for a foreign arch in one container build of the Dockerfile generated from
/// dist.yaml (`docker/Dockerfile.services`, then one stage per service): BuildKit runs the
/// service stages in parallel and caches each on its own inputs.
pub fn cross_build_step(
    config: &Config,
    layout: &Layout,
    arch: Arch,
    env: &str,
    engine: &Engine,
    tools: &Host,
    services: &[String],
) -> Result<Step> {
    let target = config.target(arch)?;
    let dir = config.python_dir();
    let rel = |p: &Path| crate::fsx::rel(&layout.root, p).to_string_lossy().into_owned();
    let py = &config.dist.python;
    let requirements = config.requirements_for(arch);
    let tmp = layout.tmp.join("services");
    let fixed_path = layout.root.join(&config.dist.docker.dockerfile);
    let fixed = std::fs::read_to_string(&fixed_path)
        .with_context(|| format!("cannot read {} (dist.yaml docker.dockerfile)", fixed_path.display()))?;
    let (dockerfile_text, copied) = service_stages::dockerfile(config, &fixed)?;
    let generated = layout.root.join("target/xtask/docker/Dockerfile.services");
    // BuildKit reads `<Dockerfile>.dockerignore` beside the Dockerfile (podman gets --ignorefile).
    let ignore = layout.root.join("target/xtask/docker/Dockerfile.services.dockerignore");

    let mut step = Step::new(
        "cross-build",
        format!("build {} for {arch} ({engine})", services.join(", ")),
        StepKind::CrossBuild { services: services.to_vec() },
    );
    step.inputs.push(fixed_path.clone());
    // Listed once per service: the step's inputs and each service's repack key use them.
    let beside: Vec<Vec<PathBuf>> = services
        .iter()
        .map(|s| Ok(service_stages::beside_modules(config, s)?.iter().map(|m| dir.join(m)).collect()))
        .collect::<Result<_>>()?;
    for (s, modules) in services.iter().zip(&beside) {
        let svc = &config.dist.services[s];
        step.inputs.push(dir.join(&svc.entry));
        step.inputs.extend(modules.iter().cloned());
        step.inputs.extend(svc.add_data.iter().map(|d| dir.join(&d.src)));
    }
    step.inputs.sort();
    step.inputs.dedup();
    step.inputs.extend(shared_inputs(config, env, &[requirements.clone(), py.build_requirements.clone()])?);
    step.values.insert("build_info".into(), build_info(config, arch, env));
    step.outputs = services.iter().map(|s| layout.binary(s)).collect();

    let base = config.base_image(arch)?;
    step.values.insert("base".into(), target.base.to_string());
    let build = ContainerBuild {
        arch,
        root: &layout.root,
        dockerfile: &generated,
        ignore_file: Some(&ignore),
        // All services: the stage that exports them all (built in parallel); one: its own.
        target: match services {
            [one] if config.dist.services.len() > 1 => format!("export-{}", service_stages::stage_name(one)),
            _ => "export".into(),
        },
        build_args: vec![
            ("BASE_IMAGE".into(), base.clone()),
            ("REQUIREMENTS".into(), requirements.to_string_lossy().into_owned()),
            ("BUILD_REQUIREMENTS".into(), py.build_requirements.to_string_lossy().into_owned()),
            ("STAGE".into(), rel(&layout.stage)),
        ],
        ca_bundle: tools.ca_bundle.as_deref(),
        dest: &tmp,
    };
    let all = engine.container_build(&build).expect("cross builds use a container engine");
    let each = services
        .iter()
        .map(|s| {
            let target = format!("export-{}", service_stages::stage_name(s));
            engine.container_build(&ContainerBuild { target, ..build.clone() }).expect("a container engine")
        })
        .collect();
    let root = layout.root.to_string_lossy();
    let values = vec![
        ("dockerfile".to_string(), dockerfile_text.clone()),
        ("build".to_string(), all.shell_line().replace(root.as_ref(), "<root>")),
    ];
    let scratch = layout.tmp.join("repack");
    let built = services
        .iter()
        .zip(&beside)
        .map(|(s, modules)| {
            let svc = &config.dist.services[s];
            let mut inputs = vec![fixed_path.clone()];
            inputs.extend(modules.iter().cloned());
            inputs.extend(svc.add_data.iter().map(|d| dir.join(&d.src)));
            inputs.extend(shared_inputs(config, env, &[requirements.clone(), py.build_requirements.clone()])?);
            Ok(Service {
                name: s.clone(),
                script: dir.join(&svc.entry),
                compiled: scratch.join(format!("{s}.script")),
                out: tmp.join(s),
                previous: layout.binary(s),
                record: layout.work.join(s).join("repack.json"),
                inputs,
                values: step.values.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let repack = cross_analysis(&built, arch, &base, &target.base, engine, &dir, &scratch, layout);
    let triplet = arch.gnu_triplet().expect("a container target is a Linux arch");
    let cross = CrossBuild {
        services: built,
        repack,
        objcopy: Objcopy { program: format!("{triplet}-objcopy"), package: format!("binutils-{triplet}") },
        all,
        each,
        values,
        root: layout.root.clone(),
    };
    step.actions.push(Action::WriteFile { path: generated.clone(), contents: dockerfile_text });
    step.actions.push(Action::WriteFile {
        path: ignore.clone(),
        contents: service_stages::dockerignore(config, &copied, &rel(&layout.root.join("target/xtask/stage"))),
    });
    step.actions.push(Action::Clean { path: tmp.clone() });
    step.actions.push(Action::Clean { path: scratch.clone() });
    step.actions.push(Action::CrossBuild(Box::new(cross)));
    step.actions.push(Action::Verify {
        paths: services.iter().map(|s| tmp.join(s)).collect(),
        arch,
        glibc: target.glibc,
    });
    for s in services {
        step.actions.push(Action::Install { from: tmp.join(s), to: layout.binary(s), executable: true });
    }
    step.actions.push(Action::Clean { path: tmp });
    step.actions.push(Action::Clean { path: scratch });
    Ok(step)
}

/// How a container build analyses its services' scripts for a repack: `python3` of the base
/// image under QEMU, with `python.dir` at /src and the scratch folder at /work; refused, with
/// the reason, where a repack could not vouch for its bytes.
#[allow(clippy::too_many_arguments)]
fn cross_analysis(
    services: &[Service],
    arch: Arch,
    image: &str,
    base: &Base,
    engine: &Engine,
    python_dir: &Path,
    scratch: &Path,
    layout: &Layout,
) -> Repack {
    // A tag such as python:3.11-slim-bookworm can move between two builds: BuildKit then
    // builds on the new image while a repack would keep the old one's files.
    if let Base::Image(i) = base
        && !i.contains("@sha256:")
    {
        return Repack::Refused(format!(
            "the base image `{i}` is a tag that can move; pin it by digest (`@sha256:`) or use `base: debootstrap:`"
        ));
    }
    let platform = arch.docker_platform().expect("a container target has a platform");
    let mounts = [(python_dir, "/src", true), (scratch, "/work", false)];
    let seed = [("PYTHONHASHSEED", service_stages::PYTHONHASHSEED)];
    let Some(python) = engine.python_in_image(platform, image, &mounts, &seed, &layout.root) else {
        return Repack::Refused(format!(
            "the builds run on another machine ({engine}), which cannot see this one's files"
        ));
    };
    let path = |p: &Path| {
        for (host, inside, _) in &mounts {
            if let Ok(rest) = p.strip_prefix(host) {
                return Path::new(inside).join(rest).to_string_lossy().into_owned();
            }
        }
        p.to_string_lossy().into_owned()
    };
    let image_id = engine.image_id(image, &layout.root);
    Repack::By(Analysis::new(python, scratch.join("repack_tool.py"), services, &path, image_id))
}
