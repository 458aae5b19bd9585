//! Every path a build reads or writes, derived in one place from the checkout, dist.yaml and
//! the host: the staged config, the service binaries, PyInstaller's work folders, the unpacked
//! app and its resources, `release/<version>/` and the artifacts' names.

use std::path::{Path, PathBuf};

use crate::{
    arch::{Arch, Os},
    config::Config,
    host::Host,
};

/// Where a build for one arch and env reads and writes.
pub struct Layout {
    pub root: PathBuf,
    pub arch: Arch,
    pub venv: PathBuf,
    /// `target/xtask/stage/<arch>-<env>`: config.yaml and build-info.json to bundle.
    pub stage: PathBuf,
    /// Finished binaries: `python-service/dist/<arch>/`.
    pub dist: PathBuf,
    /// Per-run scratch under `target/xtask/tmp/<arch>/`.
    pub tmp: PathBuf,
    /// PyInstaller's work and spec folders, kept between runs for its own caching.
    pub work: PathBuf,
    /// PyInstaller's own cache (`PYINSTALLER_CONFIG_DIR`: processed binaries), one folder per
    /// service below it, kept between runs.
    pub pyinstaller_cache: PathBuf,
}

impl Layout {
    pub fn new(config: &Config, arch: Arch, env: &str, tools: &Host) -> Layout {
        let root = config.root.clone();
        let py = config.python_dir();
        Layout {
            venv: tools.venv.clone().unwrap_or_else(|| py.join(".venv")),
            stage: root.join("target/xtask/stage").join(format!("{arch}-{env}")),
            dist: py.join("dist").join(arch.name()),
            tmp: root.join("target/xtask/tmp").join(arch.name()),
            work: root.join("target/xtask/pyinstaller").join(arch.name()),
            pyinstaller_cache: root.join("target/xtask/pyinstaller-cache").join(arch.name()),
            arch,
            root,
        }
    }

    pub fn venv_python(&self) -> PathBuf {
        self.venv.join("bin/python")
    }

    pub fn binary(&self, service: &str) -> PathBuf {
        self.dist.join(service)
    }
}

/// `electron-app/`: the Electron project.
pub fn app_dir(root: &Path) -> PathBuf {
    root.join("electron-app")
}

/// electron-builder's output for `arch`: `electron-app/release/<unpacked dir>`.
pub fn unpacked(root: &Path, arch: Arch) -> PathBuf {
    app_dir(root).join("release").join(arch.unpacked_dir())
}

/// `release/<version>/`: where every artifact of a version is gathered.
pub fn release_dir(config: &Config) -> PathBuf {
    config.root.join("release").join(&config.version)
}

/// `target/xtask/deb-blocks/<debarch>/`: compressed data.tar.xz blocks kept between builds,
/// so that a `dist` after a small edit recompresses only what changed. Per arch: the trees
/// share little. `None` for darwin (no .deb).
pub fn deb_block_cache(config: &Config, arch: Arch) -> Option<PathBuf> {
    Some(config.root.join("target/xtask/deb-blocks").join(arch.debian_arch()?))
}

/// `kitchntabs_1.0.0_armhf.deb`, Debian's file name convention.
pub fn deb_name(config: &Config, arch: Arch) -> Option<String> {
    Some(format!("{}_{}_{}.deb", config.dist.product.name, config.version, arch.debian_arch()?))
}

/// `KitchnTabs-1.0.0-darwin-arm64.tar.gz`: the macOS app bundle's archive.
pub fn archive_name(config: &Config, arch: Arch) -> String {
    format!("{}-{}-{arch}.tar.gz", config.dist.product.product_name, config.version)
}

/// `dist-manifest.<arch>.json`: what one arch's dist recorded in release/<version>/.
pub fn arch_manifest_name(arch: Arch) -> String {
    format!("dist-manifest.{arch}.json")
}

/// Where an unpacked app keeps its executable and its resources.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AppLayout {
    pub executable: PathBuf,
    pub resources: PathBuf,
}

impl AppLayout {
    pub fn new(config: &Config, arch: Arch, app: &Path) -> AppLayout {
        let product = &config.dist.product;
        match arch.os() {
            Os::Linux => AppLayout { executable: app.join(&product.name), resources: app.join("resources") },
            Os::Darwin => {
                let bundle = app.join(format!("{}.app", product.product_name));
                AppLayout {
                    executable: bundle.join("Contents/MacOS").join(&product.product_name),
                    resources: bundle.join("Contents/Resources"),
                }
            }
        }
    }

    pub fn services(&self) -> PathBuf {
        self.resources.join("python-service")
    }
}
