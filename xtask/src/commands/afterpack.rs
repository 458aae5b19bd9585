//! `cargo xtask afterpack`: electron-builder's afterPack step, in Rust. The hook in
//! `electron-app/electron-builder.config.js` is a thin shim that calls this, so plain
//! electron-builder runs get it too; `dist` runs it itself after electron-builder.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::{arch::Arch, config::Config};

#[derive(clap::Args)]
pub struct AfterpackArgs {
    /// The unpacked app electron-builder wrote (its `context.appOutDir`).
    #[arg(long, value_name = "DIR")]
    app_out_dir: PathBuf,
    /// electron-builder's Arch enum number (x64 1, armv7l 2, arm64 3) or an arch name.
    #[arg(long)]
    arch: String,
    /// electron-builder's platform name: linux or darwin.
    #[arg(long, default_value = "linux")]
    platform: String,
}

impl AfterpackArgs {
    fn target(&self) -> Result<Arch> {
        match self.arch.parse::<u8>() {
            Ok(n) => Arch::from_electron(&self.platform, n).with_context(|| {
                format!(
                    "--arch {n} --platform {}: not a target (electron-builder Arch enum: x64 1, armv7l 2, arm64 3)",
                    self.platform
                )
            }),
            Err(_) => self.arch.parse::<Arch>().map_err(Into::into),
        }
    }
}

pub fn run(config: &Config, args: &AfterpackArgs) -> Result<()> {
    let arch = args.target()?;
    let built = config.python_dir().join("dist").join(arch.name());
    let spec = crate::steps::electron::afterpack_spec(config, arch, &args.app_out_dir, &built);
    let manifest = crate::afterpack::afterpack(&spec)?;
    eprintln!(
        "afterpack: {} service(s) for {arch} injected into {}",
        manifest.services.len(),
        spec.layout.services().display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arch_flag_takes_the_enum_number_or_a_name() {
        let a = |arch: &str, platform: &str| {
            AfterpackArgs { app_out_dir: "x".into(), arch: arch.into(), platform: platform.into() }.target()
        };
        assert_eq!(a("2", "linux").unwrap(), Arch::Armv7l);
        assert_eq!(a("3", "darwin").unwrap(), Arch::DarwinArm64);
        assert_eq!(a("aarch64", "linux").unwrap(), Arch::Arm64);
        assert!(a("0", "linux").unwrap_err().to_string().contains("not a target"));
    }
}
