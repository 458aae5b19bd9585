//! `versions`: electron-app/package.json is the single source of the product version, and the
//! pinned Electron ships a build for every arch dist.yaml targets.
//!
//! - dist.yaml `product.version_from` must point at electron-app/package.json;
//! - no other file hard-codes a different version: python-service's pyproject.toml / setup.cfg
//!   / setup.py, a `__version__ = "..."` in its Python files, a `version`/`buildVersion` string
//!   in electron-builder.config.js (the services read the version from package.json or from
//!   the build-info.json dist bundles; electron-builder from package.json);
//! - the Electron in devDependencies (the lockfile's resolved version when there is one) must
//!   ship each target arch: Electron >= 44 has no linux-armv7l.

use std::path::Path;

use anyhow::Result;
use serde_yaml::Value;

use super::{Problem, key_line, rel};
use crate::config::CONFIG_FILE;

pub const PACKAGE_JSON: &str = "electron-app/package.json";
const LOCKFILE: &str = "electron-app/pnpm-lock.yaml";

/// The 1-based line of the first line containing `needle`.
fn line_of(text: &str, needle: &str) -> Option<usize> {
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1)
}

/// The quoted string after `key` on a line such as `version = "1.2.3"` or `version: '1.2.3'`.
fn quoted_after<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let rest = line.trim_start().strip_prefix(key)?.trim_start();
    let rest = rest.strip_prefix('=').or_else(|| rest.strip_prefix(':'))?.trim_start();
    let q = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    rest[1..].split(q).next()
}

