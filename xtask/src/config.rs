//! dist.yaml → typed config. Every error names file:line:column, the bad value and what is
//! expected, because a release tool that guesses at a typo ships the wrong thing.

use std::{
    collections::BTreeMap,
    fmt,
    path::{Path, PathBuf},
    str::FromStr,
};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Deserializer, Serialize};

use crate::arch::Arch;

mod keys;
mod located;

use located::{at, key_at, located, target_at};

pub const CONFIG_FILE: &str = "dist.yaml";

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DistConfig {
    pub product: Product,
    pub python: Python,
    /// Each arch once, under its name or one alias.
    #[serde(deserialize_with = "keys::arches")]
    pub targets: BTreeMap<Arch, TargetConfig>,
    #[serde(deserialize_with = "keys::unique")]
    pub services: BTreeMap<String, Service>,
    #[serde(default)]
    pub shared_sources: Vec<PathBuf>,
    #[serde(deserialize_with = "keys::unique")]
    pub envs: BTreeMap<String, PathBuf>,
    #[serde(default)]
    pub docker: Docker,
    #[serde(default)]
    pub electron: Electron,
    pub packaging: Packaging,
    /// Boards `cargo xtask deploy` installs the release on.
    #[serde(default)]
    pub deploy: Deploy,
    /// `cargo xtask apt-repo`: the APT repository the .debs are published into.
    #[serde(default)]
    pub apt_repo: AptRepoConfig,
}

/// `deploy:`: named groups of boards (`--host @group`) and the ssh options every connection
/// takes. Keys, agents and aliases come from the user's own ssh set-up.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Deploy {
    /// group name -> `user@host` or `user@host:port` entries.
    #[serde(default, deserialize_with = "keys::unique")]
    pub hosts: BTreeMap<String, Vec<String>>,
    /// Passed as `-o OPTION` to every ssh and scp, e.g. `IdentityFile=~/.ssh/kitchen`.
    #[serde(default)]
    pub ssh_options: Vec<String>,
}

/// `apt_repo:` in dist.yaml; every key optional (flags override them).
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AptRepoConfig {
    /// Release's Origin (default: product.product_name).
    pub origin: Option<String>,
    /// Release's Label (default: product.product_name).
    pub label: Option<String>,
    /// The suite (and codename), default `stable`.
    pub suite: Option<String>,
    /// Only `[main]` is supported: one component holds every package.
    pub components: Option<Vec<String>>,
    /// Versions kept per package and arch (default 3).
    pub keep: Option<usize>,
    /// Release's Valid-Until, this many days after its Date: clients refuse a stale index.
    pub valid_for_days: Option<u32>,
    /// The repository folder (relative to this file), when `--into` is not given.
    pub into: Option<PathBuf>,
    /// The URL clients fetch from, written into the .sources file (default `file:<into>`).
    pub url: Option<String>,
}

/// Where electron-builder takes the Electron binaries from.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Electron {
    /// An unpacked Electron of the pinned version for the target (electron-builder's
    /// `electronDist`); `{arch}` is replaced by the target's name. The environment variable
    /// KT_ELECTRON_DIST overrides it. Unset: electron-builder downloads Electron itself.
    #[serde(default)]
    pub dist: Option<String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Product {
    pub name: String,
    pub product_name: String,
    pub version_from: PathBuf,
    pub description: String,
    pub homepage: String,
    pub maintainer: String,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Python {
    /// The Python project folder; service entries, envs and requirements are relative to it.
    pub dir: PathBuf,
    pub interpreter: String,
    pub requirements: PathBuf,
    pub build_requirements: PathBuf,
    pub dev_requirements: PathBuf,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    #[serde(default)]
    pub glibc: Option<GlibcVersion>,
    #[serde(default)]
    pub engine: EngineChoice,
    /// A buildx builder name (`docker buildx build --builder NAME`).
    #[serde(default)]
    pub builder: Option<String>,
    /// A docker context (`docker --context NAME`), e.g. a native remote arm64 node.
    #[serde(default)]
    pub context: Option<String>,
    /// An engine endpoint (`DOCKER_HOST`), e.g. `ssh://pi@arm64-builder` or `unix:///...`.
    #[serde(default)]
    pub docker_host: Option<String>,
    /// What container builds start from; its glibc is the floor of everything built on it.
    #[serde(default)]
    pub base: Base,
    /// Runtime requirements for this arch instead of `python.requirements`.
    #[serde(default)]
    pub requirements: Option<PathBuf>,
}

/// The base image of container builds.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "BaseSpec", rename_all = "lowercase")]
pub enum Base {
    /// A registry image, e.g. `python:3.11-slim-bookworm`, matching the target OS's glibc.
    Image(String),
    /// Built here from Debian packages (`cargo xtask base-image`): no registry needed.
    Debootstrap(Suite),
}

impl Default for Base {
    fn default() -> Base {
        Base::Image("python:3.11-slim-bookworm".into())
    }
}

/// As dist.yaml writes it inside `base: {...}`: `image: NAME` or `debootstrap: SUITE`.
impl fmt::Display for Base {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Base::Image(image) => write!(f, "image: {image}"),
            Base::Debootstrap(suite) => write!(f, "debootstrap: {suite}"),
        }
    }
}

