//! The Electron half of `dist`: node_modules, electron-builder's unpacked app, and the
//! afterPack step (services injected, the whole app verified).

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::layout::app_dir;
use crate::layout::unpacked;
use crate::{
    arch::Arch,
    config::Config,
    plan::{Action, Step, StepKind},
    process::Command,
};

/// The unpacked Electron electron-builder packs from: KT_ELECTRON_DIST, else dist.yaml's
/// `electron.dist` with `{arch}` filled in (relative to the repository root), else none
/// (electron-builder downloads it).
pub fn electron_dist(config: &Config, arch: Arch, env: Option<&str>) -> Option<PathBuf> {
    let raw = match env.filter(|e| !e.is_empty()) {
        Some(e) => e,
        None => config.dist.electron.dist.as_deref()?,
    };
    Some(config.root.join(raw.replace("{arch}", arch.name())))
}

/// `pnpm install --frozen-lockfile` in electron-app/, only when the manifest or lockfile
/// changed; pnpm itself (the version `packageManager` pins) from npm when it is missing.
/// Electron's binary download is skipped: electron-builder takes Electron from electronDist
/// or its own cache, never from node_modules.
pub fn node_modules_step(config: &Config, node: Option<&str>) -> Result<Step> {
    let app = app_dir(&config.root);
    let pnpm = config.app.pnpm()?;
    let mut s = Step::new("node-modules", "install electron-app/node_modules (pnpm)", StepKind::NodeModules);
    s.inputs = ["package.json", "pnpm-lock.yaml", "pnpm-workspace.yaml"].iter().map(|f| app.join(f)).collect();
    s.values.insert("node".into(), node.unwrap_or("missing").into());
    s.outputs.push(app.join("node_modules/.modules.yaml"));
    s.actions.push(Action::EnsureNpmTool { tool: "pnpm".into(), package: pnpm.into() });
    s.actions.push(Action::Run(
        Command::new("pnpm", &app).args(["install", "--frozen-lockfile"]).env("ELECTRON_SKIP_BINARY_DOWNLOAD", "1"),
    ));
    Ok(s)
}

/// `electron-builder --linux dir --armv7l`: the unpacked app, without the services (dist
/// runs afterpack itself next, so the shim is switched off with KT_SKIP_AFTERPACK=1).
pub fn builder_step(config: &Config, arch: Arch, electron_dist: Option<&Path>, node: Option<&str>) -> Step {
    let root = &config.root;
    let app = app_dir(root);
    let out = unpacked(root, arch);
    let mut s = Step::new(
        "electron-builder",
        format!("electron-builder: unpacked {} app", arch),
        StepKind::ElectronBuilder { unpacked: arch.unpacked_dir().into() },
    );
    s.after.push("node-modules".into());
    s.inputs = ["src", "renderer", "package.json", "pnpm-lock.yaml", "electron-builder.config.js"]
        .iter()
        .map(|f| app.join(f))
        .collect();
    if let Some(dist) = electron_dist {
        s.inputs.push(dist.to_path_buf());
    }
    s.values.insert("node".into(), node.unwrap_or("missing").into());
    s.outputs.push(out.join(executable(config, arch)));
    let flags = arch.electron_builder_flags();
    let mut cmd = Command::new(app.join("node_modules/.bin/electron-builder").to_string_lossy(), &app)
        .args(["--config", "electron-builder.config.js", flags[0], "dir", flags[1], "--publish", "never"])
        .env("KT_SKIP_AFTERPACK", "1");
    if let Some(dist) = electron_dist {
        cmd = cmd.env(crate::host::ELECTRON_DIST_ENV, dist.to_string_lossy());
    }
    s.actions.push(Action::Run(cmd));
    s
}

/// The app's executable inside the unpacked dir (electron-builder's `executableName`).
fn executable(config: &Config, arch: Arch) -> PathBuf {
    crate::layout::AppLayout::new(config, arch, Path::new("")).executable
}

