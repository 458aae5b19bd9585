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
    if json {
        return crate::exit::print_json(serde_json::json!({ "targets": rows(config) }), crate::exit::OK);
    }
    print!("{}", render(config)?);
    Ok(())
}

/// One row per arch: what `--json` lists under `targets`.
fn rows(config: &Config) -> Vec<Row> {
    Arch::ALL
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
        .collect()
}

/// What `targets` prints without `--json`: a block per arch.
pub fn render(config: &Config) -> Result<String> {
    let mut out = String::new();
    for r in &rows(config) {
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::{config::EngineChoice, host::Host, steps::dist};

    /// Rust's own names where a user reads dist.yaml's: `Debootstrap(Bookworm)`, `Elf {`,
    /// `Some(..)`, a CamelCase word, a bare variant such as `Xz`, a JSON key such as `"Elf":`.
    fn rust_names(text: &str) -> Vec<String> {
        // Product names, spelled so by their makers, and package.json's own key.
        const PROPER: [&str; 8] =
            ["KitchnTabs", "PyInstaller", "BuildKit", "NodeSource", "macOS", "MacOS", "devDependencies", "PyPI"];
        // Variants of the enums whose dist.yaml and CLI names are lowercase.
        const VARIANTS: [&str; 15] = [
            "Xz",
            "Zstd",
            "Gzip",
            "Bookworm",
            "Bullseye",
            "Auto",
            "Native",
            "Buildx",
            "Podman",
            "Debootstrap",
            "Image",
            "Elf",
            "MachO",
            "Armv7l",
            "DarwinArm64",
        ];
        let mut found = Vec::new();
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if !bytes[i].is_ascii_alphanumeric()
                || (i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_'))
            {
                i += 1;
                continue;
            }
            let end = i + bytes[i..].iter().take_while(|b| b.is_ascii_alphanumeric() || **b == b'_').count();
            let word = &text[i..end];
            let next = &text[end..];
            let upper = word.as_bytes()[0].is_ascii_uppercase();
            let camel = word.as_bytes().windows(2).any(|w| w[0].is_ascii_lowercase() && w[1].is_ascii_uppercase());
            let debug = upper && (next.starts_with('(') || next.starts_with(" {") || next.starts_with(" }"));
            let json_key = upper && i > 0 && bytes[i - 1] == b'"' && next.starts_with("\":");
            let named = ["Some", "None", "Ok", "Err"].contains(&word) || VARIANTS.contains(&word);
            if (camel && !PROPER.contains(&word)) || debug || json_key || named {
                found.push(format!("{word}{}", next.chars().take(12).collect::<String>()));
            }
            i = end;
        }
        found
    }

    /// [`rust_names`] of JSON: in every string, and every key that is a CamelCase word.
    fn rust_names_json(text: &str) -> Vec<String> {
        fn walk(v: &serde_json::Value, found: &mut Vec<String>) {
            match v {
                serde_json::Value::String(s) => found.extend(rust_names(s)),
                serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, found)),
                serde_json::Value::Object(o) => {
                    for (k, v) in o {
                        // SOURCE_DATE_EPOCH is a name too, but not Rust's.
                        let word = k.starts_with(|c: char| c.is_ascii_uppercase()) && k.contains(char::is_lowercase);
                        if word || !rust_names(k).is_empty() {
                            found.push(format!("key {k:?}"));
                        }
                        walk(v, found);
                    }
                }
                _ => {}
            }
        }
        let mut found = Vec::new();
        walk(&serde_json::from_str(text).expect("JSON"), &mut found);
        found
    }

    #[test]
    fn the_detector_finds_rust_debug_output() {
        let found = rust_names(
            "base=Debootstrap(Bookworm), \"binary\": {\"Elf\": {\"class\": 32}}, level for Xz, Some(\"x\"), engine DockerBuildkit",
        );
        assert_eq!(found.len(), 6, "{found:?}");
        assert!(rust_names("KitchnTabs via PyInstaller and docker BuildKit (docker), Mach-O, ELF32").is_empty());
        let json = r#"{"binary": {"Elf": {"class": 32}}, "SOURCE_DATE_EPOCH": "1", "run": "ADD x\nENV y", "e": "Xz"}"#;
        assert_eq!(rust_names_json(json), ["key \"Elf\"", "Xz"]);
    }

    /// `targets`, `targets --json` and `dist --dry-run` (text and JSON) of every arch, with every
    /// engine, from an x64 and an arm64 host: dist.yaml's and the CLI's names only.
    #[test]
    fn targets_and_the_dry_run_use_the_names_of_dist_yaml() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let config = Config::load(root).unwrap();
        let mut outputs = vec![("targets".to_string(), rust_names(&render(&config).unwrap()))];
        outputs.push(("targets --json".into(), rust_names_json(&serde_json::to_string(&rows(&config)).unwrap())));
        let tools = Host::fixed("/opt/electron/{arch}");
        let engines = [
            (None, "auto"),
            (Some(EngineChoice::Buildx), "buildx"),
            (Some(EngineChoice::Docker), "docker"),
            (Some(EngineChoice::Podman), "podman"),
        ];
        for host in [Arch::X64, Arch::Arm64] {
            for arch in Arch::ALL {
                for (engine, name) in engines {
                    let req = dist::Request { arch, env: "prod".into(), engine, services: Vec::new(), package: true };
                    let Ok(plan) = dist::plan(&config, &req, Some(host), &tools) else { continue };
                    let what = format!("dist --arch {arch} --engine {name} --dry-run on {host}");
                    // The checkout's own path is not the tool's wording (a clone in
                    // /tmp/rehearse.wWSSAl would look like a CamelCase word).
                    let root = config.root.to_string_lossy().into_owned();
                    let text = plan.render_with(None).unwrap().replace(&root, "<root>");
                    outputs.push((what.clone(), rust_names(&text)));
                    let json = plan.to_json_value(None).unwrap().to_string().replace(&root, "<root>");
                    outputs.push((format!("{what} --json"), rust_names_json(&json)));
                    // The engine as dist.yaml's `engine:` and `--engine` name it.
                    let tag = serde_json::from_str::<serde_json::Value>(&json).unwrap()["engine"]["engine"].clone();
                    if !["native", "buildx", "docker", "podman"].contains(&tag.as_str().unwrap_or_default()) {
                        outputs.push((format!("{what} --json"), vec![format!("engine {tag}")]));
                    }
                }
            }
        }
        assert!(outputs.len() > 20, "{}", outputs.len());
        let wrong: Vec<String> = outputs
            .iter()
            .filter(|(_, found)| !found.is_empty())
            .map(|(what, found)| format!("{what}: {found:?}"))
            .collect();
        assert!(wrong.is_empty(), "Rust's names reach the user:\n{}", wrong.join("\n"));
    }
}