/// `base: {image: NAME}` or `base: {debootstrap: SUITE}` (serde_yaml would want a `!tag`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BaseSpec {
    image: Option<String>,
    debootstrap: Option<Suite>,
}

impl TryFrom<BaseSpec> for Base {
    type Error = &'static str;
    fn try_from(s: BaseSpec) -> Result<Base, &'static str> {
        match (s.image, s.debootstrap) {
            (Some(i), None) => Ok(Base::Image(i)),
            (None, Some(d)) => Ok(Base::Debootstrap(d)),
            _ => Err("expected exactly one of `image: NAME` or `debootstrap: SUITE`"),
        }
    }
}

/// A Debian release a target OS is built on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Suite {
    Bookworm,
    Bullseye,
}

impl Suite {
    /// The build-base image `cargo xtask base-image` makes of this suite for `arch`.
    pub fn build_image(self, arch: Arch) -> String {
        format!("kitchntabs-build-base:{}-{arch}", self.name())
    }

    pub fn name(self) -> &'static str {
        match self {
            Suite::Bookworm => "bookworm",
            Suite::Bullseye => "bullseye",
        }
    }

    /// The suite's glibc: every bundle built on it needs at least this.
    pub fn glibc(self) -> GlibcVersion {
        match self {
            Suite::Bookworm => GlibcVersion { major: 2, minor: 36 },
            Suite::Bullseye => GlibcVersion { major: 2, minor: 31 },
        }
    }
}

impl fmt::Display for Suite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum EngineChoice {
    /// Native where host = target, else the first container engine found.
    #[default]
    Auto,
    /// PyInstaller on this host (the host must be the target).
    Native,
    /// `docker buildx build` (optionally on the target's `builder`).
    Buildx,
    /// `DOCKER_BUILDKIT=1 docker build`: Docker clients before 23 have BuildKit built in.
    Docker,
    /// `podman build`.
    Podman,
}

impl EngineChoice {
    /// The name dist.yaml's `engine:` and `--engine` take.
    pub fn name(self) -> &'static str {
        match self {
            EngineChoice::Auto => "auto",
            EngineChoice::Native => "native",
            EngineChoice::Buildx => "buildx",
            EngineChoice::Docker => "docker",
            EngineChoice::Podman => "podman",
        }
    }
}

impl fmt::Display for EngineChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Entry script, relative to `python.dir`.
    pub entry: PathBuf,
    /// Extra `--add-data SRC:DEST` pairs, SRC relative to `python.dir`.
    #[serde(default)]
    pub add_data: Vec<DataSpec>,
    #[serde(default)]
    pub collect_data: Vec<String>,
    #[serde(default)]
    pub hidden_imports: Vec<String>,
}

/// `SRC:DEST` as PyInstaller's `--add-data` takes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DataSpec {
    pub src: PathBuf,
    pub dest: String,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Docker {
    pub executable: String,
    pub dockerfile: PathBuf,
}

impl Default for Docker {
    fn default() -> Docker {
        Docker { executable: "docker".into(), dockerfile: "docker/Dockerfile.services".into() }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Packaging {
    pub deb: DebPackaging,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DebPackaging {
    pub section: String,
    pub priority: String,
    pub depends: Vec<String>,
    #[serde(default)]
    pub recommends: Vec<String>,
    #[serde(default)]
    pub compression: Codec,
    /// The codec's level; default xz 6 and gzip 9 (dpkg-deb's), zstd 19.
    #[serde(default)]
    pub compression_level: Option<u32>,
    #[serde(default)]
    pub kiosk_service: bool,
    /// `User=` of the kiosk unit (Raspberry Pi OS before bookworm made `pi`).
    #[serde(default = "default_kiosk_user")]
    pub kiosk_user: String,
    /// Folder of square PNG icons named `<N>x<N>.png` (hicolor theme sizes).
    pub icons: PathBuf,
    /// Short license name for /usr/share/doc/<package>/copyright, e.g. MIT.
    pub license: String,
    /// The license text shipped in the copyright file.
    pub license_file: PathBuf,
    /// Boards that update themselves: install an unattended-upgrades origin pattern for the
    /// project's APT repository (`/etc/apt/apt.conf.d/52<name>-unattended-upgrades`) and
    /// recommend unattended-upgrades. Left out of the step values when off: packages of
    /// configs without it keep their fingerprint.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unattended_upgrades: bool,
}

fn default_kiosk_user() -> String {
    "pi".into()
}

impl Codec {
    pub fn level(self, configured: Option<u32>) -> u32 {
        configured.unwrap_or(match self {
            Codec::Xz => 6,
            Codec::Gzip => 9,
            Codec::Zstd => 19,
        })
    }

    pub fn max_level(self) -> u32 {
        match self {
            Codec::Xz | Codec::Gzip => 9,
            Codec::Zstd => 19,
        }
    }

    /// The name `packaging.deb.compression` takes.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Xz => "xz",
            Codec::Zstd => "zstd",
            Codec::Gzip => "gzip",
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    #[default]
    Xz,
    Zstd,
    Gzip,
}

/// A glibc version such as "2.31", compared numerically (2.4 < 2.31).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct GlibcVersion {
    pub major: u32,
    pub minor: u32,
}

impl FromStr for GlibcVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid glibc version `{s}`, expected MAJOR.MINOR such as \"2.31\"");
        let (major, minor) = s.split_once('.').ok_or_else(bad)?;
        Ok(GlibcVersion { major: major.parse().map_err(|_| bad())?, minor: minor.parse().map_err(|_| bad())? })
    }
}

