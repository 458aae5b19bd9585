//! `release/<version>/`: what a release consists of. Each `dist --arch A` writes
//! `dist-manifest.<A>.json` (its artifacts, service binaries, tool versions), then every
//! per-arch manifest in the folder is merged into one `SHA256SUMS` (`sha256sum -c`
//! compatible) and one `dist-manifest.json`. The merge re-hashes every artifact: a file
//! changed or truncated since its dist run is an error, not a wrong checksum shipped.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::layout::arch_manifest_name;
use crate::{arch::Arch, fingerprint::hash_file, fsx};

pub const SUMS: &str = "SHA256SUMS";
pub const MERGED: &str = "dist-manifest.json";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    /// File name inside `release/<version>/`.
    pub file: String,
    pub arch: Arch,
    pub size: u64,
    pub sha256: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceBinary {
    pub name: String,
    pub version: String,
    pub arch: Arch,
    pub size: u64,
    pub sha256: String,
}

/// `dist-manifest.<arch>.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchManifest {
    pub version: String,
    pub arch: Arch,
    pub git_commit: String,
    /// Uncommitted changes were present: the commit alone does not reproduce this build.
    #[serde(default)]
    pub git_dirty: bool,
    pub source_date_epoch: u64,
    pub artifacts: Vec<Artifact>,
    #[serde(default)]
    pub services: Vec<ServiceBinary>,
    #[serde(default)]
    pub tools: BTreeMap<String, String>,
}

/// `dist-manifest.json`: every arch of one version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseManifest {
    pub version: String,
    pub git_commit: String,
    pub git_dirty: bool,
    pub source_date_epoch: u64,
    pub arches: Vec<Arch>,
    pub artifacts: Vec<Artifact>,
    /// arch → its service binaries.
    pub services: BTreeMap<Arch, Vec<ServiceBinary>>,
    /// arch → the tool versions its build used.
    pub tools: BTreeMap<Arch, BTreeMap<String, String>>,
}

/// What the release step records, resolved while planning (commit, tool versions, paths):
/// the step itself reads no config.
#[derive(Clone, Debug, Serialize)]
pub struct Record {
    /// `release/<version>/`.
    pub dir: PathBuf,
    pub arch: Arch,
    pub artifact: PathBuf,
    /// Service name → its binary, hashed when the step runs.
    pub services: Vec<(String, PathBuf)>,
    pub version: String,
    pub git_commit: String,
    pub git_dirty: bool,
    pub source_date_epoch: u64,
    /// The versions known before anything runs (xtask, node, python).
    pub tools: BTreeMap<String, String>,
    /// The electronDist the app was packed from: its `version` file is the Electron recorded.
    /// Without one, electron-builder downloads the installed electron module's version.
    pub electron_dist: Option<PathBuf>,
    /// `electron-app/node_modules`: electron-builder's (and electron's) installed versions.
    pub node_modules: PathBuf,
}

/// The arch manifest of a [`Record`], from the artifact and services as they are now.
pub fn arch_manifest(r: &Record) -> Result<ArchManifest> {
    let file = r.artifact.file_name().context("artifact has no file name")?.to_string_lossy().into_owned();
    let artifacts = vec![Artifact { file, arch: r.arch, size: size(&r.artifact)?, sha256: hash_file(&r.artifact)? }];
    let mut services = Vec::new();
    for (name, path) in &r.services {
        services.push(ServiceBinary {
            name: name.clone(),
            version: r.version.clone(),
            arch: r.arch,
            size: size(path)?,
            sha256: hash_file(path)?,
        });
    }
    Ok(ArchManifest {
        version: r.version.clone(),
        arch: r.arch,
        git_commit: r.git_commit.clone(),
        git_dirty: r.git_dirty,
        source_date_epoch: r.source_date_epoch,
        artifacts,
        services,
        tools: tool_versions(r)?,
    })
}

