//! `cargo xtask targets`: every arch this tool knows, with the facts it uses and the
//! engine and glibc floor dist.yaml gives it.

use std::fmt::Write as _;

use anyhow::Result;
use serde::Serialize;

use crate::{
    arch::{Arch, BinaryFormat, Os},
    config::Config,
};

#[derive(Serialize)]
struct Row {
    arch: Arch,
    aliases: &'static [&'static str],
    os: Os,
    docker_platform: Option<&'static str>,
    debian_arch: Option<&'static str>,
    electron_builder: String,
    electron_arch_enum: u8,
    unpacked_dir: &'static str,
    binary: BinaryFormat,
    configured: bool,
    glibc: Option<String>,
    engine: Option<String>,
}

pub fn run(config: &Config, json: bool) -> Result<()> {
    print!("{}", render(config, json)?);
    Ok(())
}

/// What `targets` prints: a block per arch, or (`--json`) an array of one object per arch.
pub fn render(config: &Config, json: bool) -> Result<String> {
    let rows: Vec<Row> = Arch::ALL
        .into_iter()
        .map(|a| {
            let t = config.dist.targets.get(&a);
            Row {
                arch: a,
                aliases: a.aliases(),
                os: a.os(),
                docker_platform: a.docker_platform(),
                debian_arch: a.debian_arch(),
                electron_builder: a.electron_builder_flags().join(" "),
                electron_arch_enum: a.electron_arch_enum(),
                unpacked_dir: a.unpacked_dir(),
                binary: a.binary_format(),
                configured: t.is_some(),
                glibc: t.and_then(|t| t.glibc).map(|g| g.to_string()),
                engine: t.map(|t| t.engine.to_string()),
            }
        })
        .collect();
    if json {
        return Ok(format!("{}\n", serde_json::to_string_pretty(&rows)?));
    }
    let mut out = String::new();
    for r in &rows {
        let binary = match r.binary {
            BinaryFormat::Elf { class, machine, interpreter, hard_float } => format!(
                "ELF{class} e_machine {machine}{}, interpreter {interpreter}",
                if hard_float { " hard-float" } else { "" }
            ),
            BinaryFormat::MachO { cputype } => format!("Mach-O cputype {cputype:#x}"),
        };
        writeln!(out, "{} ({})", r.arch, r.aliases.join(", "))?;
        writeln!(out, "  docker platform  {}", r.docker_platform.unwrap_or("(native builds only)"))?;
        writeln!(out, "  debian arch      {}", r.debian_arch.unwrap_or("(no .deb)"))?;
        writeln!(
            out,
            "  electron-builder {} (Arch enum {}), unpacked {}",
            r.electron_builder, r.electron_arch_enum, r.unpacked_dir
        )?;
        writeln!(out, "  binaries         {binary}")?;
        match (&r.engine, &r.glibc) {
            (Some(e), g) => {
                writeln!(out, "  dist.yaml        engine {e}, glibc floor {}", g.as_deref().unwrap_or("none"))?
            }
            (None, _) => writeln!(out, "  dist.yaml        not configured")?,
        }
    }
    Ok(out)
}