impl fmt::Display for GlibcVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl<'de> Deserialize<'de> for GlibcVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A bare YAML number is refused: `2.40` would be read as the float 2.4.
        let v = serde_yaml::Value::deserialize(d)?;
        match &v {
            serde_yaml::Value::String(s) => s.parse().map_err(serde::de::Error::custom),
            serde_yaml::Value::Number(n) => Err(serde::de::Error::custom(format!(
                "glibc version {n} is a YAML number (2.40 would read as 2.4); quote it: \"{n}\""
            ))),
            other => Err(serde::de::Error::custom(format!(
                "invalid glibc version {}, expected a string such as \"2.31\"",
                yaml_kind(other)
            ))),
        }
    }
}

/// A YAML value as an error names it: `true` (a boolean), a mapping...
fn yaml_kind(v: &serde_yaml::Value) -> String {
    use serde_yaml::Value;
    match v {
        Value::Null => "null (no value)".into(),
        Value::Bool(b) => format!("`{b}` (a boolean)"),
        Value::Number(n) => format!("`{n}` (a number)"),
        Value::String(s) => format!("`{s}`"),
        Value::Sequence(_) => "a sequence".into(),
        Value::Mapping(_) => "a mapping".into(),
        Value::Tagged(t) => format!("a value tagged {}", t.tag),
    }
}

impl Serialize for GlibcVersion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DataSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.rsplit_once(':') {
            Some((src, dest)) if !src.is_empty() && !dest.is_empty() => {
                Ok(DataSpec { src: src.into(), dest: dest.into() })
            }
            _ => Err(serde::de::Error::custom(format!(
                "invalid add_data `{s}`, expected SRC:DEST such as \"assets/logo.png:assets\""
            ))),
        }
    }
}

static LOADS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// How many times this process has read a dist.yaml (a test checks a run reads it once).
pub fn loads() -> usize {
    LOADS.load(std::sync::atomic::Ordering::Relaxed)
}

/// The loaded configuration: dist.yaml plus what it points at, checked.
#[derive(Debug)]
pub struct Config {
    pub root: PathBuf,
    pub dist: DistConfig,
    /// From `product.version_from`.
    pub version: String,
    /// electron-app/package.json, read once.
    pub app: crate::package_json::AppManifest,
}

/// The checkout a command acts on when no `--root` is given: the nearest folder at or above
/// `cwd` that holds dist.yaml, else the one above `manifest_dir` (cargo sets
/// CARGO_MANIFEST_DIR for `cargo run`, so `cargo --manifest-path other/Cargo.toml xtask` works
/// from anywhere). Never the folder the binary was compiled in: a shared target dir or a copied
/// binary would act on another checkout.
pub fn find_root(cwd: &Path, manifest_dir: Option<&Path>) -> Result<PathBuf> {
    let holding = |start: &Path| start.ancestors().find(|d| d.join(CONFIG_FILE).is_file()).map(Path::to_path_buf);
    if let Some(root) = holding(cwd) {
        return Ok(root);
    }
    if let Some(root) = manifest_dir.and_then(holding) {
        return Ok(root);
    }
    bail!(
        "no {CONFIG_FILE} in {} or any folder above it: run cargo xtask inside a KitchnTabs checkout, or pass --root DIR",
        cwd.display()
    )
}

