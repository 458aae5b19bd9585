//! electron-builder's afterPack step, in Rust: refuse an unpacked app built for another arch
//! (an afterPack hook reading the wrong source folder injects ARM services into an x64 app),
//! inject the per-arch service binaries atomically with mode 0755, record what was injected in
//! `resources/python-service/manifest.json`, then verify the whole app.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::layout::AppLayout;
use crate::{arch::Arch, fingerprint::hash_file, fsx};

#[derive(Debug, Serialize)]
pub struct ServicesManifest {
    pub arch: Arch,
    pub version: String,
    pub services: Vec<InjectedService>,
}

#[derive(Debug, Serialize)]
pub struct InjectedService {
    pub service: String,
    pub version: String,
    pub sha256: String,
    pub size: u64,
    pub arch: Arch,
}

/// What the afterpack step needs, resolved from dist.yaml while planning: the step itself
/// reads no config.
#[derive(Clone, Debug, Serialize)]
pub struct Spec {
    pub app: PathBuf,
    pub arch: Arch,
    pub layout: AppLayout,
    /// Service name → the built binary to inject.
    pub services: Vec<(String, PathBuf)>,
    pub version: String,
    /// The glibc floor the whole app is verified against.
    pub glibc: Option<crate::config::GlibcVersion>,
    /// For messages: paths are shown relative to it.
    pub root: PathBuf,
}

pub fn afterpack(spec: &Spec) -> Result<ServicesManifest> {
    let (arch, app, layout) = (spec.arch, &spec.app, &spec.layout);
    if !layout.executable.is_file() {
        bail!(
            "{} is not an unpacked {arch} app: {} is missing (electron-builder --dir writes {})",
            app.display(),
            layout.executable.display(),
            arch.unpacked_dir()
        );
    }
    // The app's own executable must be for the target: injecting ARM services into an x64
    // app (or the reverse) is exactly the mistake this step exists to stop.
    crate::verify::check_release(std::slice::from_ref(&layout.executable), arch, None)
        .with_context(|| format!("{} was not built for {arch}", app.display()))?;

    let dest = layout.services();
    std::fs::create_dir_all(&dest).with_context(|| format!("cannot create {}", dest.display()))?;
    let mut services = Vec::new();
    for (name, from) in &spec.services {
        if !from.is_file() {
            bail!(
                "{} is missing: build it first with `cargo xtask build-services --arch {arch}` (or run `cargo xtask dist --arch {arch}`)",
                fsx::rel(&spec.root, from).display()
            );
        }
        let to = dest.join(name);
        let tmp = fsx::tmp_sibling(&to);
        std::fs::copy(from, &tmp).with_context(|| format!("cannot copy {} to {}", from.display(), tmp.display()))?;
        set_mode_755(&tmp)?;
        std::fs::rename(&tmp, &to).with_context(|| format!("cannot move {} into place", to.display()))?;
        services.push(InjectedService {
            service: name.clone(),
            version: spec.version.clone(),
            sha256: hash_file(&to)?,
            size: std::fs::metadata(&to)?.len(),
            arch,
        });
    }
    let manifest = ServicesManifest { arch, version: spec.version.clone(), services };
    fsx::write_atomic(
        &dest.join("manifest.json"),
        format!("{}\n", serde_json::to_string_pretty(&manifest)?).as_bytes(),
    )?;
    // Then the whole app as it will ship: every ELF, .so and .node, and every library inside
    // the injected one-file services, against the target's glibc floor.
    crate::verify::check_release(std::slice::from_ref(app), arch, spec.glibc)
        .with_context(|| format!("the unpacked app {} cannot ship for {arch}", app.display()))?;
    Ok(manifest)
}