fn size(path: &Path) -> Result<u64> {
    Ok(std::fs::metadata(path).with_context(|| format!("cannot stat {}", path.display()))?.len())
}

/// The versions of what shaped the artifacts (absent tools are left out). Electron's is the
/// one packed: an electronDist's own `version` file (what the dist is, whatever package.json
/// pins), else the installed electron module's, whose version electron-builder downloads.
fn tool_versions(r: &Record) -> Result<BTreeMap<String, String>> {
    let mut tools = r.tools.clone();
    let installed = |pkg: &str| {
        crate::package_json::read(&r.node_modules.join(pkg).join("package.json"))
            .ok()
            .and_then(|j| j["version"].as_str().map(str::to_string))
    };
    let electron = match &r.electron_dist {
        Some(dist) => Some(crate::electron_source::dist_version(dist)?),
        None => installed("electron"),
    };
    for (pkg, version) in [("electron", electron), ("electron-builder", installed("electron-builder"))] {
        if let Some(v) = version {
            tools.insert(pkg.into(), v);
        }
    }
    Ok(tools)
}

/// Write `dist-manifest.<arch>.json`, then merge the folder.
pub fn record(dir: &Path, manifest: &ArchManifest) -> Result<ReleaseManifest> {
    let path = dir.join(arch_manifest_name(manifest.arch));
    fsx::write_atomic(&path, format!("{}\n", serde_json::to_string_pretty(manifest)?).as_bytes())?;
    let merged = merge(dir)?;
    write_merged(dir, &merged)?;
    Ok(merged.manifest)
}

/// The merge of a release folder, not yet written.
pub struct Merged {
    /// `sha256sum -c` input: `<sha256>  <file>` per artifact, sorted by file.
    pub sums: String,
    pub manifest: ReleaseManifest,
}

/// Read every `dist-manifest.<arch>.json` in `dir`, check each artifact on disk against it,
/// and compute the merged SHA256SUMS and manifest. Writes nothing.
pub fn merge(dir: &Path) -> Result<Merged> {
    let mut found: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let arch = name.strip_prefix("dist-manifest.")?.strip_suffix(".json")?.to_string();
            Some((arch, e.path()))
        })
        .collect();
    found.sort();
    if found.is_empty() {
        bail!(
            "{}: no dist-manifest.<arch>.json; build with `cargo xtask dist --arch ARCH --env prod`, or download every \
             dist job's release/<version>/ into it",
            dir.display()
        );
    }
    let mut manifests: Vec<(String, ArchManifest)> = Vec::new();
    for (arch, path) in &found {
        let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let m: ArchManifest = serde_json::from_str(&text).with_context(|| {
            format!("{}: not a dist manifest; rebuild that arch with `cargo xtask dist`", path.display())
        })?;
        if m.arch.name() != arch {
            bail!("{}: says arch `{}` but its name says `{arch}`; rebuild that arch with dist", path.display(), m.arch);
        }
        manifests.push((name, m));
    }
    let (first_name, first) = &manifests[0];
    for (name, m) in &manifests[1..] {
        for (field, a, b) in [
            ("version", m.version.clone(), first.version.clone()),
            ("git_commit", m.git_commit.clone(), first.git_commit.clone()),
            ("source_date_epoch", m.source_date_epoch.to_string(), first.source_date_epoch.to_string()),
        ] {
            if a != b {
                bail!(
                    "{name} has {field} {a} but {first_name} has {b}: every arch of a release must be built from the same \
                     commit; rebuild the odd one out from the tagged commit"
                );
            }
        }
    }
    let mut artifacts: Vec<Artifact> = Vec::new();
    let mut from: BTreeMap<String, String> = BTreeMap::new();
    for (name, m) in &manifests {
        for a in &m.artifacts {
            let plain = !a.file.is_empty() && !a.file.contains(['/', '\\']) && a.file != "." && a.file != "..";
            if !plain {
                bail!("{name}: artifact `{}` is not a file name in the release folder", a.file);
            }
            if let Some(other) = from.insert(a.file.clone(), name.clone()) {
                bail!("{}: listed by both {other} and {name}; each artifact belongs to one arch", a.file);
            }
            let path = dir.join(&a.file);
            if !path.is_file() {
                bail!(
                    "{}: listed in {name} but missing; download or rebuild that arch's release folder",
                    path.display()
                );
            }
            let (size, sha) = (self::size(&path)?, hash_file(&path)?);
            if size != a.size {
                bail!(
                    "{}: {size} bytes, but {name} says {}; the file changed after dist wrote the manifest: rebuild that arch",
                    path.display(),
                    a.size
                );
            }
            if sha != a.sha256.to_ascii_lowercase() {
                bail!(
                    "{}: sha256 {sha}, but {name} says {}; the file changed after dist wrote the manifest: rebuild that arch",
                    path.display(),
                    a.sha256
                );
            }
            artifacts.push(a.clone());
        }
    }
    artifacts.sort_by(|a, b| a.file.cmp(&b.file));
    let mut sums = String::new();
    for a in &artifacts {
        // Two spaces: text mode, what `sha256sum` writes and `sha256sum -c` reads.
        sums.push_str(&format!("{}  {}\n", a.sha256.to_ascii_lowercase(), a.file));
    }
    let manifest = ReleaseManifest {
        version: first.version.clone(),
        git_commit: first.git_commit.clone(),
        git_dirty: manifests.iter().any(|(_, m)| m.git_dirty),
        source_date_epoch: first.source_date_epoch,
        arches: manifests.iter().map(|(_, m)| m.arch).collect(),
        artifacts,
        services: manifests.iter().map(|(_, m)| (m.arch, m.services.clone())).collect(),
        tools: manifests.iter().map(|(_, m)| (m.arch, m.tools.clone())).collect(),
    };
    Ok(Merged { sums, manifest })
}