impl Config {
    /// Read and check `root`'s dist.yaml: once per command, in `main` (the plan carries what
    /// every step needs).
    pub fn load(root: &Path) -> Result<Config> {
        LOADS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = root.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!("cannot read {}: --root must name a checkout that holds {CONFIG_FILE}", path.display())
        })?;
        Config::parse(root, &text)
    }

    /// Parse and check `text` as the dist.yaml of `root`.
    pub fn parse(root: &Path, text: &str) -> Result<Config> {
        let dist: DistConfig = serde_yaml::from_str(text).map_err(|e| located(text, e))?;
        let version = crate::package_json::version(&root.join(&dist.product.version_from))
            .map_err(|e| anyhow::anyhow!("{}: product.version_from: {e:#}", at(text, &dist.product.version_from)))?;
        let app = crate::package_json::AppManifest::read(root)?;
        let config = Config { root: root.to_path_buf(), dist, version, app };
        config.check_paths(text)?;
        Ok(config)
    }

    /// The runtime requirements bundled for `arch`: the target's own pins when it has them
    /// (`targets.<arch>.requirements`), else `python.requirements`; native and container
    /// builds alike.
    pub fn requirements_for(&self, arch: Arch) -> PathBuf {
        self.dist
            .targets
            .get(&arch)
            .and_then(|t| t.requirements.clone())
            .unwrap_or_else(|| self.dist.python.requirements.clone())
    }

    /// The image a target's container builds start from: dist.yaml's `base: {image: ...}`, or
    /// the build-base image `cargo xtask base-image` makes from a debootstrap rootfs.
    pub fn base_image(&self, arch: Arch) -> Result<String> {
        Ok(match &self.target(arch)?.base {
            Base::Image(i) => i.clone(),
            Base::Debootstrap(suite) => suite.build_image(arch),
        })
    }

    pub fn python_dir(&self) -> PathBuf {
        self.root.join(&self.dist.python.dir)
    }

    pub fn target(&self, arch: Arch) -> Result<&TargetConfig> {
        self.dist.targets.get(&arch).with_context(|| {
            let have: Vec<_> = self.dist.targets.keys().map(|a| a.name()).collect();
            format!(
                "{CONFIG_FILE}: targets: no entry for `{arch}` (configured: {}); add `targets.{arch}`",
                have.join(", ")
            )
        })
    }

    pub fn env_file(&self, env: &str) -> Result<&Path> {
        self.dist.envs.get(env).map(PathBuf::as_path).with_context(|| {
            let have: Vec<_> = self.dist.envs.keys().map(String::as_str).collect();
            format!("unknown env `{env}`, expected one of {} (dist.yaml: envs)", have.join(", "))
        })
    }

    /// Paths must exist now, not halfway through a 10-minute build.
    fn check_paths(&self, text: &str) -> Result<()> {
        let py = &self.dist.python;
        let mut missing = Vec::new();
        let mut need = |field: String, rel: &Path, base: &Path| {
            if !self.root.join(base).join(rel).exists() {
                missing.push(format!(
                    "{}: {field}: `{}` does not exist (looked for {}); fix the path or create the file",
                    at(text, rel),
                    rel.display(),
                    base.join(rel).display()
                ));
            }
        };
        need("python.dir".into(), &py.dir, Path::new(""));
        need("packaging.deb.icons".into(), &self.dist.packaging.deb.icons, Path::new(""));
        need("packaging.deb.license_file".into(), &self.dist.packaging.deb.license_file, Path::new(""));
        need("python.requirements".into(), &py.requirements, &py.dir);
        need("python.build_requirements".into(), &py.build_requirements, &py.dir);
        need("python.dev_requirements".into(), &py.dev_requirements, &py.dir);
        for (name, s) in &self.dist.services {
            need(format!("services.{name}.entry"), &s.entry, &py.dir);
            for d in &s.add_data {
                need(format!("services.{name}.add_data"), &d.src, &py.dir);
            }
        }
        for p in &self.dist.shared_sources {
            need("shared_sources".into(), p, &py.dir);
        }
        for (name, file) in &self.dist.envs {
            need(format!("envs.{name}"), file, &py.dir);
        }
        for (arch, t) in &self.dist.targets {
            if let Some(r) = &t.requirements {
                need(format!("targets.{arch}.requirements"), r, &py.dir);
            }
        }
        // Module and package names only: they are passed through a Dockerfile ARG split on
        // spaces, and anything else is a typo PyInstaller would only warn about.
        for (name, s) in &self.dist.services {
            let names = s
                .collect_data
                .iter()
                .map(|n| ("collect_data", n))
                .chain(s.hidden_imports.iter().map(|n| ("hidden_imports", n)));
            for (field, n) in names {
                let ok = !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
                if !ok {
                    missing.push(format!(
                        "{}: services.{name}.{field}: `{n}` is not a Python module name (letters, digits, `_`, `.`, `-`)",
                        at(text, Path::new(n))
                    ));
                }
            }
        }
        // A bundle needs the glibc of the OS it was built on (libpython, libexpat inside it):
        // a bookworm base cannot serve a bullseye target, whatever the bootloader needs.
        for (arch, t) in &self.dist.targets {
            if let (Base::Debootstrap(suite), Some(floor)) = (&t.base, t.glibc)
                && suite.glibc() > floor
            {
                missing.push(format!(
                        "{}: targets.{arch}.base: {} has glibc {}, above the target's floor {floor}; \
                         binaries built on it would not run there: use a base with glibc <= {floor} (e.g. `debootstrap: bullseye`)",
                        target_at(text, *arch, "base"),
                        suite.name(),
                        suite.glibc()
                    ));
            }
        }
        let deb = &self.dist.packaging.deb;
        if let Some(level) = deb.compression_level
            && (level > deb.compression.max_level() || (deb.compression == Codec::Zstd && level == 0))
        {
            missing.push(format!(
                "{}: packaging.deb.compression_level: {level} is out of range for {}; use {}..={}",
                key_at(text, &["packaging", "deb", "compression_level"]),
                deb.compression,
                u32::from(deb.compression == Codec::Zstd),
                deb.compression.max_level()
            ));
        }
        // dpkg reads zstd members from 1.21.18 (bookworm, glibc 2.36); bullseye's cannot.
        if deb.compression == Codec::Zstd {
            for (arch, t) in &self.dist.targets {
                if let Some(floor) = t.glibc
                    && floor < Suite::Bookworm.glibc()
                {
                    missing.push(format!(
                        "{}: packaging.deb.compression: zstd, but targets.{arch}.glibc {floor} means a \
                         bullseye-era OS whose dpkg cannot unpack zstd members; use `compression: xz`",
                        key_at(text, &["packaging", "deb", "compression"])
                    ));
                }
            }
        }
        if self.dist.services.is_empty() {
            missing.push(format!("{}: services: empty; declare at least one service", key_at(text, &["services"])));
        }
        if !self.dist.envs.contains_key("default") {
            missing.push(format!("{}: envs: no `default` env; add `default: config.yaml`", key_at(text, &["envs"])));
        }
        if missing.is_empty() { Ok(()) } else { bail!("{}", missing.join("\n")) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
    }

    fn repo_text() -> String {
        std::fs::read_to_string(repo_root().join(CONFIG_FILE)).unwrap()
    }

    fn parse_err(text: &str) -> String {
        format!("{:#}", Config::parse(&repo_root(), text).unwrap_err())
    }

    #[test]
    fn the_repository_config_loads() {
        let c = Config::load(&repo_root()).unwrap();
        assert_eq!(c.dist.product.name, "kitchntabs");
        assert_eq!(c.dist.product.product_name, "KitchnTabs");
        assert_eq!(c.dist.services.len(), 3);
        assert_eq!(c.target(Arch::Armv7l).unwrap().glibc, Some(GlibcVersion { major: 2, minor: 36 }));
        let pkg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(repo_root().join("electron-app/package.json")).unwrap())
                .unwrap();
        assert_eq!(c.version, pkg["version"].as_str().unwrap());
    }

    #[test]
    fn unknown_key_names_line_column_and_choices() {
        let text = repo_text().replace(
            "  arm64:\n    glibc: \"2.36\"\n    engine: auto",
            "  arm64:\n    glibc: \"2.36\"\n    enigne: auto",
        );
        let line = text.lines().position(|l| l.contains("enigne")).unwrap() + 1;
        let err = parse_err(&text);
        assert!(
            err.starts_with(&format!("dist.yaml:{line}:5: targets.arm64: unknown field `enigne`, expected one of")),
            "{err}"
        );
        assert!(err.contains("`engine`"), "{err}");
        assert!(err.contains("|     enigne: auto"), "{err}");
    }

    #[test]
    fn apt_repo_keys_are_optional_and_unknown_ones_refused() {
        let text = repo_text().replace("apt_repo: {}", "apt_repo:\n  keep: 5\n  valid_for_day: 7");
        let err = parse_err(&text);
        assert!(err.contains("apt_repo: unknown field `valid_for_day`") && err.contains("`valid_for_days`"), "{err}");
        let text = repo_text().replace("apt_repo: {}", "apt_repo:\n  keep: 5\n  into: public/apt");
        let c = Config::parse(&repo_root(), &text).unwrap();
        assert_eq!((c.dist.apt_repo.keep, c.dist.apt_repo.into), (Some(5), Some(PathBuf::from("public/apt"))));
        assert_eq!(c.dist.apt_repo.suite, None);
    }

    #[test]
    fn missing_field_names_the_struct_location() {
        let text = repo_text().replace("  product_name: KitchnTabs\n", "");
        // serde_yaml places a missing field at the start of its mapping: the first key.
        let line = text.lines().position(|l| l == "  name: kitchntabs").unwrap() + 1;
        let err = parse_err(&text);
        assert!(err.starts_with(&format!("dist.yaml:{line}:3: product: missing field `product_name`")), "{err}");
    }

    #[test]
    fn bad_arch_key_lists_the_choices() {
        let text = repo_text().replace("  arm64:\n", "  armv8:\n");
        let line = text.lines().position(|l| l == "  armv8:").unwrap() + 1;
        let err = parse_err(&text);
        assert!(
            err.starts_with(&format!("dist.yaml:{line}:3: targets: unknown arch `armv8`, expected one of armv7l")),
            "{err}"
        );
    }

    #[test]
    fn bad_glibc_and_engine_values_say_what_is_expected() {
        let text = repo_text().replacen("glibc: \"2.36\"", "glibc: \"two\"", 1);
        let line = text.lines().position(|l| l.contains("\"two\"")).unwrap() + 1;
        let err = parse_err(&text);
        assert!(
            err.starts_with(&format!(
                "dist.yaml:{line}:13: targets.armv7l: invalid glibc version `two`, expected MAJOR.MINOR"
            )),
            "{err}"
        );
        let err = parse_err(&repo_text().replacen("    engine: auto", "    engine: kubernetes", 1));
        assert!(err.contains("targets.armv7l.engine: unknown variant `kubernetes`, expected one of `auto`, `native`, `buildx`, `docker`, `podman`"), "{err}");
    }

    #[test]
    fn base_is_an_image_or_a_debootstrap_suite_and_respects_the_floor() {
        let c = Config::load(&repo_root()).unwrap();
        assert_eq!(c.target(Arch::Armv7l).unwrap().base, Base::Debootstrap(Suite::Bookworm));
        let text = repo_text().replacen("base: {debootstrap: bookworm}", "base: {debootstrap: bookworm, image: x}", 1);
        let err = parse_err(&text);
        assert!(err.contains("targets.armv7l: expected exactly one of `image: NAME` or `debootstrap: SUITE`"), "{err}");
        let text = repo_text().replacen("glibc: \"2.36\"", "glibc: \"2.31\"", 1);
        let err = parse_err(&text);
        assert!(err.contains("targets.armv7l.base: bookworm has glibc 2.36, above the target's floor 2.31"), "{err}");
        let text = text.replacen("base: {debootstrap: bookworm}", "base: {debootstrap: bullseye}", 1);
        assert_eq!(
            Config::parse(&repo_root(), &text).unwrap().target(Arch::Armv7l).unwrap().base,
            Base::Debootstrap(Suite::Bullseye)
        );
    }

    #[test]
    fn enums_are_shown_with_the_names_dist_yaml_uses() {
        assert_eq!(Base::Debootstrap(Suite::Bookworm).to_string(), "debootstrap: bookworm");
        assert_eq!(Base::Image("python:3.11-slim-bookworm".into()).to_string(), "image: python:3.11-slim-bookworm");
        for (c, name) in [(Codec::Xz, "xz"), (Codec::Zstd, "zstd"), (Codec::Gzip, "gzip")] {
            assert_eq!(c.to_string(), name);
            assert_eq!(serde_yaml::from_str::<Codec>(name).unwrap(), c);
        }
        for e in
            [EngineChoice::Auto, EngineChoice::Native, EngineChoice::Buildx, EngineChoice::Docker, EngineChoice::Podman]
        {
            assert_eq!(serde_yaml::from_str::<EngineChoice>(e.name()).unwrap(), e);
            assert_eq!(<EngineChoice as clap::ValueEnum>::from_str(e.name(), false).unwrap(), e);
        }
    }

    #[test]
    fn glibc_versions_are_quoted_and_compare_numerically() {
        let v: GlibcVersion = serde_yaml::from_str("\"2.40\"").unwrap();
        assert_eq!((v.major, v.minor), (2, 40));
        let err = serde_yaml::from_str::<GlibcVersion>("2.40").unwrap_err().to_string();
        assert!(err.contains("glibc version 2.4 is a YAML number (2.40 would read as 2.4); quote it"), "{err}");
        assert!("2.4".parse::<GlibcVersion>().unwrap() < "2.31".parse().unwrap());
        for (yaml, said) in [("true", "`true` (a boolean)"), ("{a: 1}", "a mapping"), ("~", "null (no value)")] {
            let err = serde_yaml::from_str::<GlibcVersion>(yaml).unwrap_err().to_string();
            assert!(err.starts_with(&format!("invalid glibc version {said}, expected a string")), "{err}");
        }
    }

    #[test]
    fn missing_files_are_reported_with_their_field() {
        let text = repo_text().replace("entry: src/tts_service.py", "entry: src/tts.py");
        let line = text.lines().position(|l| l.contains("src/tts.py")).unwrap() + 1;
        let err = parse_err(&text);
        assert!(
            err.contains(&format!("dist.yaml:{line}:12: services.tts_service.entry: `src/tts.py` does not exist (looked for python-service/src/tts.py)")),
            "{err}"
        );
    }

    /// 1-based line and column of the `n`-th (0-based) line of `text` that starts with `start`
    /// after its indentation.
    fn nth_line(text: &str, start: &str, n: usize) -> (usize, usize) {
        let (i, l) = text.lines().enumerate().filter(|(_, l)| l.trim_start().starts_with(start)).nth(n).unwrap();
        (i + 1, l.len() - l.trim_start().len() + 1)
    }

    #[test]
    fn two_names_of_one_arch_are_refused_at_the_second() {
        // Both keys parse to arm64; a map would keep the last and drop the other's glibc floor.
        let text = repo_text().replace("  x64:\n", "  aarch64:\n    glibc: \"2.31\"\n  x64:\n");
        let ((l0, c0), (l1, c1)) = (nth_line(&text, "arm64:", 0), nth_line(&text, "aarch64:", 0));
        assert!(l1 > l0);
        let err = parse_err(&text);
        assert!(
            err.starts_with(&format!(
                "dist.yaml:{l1}:{c1}: targets: `aarch64` and `arm64` name the same arch, arm64 \
                 (the first is at line {l0}:{c0}); keep one of the two\n  {l1} |   aarch64:"
            )),
            "{err}"
        );
        // The other way round: the arch's own name second.
        let text = repo_text()
            .replace("  arm64:\n", "  aarch64:\n")
            .replace("  x64:\n", "  arm64:\n    engine: auto\n  x64:\n");
        let ((l0, _), (l1, _)) = (nth_line(&text, "aarch64:", 0), nth_line(&text, "arm64:", 0));
        let err = parse_err(&text);
        assert!(
            err.starts_with(&format!(
                "dist.yaml:{l1}:3: targets: `arm64` and `aarch64` name the same arch, arm64 (the first is at line {l0}:3)"
            )),
            "{err}"
        );
    }

    #[test]
    fn a_duplicate_key_is_reported_where_it_repeats() {
        // A struct's field: serde_yaml itself marks the mapping's first key.
        let text = repo_text().replace(
            "  arm64:\n    glibc: \"2.36\"\n    engine: auto\n",
            "  arm64:\n    glibc: \"2.36\"\n    engine: auto\n    glibc: \"2.31\"\n",
        );
        let (first, second) = (nth_line(&text, "glibc: \"2.36\"", 1), nth_line(&text, "glibc: \"2.31\"", 0));
        let err = parse_err(&text);
        assert!(
            err.starts_with(&format!(
                "dist.yaml:{}:5: targets.arm64: duplicate key `glibc` (the first is at line {}:5); keep one of the two\n  {} |     glibc: \"2.31\"",
                second.0, first.0, second.0
            )),
            "{err}"
        );
        // A map's key: serde would keep the second service and drop the first without a word.
        let text = repo_text().replace(
            "    entry: src/tts_service.py\n",
            "    entry: src/tts_service.py\n  kt_service:\n    entry: src/kt_service.py\n",
        );
        let (first, second) = (nth_line(&text, "kt_service:", 0), nth_line(&text, "kt_service:", 1));
        let err = parse_err(&text);
        assert!(
            err.starts_with(&format!(
                "dist.yaml:{}:3: services: duplicate key `kt_service` (the first is at line {}:3)",
                second.0, first.0
            )),
            "{err}"
        );
        let text =
            repo_text().replace("  prod: config.prod.yaml\n", "  prod: config.prod.yaml\n  ngrok: config.yaml\n");
        let (first, second) = (nth_line(&text, "ngrok:", 0), nth_line(&text, "ngrok:", 1));
        let err = parse_err(&text);
        assert!(
            err.starts_with(&format!(
                "dist.yaml:{}:3: envs: duplicate key `ngrok` (the first is at line {}:3)",
                second.0, first.0
            )),
            "{err}"
        );
        // In a flow mapping, and at the top level.
        let text = repo_text().replacen(
            "base: {debootstrap: bookworm}",
            "base: {debootstrap: bookworm, debootstrap: bullseye}",
            1,
        );
        let (line, _) = nth_line(&text, "base: {debootstrap: bookworm, debootstrap", 0);
        let err = parse_err(&text);
        assert!(
            err.starts_with(&format!(
                "dist.yaml:{line}:35: targets.armv7l.base: duplicate key `debootstrap` (the first is at line {line}:12)"
            )),
            "{err}"
        );
        let text = format!("{}shared_sources: []\n", repo_text());
        let (first, second) = (nth_line(&text, "shared_sources:", 0), nth_line(&text, "shared_sources:", 1));
        let err = parse_err(&text);
        assert!(
            err.starts_with(&format!(
                "dist.yaml:{}:1: duplicate key `shared_sources` (the first is at line {}:1)",
                second.0, first.0
            )),
            "{err}"
        );
    }

    #[test]
    fn tab_indentation_says_to_indent_with_spaces() {
        for (indent, column) in [("\t", 1), ("  \t", 3), ("    \t", 5)] {
            let text = repo_text().replacen("    engine: auto\n", &format!("{indent}engine: auto\n"), 1);
            let (line, _) = nth_line(&text, "engine: auto", 0);
            let err = parse_err(&text);
            assert!(
                err.starts_with(&format!(
                    "dist.yaml:{line}:{column}: tabs are not allowed in YAML indentation; indent with spaces"
                )),
                "{indent:?}: {err}"
            );
        }
        // The first key of a block of the top-level mapping.
        let text = repo_text().replacen("  name: kitchntabs\n", "\tname: kitchntabs\n", 1);
        let err = parse_err(&text);
        assert!(err.starts_with("dist.yaml:5:1: tabs are not allowed in YAML indentation"), "{err}");
    }

    #[test]
    fn zstd_is_refused_for_a_bullseye_floor_and_levels_are_checked() {
        let text = repo_text().replace("    compression: xz\n", "    compression: zstd\n");
        assert!(Config::parse(&repo_root(), &text).is_ok(), "bookworm floors read zstd");
        let bullseye = text.replacen(
            "glibc: \"2.36\"\n    engine: auto\n    base: {debootstrap: bookworm}",
            "glibc: \"2.31\"\n    engine: auto\n    base: {debootstrap: bullseye}",
            1,
        );
        assert_ne!(bullseye, text);
        let err = parse_err(&bullseye);
        assert!(
            err.contains("packaging.deb.compression: zstd, but targets.armv7l.glibc 2.31 means a bullseye-era OS whose dpkg cannot unpack zstd members; use `compression: xz`"),
            "{err}"
        );
        let text = repo_text().replace("    compression: xz\n", "    compression: xz\n    compression_level: 10\n");
        assert!(parse_err(&text).contains("packaging.deb.compression_level: 10 is out of range for xz; use 0..=9"));
        let text = repo_text().replace("    compression: xz\n", "    compression: zstd\n    compression_level: 0\n");
        assert!(parse_err(&text).contains("packaging.deb.compression_level: 0 is out of range for zstd; use 1..=19"));
        let text = repo_text().replace("icons: electron-app/build/icons", "icons: electron-app/icons");
        assert!(parse_err(&text).contains("packaging.deb.icons: `electron-app/icons` does not exist"));
    }

    #[test]
    fn errors_found_after_parsing_name_the_line_and_column() {
        // dist.yaml's comment above `compression:` names compression_level too: the key is meant.
        let text = repo_text().replace("    compression: xz\n", "    compression: xz\n    compression_level: 10\n");
        let (line, _) = nth_line(&text, "compression_level: 10", 0);
        let err = parse_err(&text);
        assert!(
            err.starts_with(&format!("dist.yaml:{line}:24: packaging.deb.compression_level: 10 is out of range")),
            "{err}"
        );
        let text = repo_text().replacen("glibc: \"2.36\"", "glibc: \"2.31\"", 1);
        let (line, _) = nth_line(&text, "base: {debootstrap: bookworm}", 0);
        let err = parse_err(&text);
        assert!(
            err.starts_with(&format!("dist.yaml:{line}:11: targets.armv7l.base: bookworm has glibc 2.36")),
            "{err}"
        );
        // Under an alias of the arch, and two errors: each with its place.
        let base = line;
        let text =
            text.replace("  armv7l:\n", "  armhf:\n").replace("    compression: xz\n", "    compression: zstd\n");
        let (line, _) = nth_line(&text, "compression: zstd", 0);
        let err = parse_err(&text);
        assert!(err.starts_with(&format!("dist.yaml:{base}:11: targets.armv7l.base: bookworm")), "{err}");
        assert!(
            err.contains(&format!("\ndist.yaml:{line}:18: packaging.deb.compression: zstd, but targets.armv7l")),
            "{err}"
        );
    }

    #[test]
    fn version_must_be_semver_like() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("package.json"), r#"{"version": "1.0"}"#).unwrap();
        let err = format!("{:#}", crate::package_json::version(&dir.path().join("package.json")).unwrap_err());
        assert!(err.contains("version `1.0` is not MAJOR.MINOR.PATCH"), "{err}");
        std::fs::write(dir.path().join("package.json"), r#"{"name": "x"}"#).unwrap();
        let err = format!("{:#}", crate::package_json::version(&dir.path().join("package.json")).unwrap_err());
        assert!(err.contains("has no string field \"version\""), "{err}");
    }
}