fn set_mode_755(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot chmod {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::verify::tests::common::Fx;

    /// A config whose python-service/dist is in a scratch root, with every service "built".
    fn scratch_config(arch: Arch, service_elf: &Path) -> (tempfile::TempDir, Config) {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let mut config = Config::load(repo).unwrap();
        let d = tempfile::tempdir().unwrap();
        config.root = d.path().to_path_buf();
        let built = config.python_dir().join("dist").join(arch.name());
        std::fs::create_dir_all(&built).unwrap();
        for s in config.dist.services.keys() {
            std::fs::copy(service_elf, built.join(s)).unwrap();
        }
        (d, config)
    }

    fn unpacked_app(dir: &Path, executable: &Path) -> PathBuf {
        let app = dir.join("linux-unpacked");
        std::fs::create_dir_all(app.join("resources")).unwrap();
        std::fs::copy(executable, app.join("kitchntabs")).unwrap();
        app
    }

    #[test]
    fn injects_every_service_with_mode_755_and_a_manifest() {
        let fx = Fx::new();
        let (d, config) = scratch_config(Arch::Arm64, &fx.arm64_dyn());
        let app = unpacked_app(d.path(), &fx.arm64_dyn());
        let manifest = afterpack(&crate::steps::electron::afterpack_spec(
            &config,
            Arch::Arm64,
            &app,
            &config.python_dir().join("dist").join(Arch::Arm64.name()),
        ))
        .unwrap();
        assert_eq!(manifest.services.len(), 3);
        use std::os::unix::fs::PermissionsExt;
        for s in &manifest.services {
            let path = app.join("resources/python-service").join(&s.service);
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o755);
            assert_eq!(s.sha256, hash_file(&path).unwrap());
            assert_eq!(s.size, std::fs::metadata(&path).unwrap().len());
        }
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(app.join("resources/python-service/manifest.json")).unwrap())
                .unwrap();
        assert_eq!(json["arch"], "arm64");
        assert_eq!(json["services"][1]["service"], "print_service");
        assert_eq!(json["services"][1]["version"], config.version.as_str());
        let leftovers: Vec<_> = std::fs::read_dir(app.join("resources/python-service"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn a_library_of_another_arch_in_the_app_stops_the_release() {
        let fx = Fx::new();
        let (d, config) = scratch_config(Arch::Arm64, &fx.arm64_dyn());
        let app = unpacked_app(d.path(), &fx.arm64_dyn());
        // An x64 native module left in an arm64 app (a stale node_modules build).
        std::fs::create_dir_all(app.join("resources/app.asar.unpacked")).unwrap();
        std::fs::copy(fx.x64_node(), app.join("resources/app.asar.unpacked/serial.node")).unwrap();
        let err = format!(
            "{:#}",
            afterpack(&crate::steps::electron::afterpack_spec(
                &config,
                Arch::Arm64,
                &app,
                &config.python_dir().join("dist").join(Arch::Arm64.name())
            ))
            .unwrap_err()
        );
        assert!(err.contains("cannot ship for arm64"), "{err}");
        assert!(err.contains("serial.node"), "{err}");
    }

    #[test]
    fn refuses_an_app_of_another_arch_and_missing_binaries() {
        let fx = Fx::new();
        let (d, config) = scratch_config(Arch::Armv7l, &fx.armhf_dyn());
        // An x64 Electron with armv7l services: an afterPack hook that read the wrong folder.
        let app = unpacked_app(d.path(), &fx.x64_dyn());
        let err = format!(
            "{:#}",
            afterpack(&crate::steps::electron::afterpack_spec(
                &config,
                Arch::Armv7l,
                &app,
                &config.python_dir().join("dist").join(Arch::Armv7l.name())
            ))
            .unwrap_err()
        );
        assert!(err.contains("was not built for armv7l"), "{err}");
        assert!(err.contains("machine"), "{err}");
        assert!(!app.join("resources/python-service/kt_service").exists());

        let app = unpacked_app(&d.path().join("ok"), &fx.armhf_dyn());
        std::fs::remove_file(config.python_dir().join("dist/armv7l/tts_service")).unwrap();
        let err = format!(
            "{:#}",
            afterpack(&crate::steps::electron::afterpack_spec(
                &config,
                Arch::Armv7l,
                &app,
                &config.python_dir().join("dist").join(Arch::Armv7l.name())
            ))
            .unwrap_err()
        );
        assert!(err.contains("python-service/dist/armv7l/tts_service is missing: build it first with `cargo xtask build-services --arch armv7l`"), "{err}");

        let err = format!(
            "{:#}",
            afterpack(&crate::steps::electron::afterpack_spec(
                &config,
                Arch::Armv7l,
                &d.path().join("nope"),
                &config.python_dir().join("dist/armv7l")
            ))
            .unwrap_err()
        );
        assert!(err.contains("is not an unpacked armv7l app"), "{err}");
    }
}