pub fn check(root: &Path) -> Result<Vec<Problem>> {
    let mut problems = Vec::new();
    let dist_text = std::fs::read_to_string(root.join(CONFIG_FILE))?;
    let doc: Value = match serde_yaml::from_str(&dist_text) {
        Ok(d) => d,
        Err(e) => {
            return Ok(vec![Problem::new(
                CONFIG_FILE,
                format!("does not parse: {e}"),
                "fix dist.yaml first (the dist-yaml check names the problem)",
            )]);
        }
    };
    // Read leniently: only the keys this check needs (dist-yaml reports the rest).
    let version_from = doc.get("product").and_then(|p| p.get("version_from")).and_then(Value::as_str).unwrap_or("");
    let py_dir =
        Path::new(doc.get("python").and_then(|p| p.get("dir")).and_then(Value::as_str).unwrap_or("python-service"));
    let targets: Vec<crate::arch::Arch> = doc
        .get("targets")
        .and_then(Value::as_mapping)
        .map(|m| m.keys().filter_map(|k| k.as_str()?.parse().ok()).collect())
        .unwrap_or_default();
    let at_dist =
        |path: &[&str]| key_line(&dist_text, path).map_or(CONFIG_FILE.to_string(), |l| format!("{CONFIG_FILE}:{l}"));
    if version_from != PACKAGE_JSON {
        problems.push(Problem::new(
            at_dist(&["product", "version_from"]),
            format!(
                "product.version_from is `{version_from}`, but {PACKAGE_JSON} is the single source of the version (electron-builder and the services read it)"
            ),
            format!("set `version_from: {PACKAGE_JSON}`"),
        ));
    }
    let pkg_text = match std::fs::read_to_string(root.join(PACKAGE_JSON)) {
        Ok(t) => t,
        Err(e) => return Ok(vec![Problem::new(PACKAGE_JSON, format!("cannot read it: {e}"), "restore it")]),
    };
    let pkg: serde_json::Value = match serde_json::from_str(&pkg_text) {
        Ok(v) => v,
        Err(e) => {
            return Ok(vec![Problem::new(
                format!("{PACKAGE_JSON}:{}", e.line()),
                format!("not valid JSON: {e}"),
                "fix the JSON",
            )]);
        }
    };
    let version = pkg["version"].as_str().unwrap_or_default().to_string();
    if version.is_empty() {
        problems.push(Problem::new(PACKAGE_JSON, "no \"version\" string", "add \"version\": \"1.0.0\""));
    }

    // Other version sources.
    let mut candidates: Vec<(String, &str)> = ["pyproject.toml", "setup.cfg", "setup.py"]
        .iter()
        .map(|f| (py_dir.join(f).to_string_lossy().into_owned(), "version"))
        .collect();
    let skip = [".venv", "dist", "build", "__pycache__"];
    for e in walkdir::WalkDir::new(root.join(py_dir))
        .into_iter()
        .filter_entry(|e| !skip.contains(&e.file_name().to_string_lossy().as_ref()))
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "py"))
    {
        candidates.push((rel(root, e.path()), "__version__"));
    }
    for key in ["version", "buildVersion"] {
        candidates.push(("electron-app/electron-builder.config.js".into(), key));
    }
    for (file, key) in candidates {
        let Ok(text) = std::fs::read_to_string(root.join(&file)) else { continue };
        for (i, line) in text.lines().enumerate() {
            let Some(found) = quoted_after(line, key) else { continue };
            if !found.is_empty() && found.starts_with(|c: char| c.is_ascii_digit()) && found != version {
                problems.push(Problem::new(
                    format!("{file}:{}", i + 1),
                    format!("hard-codes version {found}, but {PACKAGE_JSON} says {version}"),
                    format!("remove it and read the version from {PACKAGE_JSON} (as kt_common.build_info does); bump versions there only"),
                ));
            }
        }
    }

    // Electron against the target arches.
    let spec = ["devDependencies", "dependencies"].iter().find_map(|d| pkg[d]["electron"].as_str());
    let Some(spec) = spec else {
        problems.push(Problem::new(
            PACKAGE_JSON,
            "no electron in devDependencies",
            "add \"electron\": \"43.8.11\" to devDependencies",
        ));
        return Ok(problems);
    };
    let pkg_at = line_of(&pkg_text, "\"electron\"").map_or(PACKAGE_JSON.to_string(), |l| format!("{PACKAGE_JSON}:{l}"));
    let locked = std::fs::read_to_string(root.join(LOCKFILE)).ok().and_then(|t| {
        let lock: Value = serde_yaml::from_str(&t).ok()?;
        let v = lock.get("importers")?.get(".")?.get("devDependencies")?.get("electron")?.get("version")?.as_str()?;
        Some(v.split('(').next().unwrap_or(v).to_string())
    });
    let exact = spec.trim_start_matches(['^', '~', '=', 'v', '>', '<', ' ']);
    if let Some(l) = &locked
        && spec.bytes().next().is_some_and(|b| b.is_ascii_digit())
        && l != spec
    {
        problems.push(Problem::new(
            &pkg_at,
            format!("electron {spec} here, but {LOCKFILE} has {l}"),
            "run `pnpm install` in electron-app/ and commit the lockfile",
        ));
    }
    let effective = locked.as_deref().unwrap_or(exact);
    let Some(major) = effective.split('.').next().and_then(|m| m.parse::<u32>().ok()) else {
        problems.push(Problem::new(
            &pkg_at,
            format!("cannot read a major version from electron `{spec}`"),
            "pin an exact version such as \"43.8.11\"",
        ));
        return Ok(problems);
    };
    for arch in &targets {
        if let Some(last) = arch.electron_last_major()
            && major > last
        {
            problems.push(Problem::new(
                &pkg_at,
                format!("electron {effective} ships no build for {arch} (the last major that does is {last}), but dist.yaml targets {arch}"),
                format!(
                    "pin \"electron\": \"{last}.x.y\" (e.g. 43.8.11) in {PACKAGE_JSON} and run `pnpm install`, or drop `targets.{arch}` from dist.yaml ({})",
                    at_dist(&["targets", arch.name()])
                ),
            ));
        }
    }
    Ok(problems)
}