/// afterpack in Rust: the unpacked app is for the target, the services go in 0755 with their
/// manifest, then the whole app is verified against the target's glibc floor.
pub fn afterpack_step(config: &Config, arch: Arch, services_dir: &Path) -> Step {
    let app = unpacked(&config.root, arch);
    let layout = crate::layout::AppLayout::new(config, arch, &app);
    let mut s = Step::new("afterpack", "inject the services into the app, verify the app", StepKind::Afterpack);
    s.after.push("electron-builder".into());
    s.inputs.push(layout.executable.clone());
    s.inputs.push(layout.resources.join("app.asar"));
    for name in config.dist.services.keys() {
        s.inputs.push(services_dir.join(name));
        s.outputs.push(layout.services().join(name));
    }
    s.outputs.push(layout.services().join("manifest.json"));
    s.values.insert("version".into(), config.version.clone());
    s.actions.push(Action::Afterpack(Box::new(afterpack_spec(config, arch, &app, services_dir))));
    s
}

/// The services come from `built` (`python-service/dist/<arch>/`).
pub fn afterpack_spec(config: &Config, arch: Arch, app: &Path, built: &Path) -> crate::afterpack::Spec {
    crate::afterpack::Spec {
        app: app.to_path_buf(),
        arch,
        layout: crate::layout::AppLayout::new(config, arch, app),
        services: config.dist.services.keys().map(|n| (n.clone(), built.join(n))).collect(),
        version: config.version.clone(),
        glibc: config.dist.targets.get(&arch).and_then(|t| t.glibc),
        root: config.root.clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::{host::Host, plan, steps::dist};

    fn stand_in(dir: &Path, version: Option<&str>) -> PathBuf {
        let dist = dir.join("electron-x64");
        std::fs::create_dir_all(&dist).unwrap();
        if let Some(v) = version {
            std::fs::write(dist.join("version"), v).unwrap();
        }
        dist
    }

    /// The preflight's Electron checks alone (the others probe this machine), run as dist runs them.
    fn electron_preflight(root: &Path, electron_dist: &Path) -> Result<()> {
        let config = Config::load(root).unwrap();
        let req =
            dist::Request { arch: Arch::X64, env: "prod".into(), engine: None, services: Vec::new(), package: true };
        let tools = Host::fixed(&electron_dist.to_string_lossy());
        let mut p = dist::plan(&config, &req, Some(Arch::X64), &tools).unwrap();
        p.steps.truncate(1);
        let preflight = &mut p.steps[0];
        assert_eq!(preflight.id, "preflight");
        // Alone in the plan: no other step for it to guard.
        preflight.guard = false;
        preflight.actions.retain(|a| {
            !matches!(
                a,
                plan::Action::Prerequisites { .. }
                    | plan::Action::EngineChecks { .. }
                    | plan::Action::Fail { .. }
                    | plan::Action::RequireHost { .. }
                    | plan::Action::RequireElectron { .. }
                    | plan::Action::Verify { .. }
            )
        });
        plan::run(&p, &plan::RunOptions { force: plan::Force::None, verbose: false, keep_going: false }).map(drop)
    }

    #[test]
    fn dist_preflight_refuses_an_electron_dist_that_is_not_the_pinned_electron() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let d = tempfile::tempdir().unwrap();
        // A stand-in of another version, before any build.
        let dist = stand_in(d.path(), Some("42.0.0"));
        let err = format!("{:#}", electron_preflight(root, &dist).unwrap_err());
        assert!(err.contains("step `preflight` failed"), "{err}");
        assert!(
            err.contains(&format!(
                "{} says Electron 42.0.0, but electron-app/package.json devDependencies.electron pins 43.8.11",
                dist.join("version").display()
            )),
            "{err}"
        );
        // No version file: not an unpacked Electron.
        std::fs::remove_file(dist.join("version")).unwrap();
        let err = format!("{:#}", electron_preflight(root, &dist).unwrap_err());
        assert!(err.contains(&format!("{} is missing", dist.join("version").display())), "{err}");
        std::fs::write(dist.join("version"), "43.8.11").unwrap();
        electron_preflight(root, &dist).unwrap();
    }
}
