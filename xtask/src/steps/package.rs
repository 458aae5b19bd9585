//! The .deb step of `dist`: dist.yaml + the unpacked app (services injected) → the
//! [`deb::ElectronApp`] description → `release/<version>/<package>_<version>_<debarch>.deb`,
//! verified like every other artifact before it is renamed into place (the writer runs the
//! verify pass on its temp file, so a package that fails it never appears at its path).

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::layout::release_dir;
use crate::layout::{deb_block_cache, deb_name};
use crate::{
    arch::Arch,
    config::{self, Config, Suite},
    deb,
    plan::{Action, Step, StepKind},
};

pub fn deb_step(config: &Config, arch: Arch, app: &Path, epoch: u64) -> Result<Step> {
    let name = deb_name(config, arch).context("darwin targets have no .deb")?;
    let out = release_dir(config).join(&name);
    let deb = &config.dist.packaging.deb;
    let mut s = Step::new("deb", format!("write {name}"), StepKind::Deb { file: name });
    s.after.push("afterpack".into());
    s.inputs.push(app.to_path_buf());
    s.inputs.push(config.root.join(&deb.icons));
    s.inputs.push(config.root.join(&deb.license_file));
    s.values.insert("packaging".into(), serde_json::to_string(deb)?);
    s.values.insert("product".into(), serde_json::to_string(&config.dist.product)?);
    s.values.insert("SOURCE_DATE_EPOCH".into(), epoch.to_string());
    s.outputs.push(out.clone());
    s.actions.push(Action::WriteDeb(Box::new(deb_plan(config, arch, app, &out, epoch)?)));
    Ok(s)
}

/// darwin: the .app bundle as `release/<version>/<Product>-<version>-<arch>.tar.gz`.
pub fn archive_step(config: &Config, arch: Arch, app: &Path, epoch: u64) -> Step {
    let product = &config.dist.product.product_name;
    let name = crate::layout::archive_name(config, arch);
    let out = release_dir(config).join(&name);
    let bundle = app.join(format!("{product}.app"));
    let mut s = Step::new("archive", format!("write {name}"), StepKind::Archive { file: name });
    s.after.push("afterpack".into());
    s.inputs.push(bundle.clone());
    s.values.insert("SOURCE_DATE_EPOCH".into(), epoch.to_string());
    s.outputs.push(out.clone());
    s.actions.push(Action::WriteTarGz { src: bundle, out: out.clone(), epoch });
    // Read back as verify reads any archive: every Mach-O inside is for the target.
    s.actions.push(Action::Verify { paths: vec![out], arch, glibc: None });
    s
}

/// What [`write`] needs of the config, resolved: also what the tests vary.
pub fn electron_app(config: &Config, arch: Arch, app: &Path, epoch: u64) -> Result<deb::ElectronApp> {
    let product = &config.dist.product;
    let cfg = &config.dist.packaging.deb;
    let deb_arch = arch
        .debian_arch()
        .and_then(deb::DebArch::from_debian_name)
        .with_context(|| format!("{arch} has no .deb: macOS apps ship as the .app bundle"))?;
    let license_path = config.root.join(&cfg.license_file);
    let license_text = std::fs::read_to_string(&license_path)
        .with_context(|| format!("cannot read {} (dist.yaml packaging.deb.license_file)", license_path.display()))?;
    let holder = license_text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Copyright (c)").or_else(|| l.trim().strip_prefix("Copyright")))
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|| product.product_name.clone());
    let short = product.description.trim().trim_end_matches('.').to_string();
    let services: Vec<&str> = config.dist.services.keys().map(String::as_str).collect();
    let long = wrap(&format!(
        "The {} terminal (Electron) and the services it starts and supervises: {}.",
        product.product_name,
        services.join(", ")
    ));
    Ok(deb::ElectronApp {
        product_name: product.product_name.clone(),
        package: product.name.clone(),
        executable: product.name.clone(),
        version: config.version.clone(),
        arch: deb_arch,
        maintainer: product.maintainer.clone(),
        homepage: Some(product.homepage.clone()).filter(|h| !h.is_empty()),
        description_short: short,
        description_long: long,
        desktop_comment: product.description.clone(),
        categories: "Office;".into(),
        unpacked_dir: app.to_path_buf(),
        icons: icons(&config.root.join(&cfg.icons))?,
        depends: cfg.depends.clone(),
        recommends: cfg.recommends.clone(),
        copyright: deb::CopyrightInfo { holder, license: cfg.license.clone(), license_text },
        // The floor verify enforces on every ELF inside: a board with an older glibc
        // could not start the app, so apt must not install it there.
        glibc_floor: config.target(arch)?.glibc.map(|g| g.to_string()),
        kiosk: cfg.kiosk_service.then(|| deb::KioskService {
            user: cfg.kiosk_user.clone(),
            args: vec!["--no-sandbox".into()],
            display: ":0".into(),
        }),
        unattended: cfg.unattended_upgrades.then(|| unattended_origin(config)),
        source_date_epoch: epoch,
    })
}