/// SHA256SUMS and dist-manifest.json, each written through a temporary file and a rename.
pub fn write_merged(dir: &Path, merged: &Merged) -> Result<()> {
    fsx::write_atomic(&dir.join(SUMS), merged.sums.as_bytes())?;
    fsx::write_atomic(&dir.join(MERGED), format!("{}\n", serde_json::to_string_pretty(&merged.manifest)?).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(dir: &Path, arch: Arch, file: &str, body: &[u8]) -> ArchManifest {
        std::fs::write(dir.join(file), body).unwrap();
        ArchManifest {
            version: "1.2.3".into(),
            arch,
            git_commit: "abc".into(),
            git_dirty: false,
            source_date_epoch: 1_700_000_000,
            artifacts: vec![Artifact {
                file: file.into(),
                arch,
                size: body.len() as u64,
                sha256: hash_file(&dir.join(file)).unwrap(),
            }],
            services: Vec::new(),
            tools: BTreeMap::new(),
        }
    }

    /// dist's release step for x64 packed from an electronDist whose `version` says `version`,
    /// run into a scratch release folder: the `tools` it records.
    fn recorded_tools(version: &str) -> serde_json::Value {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let config = crate::config::Config::load(root).unwrap();
        let d = tempfile::tempdir().unwrap();
        let electron = d.path().join("electron-x64");
        std::fs::create_dir_all(&electron).unwrap();
        std::fs::write(electron.join("version"), version).unwrap();
        let req = crate::steps::dist::Request {
            arch: Arch::X64,
            env: "prod".into(),
            engine: None,
            services: Vec::new(),
            package: true,
        };
        let tools = crate::host::Host::fixed(&electron.to_string_lossy());
        let mut plan = crate::steps::dist::plan(&config, &req, Some(Arch::X64), &tools).unwrap();
        plan.steps.retain(|s| s.id == "release");
        let release = &mut plan.steps[0];
        release.after.clear();
        release.stamp = Some(d.path().join("release.stamp.json"));
        // The artifact (written into the release folder, as the deb step does) and the services:
        // stand-ins in the scratch folder.
        let out = d.path().join("release");
        let (deb, services) = (out.join("k_1.0.0_amd64.deb"), d.path().join("services"));
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(&deb, b"deb").unwrap();
        std::fs::create_dir_all(&services).unwrap();
        for name in config.dist.services.keys() {
            std::fs::write(services.join(name), name).unwrap();
        }
        release.inputs = vec![deb.clone()];
        release.outputs.clear();
        for a in &mut release.actions {
            if let crate::plan::Action::RecordRelease(r) = a {
                r.dir = out.clone();
                r.artifact = deb.clone();
                for (name, path) in &mut r.services {
                    *path = services.join(&*name);
                }
            }
        }
        let opts = crate::plan::RunOptions { force: crate::plan::Force::None, verbose: false, keep_going: false };
        crate::plan::run(&plan, &opts).unwrap();
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join(arch_manifest_name(Arch::X64))).unwrap()).unwrap();
        m["tools"].clone()
    }

    #[test]
    fn the_recorded_electron_is_the_one_the_electron_dist_says_it_is() {
        // Whatever package.json pins or node_modules holds (the preflight refuses a mismatch).
        let tools = recorded_tools("41.2.3");
        assert_eq!(tools["electron"], "41.2.3", "{tools}");
        assert_eq!(recorded_tools("43.8.11\n")["electron"], "43.8.11");
    }

    #[test]
    fn merge_writes_sha256sum_compatible_sums_over_every_arch() {
        let d = tempfile::tempdir().unwrap();
        record(d.path(), &manifest(d.path(), Arch::Arm64, "k_1.2.3_arm64.deb", b"arm64")).unwrap();
        let merged = record(d.path(), &manifest(d.path(), Arch::Armv7l, "k_1.2.3_armhf.deb", b"armhf")).unwrap();
        assert_eq!(merged.artifacts.len(), 2);
        let sums = std::fs::read_to_string(d.path().join(SUMS)).unwrap();
        assert_eq!(sums.lines().count(), 2);
        assert!(sums.lines().next().unwrap().ends_with("  k_1.2.3_arm64.deb"), "{sums}");
        let out = std::process::Command::new("sha256sum").args(["-c", SUMS]).current_dir(d.path()).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
        let json: serde_json::Value = serde_json::from_slice(&std::fs::read(d.path().join(MERGED)).unwrap()).unwrap();
        let archs: Vec<_> = json["artifacts"].as_array().unwrap().iter().map(|a| a["arch"].clone()).collect();
        assert!(archs.contains(&"armv7l".into()) && archs.contains(&"arm64".into()), "{json}");
        assert_eq!(json["services"].as_object().unwrap().len(), 2, "{json}");
    }

    #[test]
    fn merge_refuses_a_changed_artifact_and_mixed_commits() {
        let d = tempfile::tempdir().unwrap();
        record(d.path(), &manifest(d.path(), Arch::Arm64, "a.deb", b"arm64")).unwrap();
        std::fs::write(d.path().join("a.deb"), b"tampered").unwrap();
        let err = format!("{:#}", merge(d.path()).err().unwrap());
        assert!(err.contains("a.deb: 8 bytes, but dist-manifest.arm64.json says 5"), "{err}");

        let d = tempfile::tempdir().unwrap();
        record(d.path(), &manifest(d.path(), Arch::Arm64, "a.deb", b"a")).unwrap();
        let mut other = manifest(d.path(), Arch::X64, "b.deb", b"b");
        other.git_commit = "def".into();
        let err = format!("{:#}", record(d.path(), &other).unwrap_err());
        assert!(err.contains("git_commit def") && err.contains("same commit"), "{err}");
    }
}