/// The repository unattended-upgrades takes new versions from, as its Release file names it:
/// `Origin:` and `Suite:`, as `cargo xtask apt-repo` writes them from dist.yaml's `apt_repo`
/// (defaults: the product name and `stable`).
pub fn unattended_origin(config: &Config) -> deb::UnattendedOrigin {
    let repo = &config.dist.apt_repo;
    deb::UnattendedOrigin {
        origin: repo.origin.clone().unwrap_or_else(|| config.dist.product.product_name.clone()),
        suite: repo.suite.clone().unwrap_or_else(|| "stable".into()),
    }
}

/// The [`deb::AppPackage`] of `arch`'s unpacked `app`, to be written at `out`.
pub fn deb_plan(config: &Config, arch: Arch, app: &Path, out: &Path, epoch: u64) -> Result<deb::AppPackage> {
    let cfg = &config.dist.packaging.deb;
    let level = cfg.compression.level(cfg.compression_level);
    Ok(deb::AppPackage {
        out: out.to_path_buf(),
        app: electron_app(config, arch, app, epoch)?,
        section: cfg.section.clone(),
        priority: cfg.priority.clone(),
        compression: match cfg.compression {
            config::Codec::Xz => deb::Compression::Xz { level },
            config::Codec::Gzip => deb::Compression::Gzip { level },
            config::Codec::Zstd => deb::Compression::Zstd { level: level as i32 },
        },
        block_cache: deb_block_cache(config, arch),
        glibc: config.target(arch)?.glibc,
        // The oldest OS the target's glibc floor admits decides which members dpkg can read.
        target_dpkg: match config.target(arch)?.glibc {
            Some(g) if g < Suite::Bookworm.glibc() => deb::DpkgVersion::BULLSEYE,
            _ => deb::DpkgVersion::BOOKWORM,
        },
    })
}

/// Lines of at most 72 characters: lintian wants extended descriptions under 80.
fn wrap(text: &str) -> String {
    let mut lines: Vec<String> = vec![String::new()];
    for word in text.split_whitespace() {
        let line = lines.last_mut().expect("one line");
        if !line.is_empty() && line.len() + 1 + word.len() > 72 {
            lines.push(word.to_string());
        } else {
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
    }
    lines.join("\n")
}

/// `<N>x<N>.png` files of the icons folder, smallest first.
fn icons(dir: &Path) -> Result<Vec<(u32, Vec<u8>)>> {
    let mut icons = Vec::new();
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the icons folder {} (packaging.deb.icons)", dir.display()))?;
    for e in entries {
        let path = e?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
        let size = name
            .strip_suffix(".png")
            .and_then(|s| s.split_once('x'))
            .filter(|(w, h)| w == h)
            .and_then(|(w, _)| w.parse::<u32>().ok());
        let Some(size) = size else {
            bail!("{}: icon files must be named <N>x<N>.png (e.g. 256x256.png)", path.display());
        };
        icons.push((size, std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?));
    }
    if icons.is_empty() {
        bail!("{} has no icons; add at least a 256x256.png", dir.display());
    }
    icons.sort_by_key(|(s, _)| *s);
    Ok(icons)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::load(Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()).unwrap()
    }

    #[test]
    fn depends_keep_electron_builders_list_and_add_the_glibc_floor() {
        let config = config();
        let deb = &config.dist.packaging.deb;
        for d in deb::electron::FPM_DEPENDS {
            assert!(deb.depends.iter().any(|x| x == d), "dist.yaml packaging.deb.depends lacks {d}");
        }
        for r in deb::electron::FPM_RECOMMENDS {
            assert!(deb.recommends.iter().any(|x| x == r), "dist.yaml packaging.deb.recommends lacks {r}");
        }
        let d = tempfile::tempdir().unwrap();
        let app = electron_app(&config, Arch::Armv7l, d.path(), 1_700_000_000).unwrap();
        assert_eq!(app.glibc_floor.as_deref(), Some("2.36"));
        assert_eq!(app.arch, deb::DebArch::Armhf);
        assert!(app.description_long.lines().all(|l| l.len() <= 72), "{}", app.description_long);
        assert!(!app.description_long.contains(&app.description_short), "the synopsis must not repeat");
        assert_eq!(app.icons.first().map(|(s, _)| *s), Some(32));
        assert!(electron_app(&config, Arch::DarwinArm64, d.path(), 1).is_err());
    }

    #[test]
    fn the_deb_plan_carries_the_per_arch_block_cache() {
        let config = config();
        let d = tempfile::tempdir().unwrap();
        let plan = deb_plan(&config, Arch::Armv7l, d.path(), &d.path().join("k.deb"), 1_700_000_000).unwrap();
        let dir = config.root.join("target/xtask/deb-blocks/armhf");
        assert_eq!(plan.block_cache.as_deref(), Some(dir.as_path()));
        // Shown in `dist --dry-run --json`.
        let json = serde_json::to_value(&plan).unwrap();
        assert_eq!(json["block_cache"], serde_json::json!(dir));
    }

    #[test]
    fn icons_must_be_named_by_size() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("icon.png"), b"x").unwrap();
        let err = icons(d.path()).unwrap_err().to_string();
        assert!(err.contains("icon.png: icon files must be named <N>x<N>.png"), "{err}");
        let empty = tempfile::tempdir().unwrap();
        assert!(icons(empty.path()).unwrap_err().to_string().contains("has no icons"));
    }
}
