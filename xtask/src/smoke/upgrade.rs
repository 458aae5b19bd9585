//! `smoke-test --upgrade-from`: the upgrade a board gets from the project's APT repository,
//! in a Debian rootfs of the target's arch under QEMU.
//!
//! 1. The repository: with a previous .deb, both .debs are published (`apt_repo::publish`)
//!    into the rootfs at /srv and signed with KT_GPG_KEY or a throwaway key; with a URL,
//!    that repository and its keyring. It is the rootfs's only source (it has no network).
//! 2. `apt-get update` must refuse the repository under a wrong keyring and, for a published
//!    one, with a tampered `Packages` (every copy apt could fetch: Packages, Packages.xz,
//!    by-hash/), then accept it with the right keyring.
//! 3. `apt-get install <name>=<previous>`; its conffiles are edited; its kiosk unit (if any)
//!    must be enabled: the symlink in /etc/systemd/system/*.wants (no systemd runs in a chroot).
//! 4. With the origin pattern installed, `unattended-upgrade --dry-run --debug` must plan the
//!    new version.
//! 5. `apt-get upgrade`, with /run/systemd/system present so the maintainer scripts take their
//!    systemd branch, and a /usr/sbin/policy-rc.d that logs each request and answers 101
//!    ("not allowed"): deb-systemd-invoke asks it before every start/restart and then does
//!    nothing, so the log shows what the scripts asked for without a systemd to do it.
//!    No `--force-conf*`: an edited conffile the new version did not change is kept by
//!    dpkg's default, and a conffile prompt (stdin is /dev/null) fails the upgrade.
//! 6. The new version is installed, the edits are kept, `dpkg --verify` finds every other
//!    file as the new package has it, /usr/bin/<name> and its alternative resolve into the
//!    package, every service self-tests, the kiosk unit was try-restarted.
//! 7. `apt-get purge`; what the test added is removed; the tree is as before, but for apt's
//!    lists and state (var/lib/apt) and what `listing` skips.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::process::Command;

/// The key that signs a throwaway repository: KT_GPG_KEY in the user's keyring, or one
/// generated into `gnupg_home` by the plan.
#[derive(Clone, Debug, Serialize)]
pub struct SigningKey {
    pub key: String,
    pub gnupg_home: Option<PathBuf>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    /// Publish `previous` and the new .deb into a repository in the rootfs.
    Deb { previous: PathBuf, key: SigningKey },
    /// A repository that holds both versions, and its binary keyring.
    Repo { url: String, keyring: PathBuf },
}

/// Everything the upgrade test needs, fixed while planning.
#[derive(Clone, Debug, Serialize)]
pub struct Upgrade {
    pub rootfs: PathBuf,
    pub deb: PathBuf,
    pub scratch: PathBuf,
    pub package: String,
    pub services: Vec<String>,
    pub source: Source,
    /// The Origin and Suite a published repository gets, and the pattern unattended-upgrades
    /// is expected to match.
    pub origin: crate::deb::UnattendedOrigin,
    /// dist.yaml asks for the origin pattern: the package must ship it, and
    /// unattended-upgrade must see the new version.
    pub unattended: bool,
}

/// Where a published repository goes inside the rootfs.
const REPO_IN_ROOTFS: &str = "srv/smoke-test-repo";
/// What policy-rc.d logs to (under /tmp: not part of the compared tree).
const POLICY_LOG: &str = "tmp/policy-rc.d.log";

impl Upgrade {
    pub fn describe(&self) -> String {
        let name = &self.package;
        let repo = match &self.source {
            Source::Deb { previous, key } => format!(
                "publish {} and {} into /{REPO_IN_ROOTFS} (apt_repo, origin {}, suite {}, signed by {}{})",
                previous.display(),
                self.deb.display(),
                self.origin.origin,
                self.origin.suite,
                key.key,
                key.gnupg_home
                    .as_ref()
                    .map(|h| format!(" in GNUPGHOME={}, its gpg-agent stopped after", h.display()))
                    .unwrap_or_default()
            ),
            Source::Repo { url, keyring } => format!(
                "use {url}{} (keyring {})",
                if url.starts_with("file:") { ", copied into the rootfs at its path" } else { "" },
                keyring.display()
            ),
        };
        let tamper = if matches!(self.source, Source::Deb { .. }) { "a tampered Packages and " } else { "" };
        format!(
            "unpack {} into {}; {repo}; install its keyring and .sources as the only source; chroot: apt-get update \
             must refuse {tamper}a wrong keyring and accept the right one; apt-get install {name}=<previous>; edit its \
             conffiles; kiosk unit enabled{}; apt-get upgrade (policy-rc.d logs and denies); the new version, the \
             edits kept, /usr/bin/{name} and its alternative, {} --self-test, the kiosk unit try-restarted; apt-get \
             purge {name}; nothing may be left behind",
            self.rootfs.display(),
            self.scratch.display(),
            if self.unattended { "; unattended-upgrade --dry-run --debug plans the new version" } else { "" },
            self.services.join(" / ")
        )
    }
}

struct Root {
    dir: PathBuf,
}

impl Root {
    fn cmd(&self, args: &[&str]) -> Command {
        Command::new("chroot", Path::new("/"))
            .arg(&self.dir)
            .args(args)
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("LC_ALL", "C")
    }

    /// Run in the rootfs: stdout on success, else the command and all of its output.
    fn run(&self, args: &[&str]) -> Result<String> {
        let cmd = self.cmd(args);
        let out = crate::process::exec(&cmd)?;
        if !out.success {
            bail!("`{}` failed:\n{}{}", cmd.shell_line(), out.stdout, out.stderr);
        }
        Ok(out.stdout.trim().to_string())
    }

    /// Run in the rootfs: stdout and stderr on success (for tools that log to stderr).
    fn run_all(&self, args: &[&str]) -> Result<String> {
        let cmd = self.cmd(args);
        let out = crate::process::exec(&cmd)?;
        if !out.success {
            bail!("`{}` failed:\n{}{}", cmd.shell_line(), out.stdout, out.stderr);
        }
        Ok(format!("{}{}", out.stdout, out.stderr))
    }

    /// Run in the rootfs where failure is the expected answer: Ok(output) when it failed.
    fn refused(&self, args: &[&str], why: &str) -> Result<String> {
        let cmd = self.cmd(args);
        let out = crate::process::exec(&cmd)?;
        if out.success {
            bail!("`{}` succeeded, but {why}:\n{}{}", cmd.shell_line(), out.stdout, out.stderr);
        }
        Ok(format!("{}{}", out.stdout, out.stderr))
    }

    fn path(&self, abs: &str) -> PathBuf {
        self.dir.join(abs.trim_start_matches('/'))
    }

    /// Forget what earlier `apt-get update`s fetched, so each one stands on its own.
    fn clear_lists(&self) -> Result<()> {
        let lists = self.path("/var/lib/apt/lists");
        if lists.is_dir() {
            for e in std::fs::read_dir(&lists)? {
                let e = e?;
                if e.file_type()?.is_file() && e.file_name() != "lock" {
                    std::fs::remove_file(e.path())?;
                }
            }
        }
        Ok(())
    }
}

fn host(cmd: Command) -> Result<String> {
    super::output(cmd)
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    crate::fsx::write_atomic(path, bytes)
}

pub fn upgrade(u: &Upgrade) -> Result<()> {
    let started = std::time::Instant::now();
    if !u.deb.is_file() {
        bail!("{} does not exist: build it with `cargo xtask dist --arch <arch>` or pass --deb", u.deb.display());
    }
    let name = u.package.as_str();
    let deb_field = |deb: &Path, f: &str| host(Command::new("dpkg-deb", Path::new("/")).arg("--field").arg(deb).arg(f));
    let new_version = deb_field(&u.deb, "Version")?;
    let arch = deb_field(&u.deb, "Architecture")?;

    if let Source::Deb { previous, .. } = &u.source {
        // Before minutes of unpacking: the two packages must make an upgrade.
        let (prev_version, prev_arch) = (deb_field(previous, "Version")?, deb_field(previous, "Architecture")?);
        if prev_arch != arch {
            bail!(
                "{} is for {prev_arch}, {} for {arch}: the upgrade needs one arch",
                previous.display(),
                u.deb.display()
            );
        }
        newer(&new_version, &prev_version, previous, &u.deb)?;
    }
    let root = Root { dir: u.scratch.join("rootfs") };
    std::fs::create_dir_all(&root.dir).with_context(|| format!("cannot create {}", root.dir.display()))?;
    host(Command::new("tar", Path::new("/")).args(["--numeric-owner", "-xf"]).arg(&u.rootfs).arg("-C").arg(&root.dir))?;
    let before = super::listing(&root.dir)?;
    let _proc = super::ProcMount::new(&root.dir)?;

    // 1. The repository and its keyring.
    let keyring_in = format!("/usr/share/keyrings/{name}-archive-keyring.gpg");
    let sources_in = format!("/etc/apt/sources.list.d/{name}.sources");
    let mut copied = Vec::new();
    let (keyring, sources, previous, published) = match &u.source {
        Source::Deb { previous, key } => {
            let prev_version = deb_field(previous, "Version")?;
            let p = crate::apt_repo::Publish {
                debs: vec![previous.clone(), u.deb.clone()],
                into: root.dir.join(REPO_IN_ROOTFS),
                suite: u.origin.suite.clone(),
                keep: 2,
                origin: u.origin.origin.clone(),
                label: u.origin.origin.clone(),
                key: Some(key.key.clone()),
                valid_for_days: None,
                url: Some(format!("file:/{REPO_IN_ROOTFS}")),
                name: name.to_string(),
                gnupg_home: key.gnupg_home.clone(),
            };
            let published = crate::apt_repo::publish(&p);
            if let Some(home) = &key.gnupg_home {
                // Signing started a gpg-agent for the throwaway key: it ends with the signing.
                let kill = Command::new("gpgconf", Path::new("/")).env("GNUPGHOME", home.to_string_lossy());
                let _ = kill.args(["--kill", "gpg-agent"]).capture();
            }
            let published = published.context("cannot publish the throwaway repository")?;
            let keyring = published.keyring.clone().context("the repository was published unsigned")?;
            let sources = std::fs::read_to_string(&published.sources)
                .with_context(|| format!("cannot read {}", published.sources.display()))?;
            (std::fs::read(&keyring)?, sources, prev_version, true)
        }
        Source::Repo { url, keyring } => {
            if let Some(dir) = url.strip_prefix("file:") {
                // The rootfs sees only itself: the folder is copied in at the same path.
                let dir = Path::new(dir.trim_start_matches("//"));
                if !dir.join("dists").is_dir() {
                    bail!("--upgrade-from {url}: {} has no dists/ folder; is it an APT repository?", dir.display());
                }
                let inside = root.path(&dir.to_string_lossy());
                copied.push(inside.clone());
                let (parent, name) = (dir.parent().unwrap_or(Path::new("/")), dir.file_name().unwrap_or_default());
                crate::fsx::copy_tree(parent, inside.parent().unwrap_or(&root.dir), &[&name.to_string_lossy()])?;
            }
            let ring = std::fs::read(keyring).with_context(|| {
                format!("cannot read --keyring {}: the repository's binary keyring", keyring.display())
            })?;
            let sources = format!(
                "Types: deb\nURIs: {url}\nSuites: {}\nComponents: main\nSigned-By: {keyring_in}\n",
                u.origin.suite
            );
            (ring, sources, String::new(), false)
        }
    };
    eprintln!("    repository: {}", sources.lines().find(|l| l.starts_with("URIs:")).unwrap_or_default());
    if !sources.contains(&format!("Signed-By: {keyring_in}")) {
        bail!("the repository's .sources does not name {keyring_in} as Signed-By:\n{sources}");
    }
    // The rootfs's own sources (debootstrap's mirror) go aside: only this repository remains.
    let aside = u.scratch.join("sources-aside");
    std::fs::create_dir_all(&aside)?;
    let mut moved = Vec::new();
    let mut others = vec![root.path("/etc/apt/sources.list")];
    if let Ok(rd) = std::fs::read_dir(root.path("/etc/apt/sources.list.d")) {
        others.extend(rd.filter_map(|e| e.ok()).map(|e| e.path()));
    }
    for (i, p) in others.into_iter().filter(|p| p.is_file()).enumerate() {
        let to = aside.join(i.to_string());
        std::fs::rename(&p, &to).with_context(|| format!("cannot move {} aside", p.display()))?;
        moved.push((to, p));
    }
    write(&root.path(&sources_in), sources.as_bytes())?;

    // 2. The signature is checked: a wrong key, a tampered index.
    let wrong = root.path("/usr/share/keyrings/debian-archive-keyring.gpg");
    let wrong = std::fs::read(&wrong).with_context(|| format!("{} (the wrong key) is missing", wrong.display()))?;
    write(&root.path(&keyring_in), &wrong)?;
    root.clear_lists()?;
    root.refused(&["apt-get", "update"], "the repository is signed by another key than the keyring's")?;
    eprintln!("    apt-get update refuses the repository under a wrong keyring");
    write(&root.path(&keyring_in), &keyring)?;
    if published {
        let dir = root.dir.join(REPO_IN_ROOTFS).join("dists").join(&u.origin.suite).join(format!("main/binary-{arch}"));
        let saved = tamper(&dir)?;
        root.clear_lists()?;
        let out = root.refused(&["apt-get", "update"], "its Packages no longer matches the signed Release")?;
        for (path, bytes) in saved {
            crate::fsx::write_atomic(&path, &bytes)?;
        }
        if !out.contains("Hash Sum mismatch") && !out.contains("File has unexpected size") {
            eprintln!("    note: apt-get update failed on the tampered index with: {}", out.trim());
        }
        eprintln!("    apt-get update refuses a tampered Packages");
    }
    root.clear_lists()?;
    let update = root.run(&["apt-get", "update"]).context("apt-get update with the repository's keyring failed")?;
    if update.lines().any(|l| l.starts_with("W:") || l.starts_with("E:")) {
        bail!("apt-get update warned:\n{update}");
    }
    let madison = root.run(&["apt-cache", "madison", name])?;
    let versions: Vec<String> =
        madison.lines().filter_map(|l| l.split('|').nth(1)).map(|v| v.trim().to_string()).collect();
    if !versions.contains(&new_version) {
        bail!("the repository has no {name} {new_version} (it has {versions:?}): publish {} into it", u.deb.display());
    }
    let previous = if published {
        previous
    } else {
        // The newest version below the new one.
        let mut older: Vec<&String> = Vec::new();
        for v in &versions {
            if v != &new_version && newer(&new_version, v, Path::new("-"), &u.deb).is_ok() {
                older.push(v);
            }
        }
        older.first().map(|v| v.to_string()).with_context(|| {
            format!("the repository has no {name} older than {new_version} ({versions:?}) to upgrade from")
        })?
    };
    eprintln!("    apt-get update verified the repository: {name} {}", versions.join(", "));

    // 3. The previous version, as a board has it.
    root.run(&["apt-get", "install", "-y", &format!("{name}={previous}")])
        .with_context(|| format!("apt-get install {name}={previous} failed"))?;
    expect_version(&root, name, &previous)?;
    let files = root.run(&["dpkg-query", "-L", name])?;
    let conffiles = conffile_list(&root, name)?;
    let unattended_file = crate::deb::unattended_path(name);
    let ships_pattern = conffiles.iter().any(|c| c == &unattended_file);
    if u.unattended != ships_pattern {
        bail!(
            "dist.yaml packaging.deb.unattended_upgrades is {}, but the package {} {unattended_file}",
            u.unattended,
            if ships_pattern { "ships" } else { "does not ship" }
        );
    }
    let mut edited = Vec::new();
    if conffiles.is_empty() {
        let under_etc: Vec<&str> = files.lines().filter(|f| f.starts_with("/etc/") && root.path(f).is_file()).collect();
        if !under_etc.is_empty() {
            bail!("the package has files under /etc that are not conffiles: {}", under_etc.join(", "));
        }
        eprintln!("    {name} {previous} declares no conffiles (and has no file under /etc): none to keep");
    }
    for c in &conffiles {
        let path = root.path(c);
        let mut text = std::fs::read(&path).with_context(|| format!("cannot read the conffile {c}"))?;
        let comment = if c.starts_with("/etc/apt/") { "//" } else { "#" };
        text.extend_from_slice(format!("{comment} edited by the admin (smoke-test --upgrade-from)\n").as_bytes());
        std::fs::write(&path, &text)?;
        edited.push((c.clone(), text));
    }
    let unit = files
        .lines()
        .find(|f| f.starts_with("/lib/systemd/system/") && f.ends_with(".service"))
        .map(|f| f.rsplit('/').next().unwrap_or_default().to_string());
    if let Some(unit) = &unit {
        enabled(&root, unit).with_context(|| format!("after installing {name} {previous}"))?;
    }

    // 4. unattended-upgrades sees the new version.
    if ships_pattern {
        let out = root
            .run_all(&["unattended-upgrade", "--dry-run", "--debug"])
            .context("unattended-upgrade --dry-run --debug failed")?;
        let pattern = format!("origin={},suite={}", u.origin.origin, u.origin.suite);
        let planned = out.lines().find(|l| l.contains("Packages that will be upgraded:"));
        if !out.contains(&pattern) || !planned.is_some_and(|l| l.split_whitespace().any(|w| w == name)) {
            bail!("unattended-upgrade --dry-run does not plan {name} from {pattern}:\n{out}");
        }
        eprintln!("    unattended-upgrade --dry-run: {}", planned.unwrap_or_default().trim());
    }

    // 5. The upgrade, with the requests to systemd logged.
    std::fs::create_dir_all(root.path("/run/systemd/system"))?;
    let policy = root.path("/usr/sbin/policy-rc.d");
    write(&policy, format!("#!/bin/sh\necho \"$*\" >> /{POLICY_LOG}\nexit 101\n").as_bytes())?;
    std::fs::set_permissions(&policy, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    root.run(&["apt-get", "upgrade", "-y"]).context("apt-get upgrade failed")?;
    std::fs::remove_file(&policy)?;
    std::fs::remove_dir_all(root.path("/run/systemd"))?;

    // 6. What a board must have after it.
    expect_version(&root, name, &new_version)?;
    for (c, text) in &edited {
        if std::fs::read(root.path(c))? != *text {
            bail!("the upgrade replaced the edited conffile {c}");
        }
    }
    let after_conffiles = conffile_list(&root, name)?;
    if after_conffiles != conffiles {
        bail!("the conffiles changed from {conffiles:?} to {after_conffiles:?}");
    }
    if !edited.is_empty() {
        eprintln!("    kept the edited conffiles: {}", conffiles.join(", "));
    }
    // Every file of the new version is on disk as the new package has it: dpkg's own check
    // against the md5sums it recorded at unpack. It checks only files with a recorded sum, so
    // an empty record would pass; the count of sums says what was checked.
    let sums = std::fs::read_to_string(root.path(&format!("/var/lib/dpkg/info/{name}.md5sums"))).unwrap_or_default();
    let checked = sums.lines().filter(|l| !l.trim().is_empty()).count();
    if checked == 0 {
        bail!("dpkg recorded no md5sums for {name} {new_version}: dpkg --verify would check nothing");
    }
    let verify = root.cmd(&["dpkg", "--verify", name]);
    let out = crate::process::exec(&verify)?;
    let kept: Vec<&str> = edited.iter().map(|(c, _)| c.as_str()).collect();
    let differ = unexpected_differences(&out.stdout, &kept);
    if !differ.is_empty() || (!out.success && kept.is_empty()) || !out.stderr.trim().is_empty() {
        bail!(
            "after the upgrade, `dpkg --verify {name}` finds files that differ from {name} {new_version}: {}\n{}{}",
            differ.join(", "),
            out.stdout,
            out.stderr
        );
    }
    eprintln!("    dpkg --verify: the {checked} files of {name} {new_version} match its md5sums");
    let files = root.run(&["dpkg-query", "-L", name])?;
    let link = root.run(&["readlink", "-f", &format!("/usr/bin/{name}")])?;
    if !files.lines().any(|f| f == link) {
        bail!("after the upgrade /usr/bin/{name} resolves to {link}, which is not a file of the package");
    }
    if files.lines().any(|f| f.starts_with("/opt/")) {
        let query = root.run(&["update-alternatives", "--query", name]).with_context(|| {
            format!("{name} is not an alternative after the upgrade (postinst installs /usr/bin/{name} as one)")
        })?;
        let value = query.lines().find_map(|l| l.strip_prefix("Value: ")).unwrap_or_default();
        if value != link {
            bail!("update-alternatives --query {name} says {value:?}, /usr/bin/{name} resolves to {link}");
        }
        eprintln!("    /usr/bin/{name} -> {link} (alternative {name})");
    }
    let services_dir = Path::new(&link).parent().unwrap_or(Path::new("/")).join("resources/python-service");
    for s in &u.services {
        let bin = services_dir.join(s);
        let out = root
            .run(&[&bin.to_string_lossy(), "--self-test"])
            .with_context(|| format!("the upgraded {} cannot run on the target", bin.display()))?;
        if !out.contains(&format!("self-test ok: {s}")) {
            bail!("{} --self-test printed {out:?}", bin.display());
        }
        eprintln!("    {}: {}", bin.display(), out.lines().last().unwrap_or_default());
    }
    if let Some(unit) = &unit {
        enabled(&root, unit).context("after the upgrade")?;
        let log = std::fs::read_to_string(root.path(POLICY_LOG)).unwrap_or_default();
        let restarted = log.lines().any(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.first() == Some(&unit.as_str()) && w.get(1).is_some_and(|a| a.ends_with("restart"))
        });
        if !restarted {
            bail!("the upgrade did not ask to restart {unit}; policy-rc.d was asked: {log:?}");
        }
        eprintln!("    the upgrade asked to restart {unit} ({})", log.lines().collect::<Vec<_>>().join("; "));
    }

    // 7. Purge, clean up what the test added, compare.
    root.run(&["apt-get", "purge", "-y", name]).context("apt-get purge failed")?;
    let status = root.cmd(&["dpkg-query", "-W", "-f", "${Status}", name]).capture().unwrap_or_default();
    if !status.is_empty() && !status.ends_with("not-installed") {
        bail!("after apt-get purge, {name} is `{status}`");
    }
    for p in [&keyring_in, &sources_in] {
        std::fs::remove_file(root.path(p))?;
    }
    let repo = root.dir.join(REPO_IN_ROOTFS);
    crate::fsx::remove_all(&repo)?;
    // apt_repo::publish leaves its lock file beside the repository it wrote.
    let lock = crate::apt_repo::lock_path(&repo)?;
    if lock.exists() {
        std::fs::remove_file(&lock).with_context(|| format!("cannot remove {}", lock.display()))?;
    }
    for dir in copied {
        crate::fsx::remove_all(&dir)?;
    }
    for (from, to) in moved {
        std::fs::rename(&from, &to)?;
    }
    let skip_apt = |set: BTreeSet<String>| -> BTreeSet<String> {
        set.into_iter().filter(|p| p != "var/lib/apt" && !p.starts_with("var/lib/apt/")).collect()
    };
    super::left_nothing_behind(
        &skip_apt(before),
        &skip_apt(super::listing(&root.dir)?),
        &files,
        "the upgrade and apt-get purge",
    )?;
    eprintln!("    upgrade {previous} -> {new_version} checked in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Fail unless `new` sorts after `old` (dpkg's order).
fn newer(new: &str, old: &str, old_deb: &Path, new_deb: &Path) -> Result<()> {
    let ok = std::process::Command::new("dpkg")
        .args(["--compare-versions", new, "gt", old])
        .status()
        .context("cannot run dpkg --compare-versions")?
        .success();
    if !ok {
        bail!(
            "{} ({new}) is not newer than {} ({old}): an upgrade needs a higher version",
            new_deb.display(),
            old_deb.display()
        );
    }
    Ok(())
}

fn expect_version(root: &Root, name: &str, version: &str) -> Result<()> {
    let got = root.run(&["dpkg-query", "-W", "-f", "${Status} ${Version}", name])?;
    if got != format!("install ok installed {version}") {
        bail!("{name} is `{got}`, expected `install ok installed {version}`");
    }
    Ok(())
}

/// The package's conffiles (dpkg's record), sorted.
fn conffile_list(root: &Root, name: &str) -> Result<Vec<String>> {
    let out = root.run(&["dpkg-query", "-W", "-f", "${Conffiles}", name])?;
    let mut list: Vec<String> = out.lines().filter_map(|l| l.split_whitespace().next()).map(String::from).collect();
    list.sort();
    Ok(list)
}

/// Enabled = deb-systemd-helper's symlink in a .wants folder (what `systemctl enable` makes).
fn enabled(root: &Root, unit: &str) -> Result<()> {
    let etc = root.path("/etc/systemd/system");
    let found =
        std::fs::read_dir(&etc).into_iter().flatten().filter_map(|e| e.ok()).any(|e| {
            e.file_name().to_string_lossy().ends_with(".wants") && e.path().join(unit).symlink_metadata().is_ok()
        });
    if !found {
        bail!("{unit} is not enabled: no /etc/systemd/system/*.wants/{unit}");
    }
    Ok(())
}

/// The paths `dpkg --verify` reports, but for `kept`, the conffiles the admin edited and the
/// upgrade kept. A line is `%s %c %s`: nine check characters, an attribute (`c` for a
/// conffile, else a space), the path (which may hold spaces); a line of another shape is
/// reported whole.
fn unexpected_differences<'a>(report: &'a str, kept: &[&str]) -> Vec<&'a str> {
    let path =
        |l: &'a str| if l.len() > 12 && l.as_bytes()[9] == b' ' && l.as_bytes()[11] == b' ' { &l[12..] } else { l };
    report.lines().filter(|l| !l.trim().is_empty()).map(path).filter(|p| !kept.contains(p)).collect()
}

/// Change one byte of every copy of the Packages index in `dir` that apt could fetch (plain,
/// .xz, by-hash), keeping Release as it is. Returns the original bytes to put back.
fn tamper(dir: &Path) -> Result<Vec<(PathBuf, Vec<u8>)>> {
    use std::io::{Read as _, Write as _};
    let mut saved = Vec::new();
    for e in walkdir::WalkDir::new(dir) {
        let e = e?;
        if !e.file_type().is_file() {
            continue;
        }
        let bytes = std::fs::read(e.path())?;
        let xz = bytes.starts_with(b"\xfd7zXZ\0");
        let mut text = if xz {
            let mut t = Vec::new();
            liblzma::read::XzDecoder::new(&bytes[..]).read_to_end(&mut t)?;
            t
        } else {
            bytes.clone()
        };
        // "Package: x" -> "Package: y": the same size, another package.
        let Some(at) = text.windows(9).position(|w| w == b"Package: ") else { continue };
        text[at + 9] ^= 0x01;
        let out = if xz {
            let mut enc = liblzma::write::XzEncoder::new(Vec::new(), 6);
            enc.write_all(&text)?;
            enc.finish()?
        } else {
            text
        };
        crate::fsx::write_atomic(e.path(), &out)?;
        saved.push((e.path().to_path_buf(), bytes));
    }
    if saved.is_empty() {
        bail!("no Packages index under {} to tamper with", dir.display());
    }
    Ok(saved)
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    #[test]
    fn verify_reports_every_changed_file_but_the_kept_conffiles() {
        let report = "??5??????   /opt/KitchnTabs/resources/python-service/print_service\n\
                      ??5?????? c /etc/apt/apt.conf.d/52kitchntabs-unattended-upgrades\n";
        let kept = ["/etc/apt/apt.conf.d/52kitchntabs-unattended-upgrades"];
        assert_eq!(
            super::unexpected_differences(report, &kept),
            ["/opt/KitchnTabs/resources/python-service/print_service"]
        );
        assert_eq!(super::unexpected_differences(report, &[]).len(), 2);
        assert!(super::unexpected_differences("", &kept).is_empty());
        assert_eq!(super::unexpected_differences("??5??????   /opt/A B/x\n", &[]), ["/opt/A B/x"]);
        assert_eq!(super::unexpected_differences("dpkg: odd\n", &[]), ["dpkg: odd"]);
    }

    #[test]
    fn tamper_changes_every_copy_of_the_index_and_gives_back_the_originals() {
        let d = tempfile::tempdir().unwrap();
        let text = b"Package: kitchntabs\nVersion: 1.0\n".to_vec();
        let mut xz = Vec::new();
        {
            use std::io::Write as _;
            let mut enc = liblzma::write::XzEncoder::new(&mut xz, 6);
            enc.write_all(&text).unwrap();
            enc.finish().unwrap();
        }
        std::fs::create_dir_all(d.path().join("by-hash/SHA256")).unwrap();
        std::fs::write(d.path().join("Packages"), &text).unwrap();
        std::fs::write(d.path().join("Packages.xz"), &xz).unwrap();
        std::fs::write(d.path().join("by-hash/SHA256/0123"), &text).unwrap();
        std::fs::write(d.path().join("by-hash/SHA256/4567"), &xz).unwrap();
        let saved = super::tamper(d.path()).unwrap();
        assert_eq!(saved.len(), 4);
        for (path, original) in &saved {
            let now = std::fs::read(path).unwrap();
            assert_ne!(&now, original, "{}", path.display());
            let plain = if now.starts_with(b"\xfd7zXZ\0") {
                let mut t = Vec::new();
                liblzma::read::XzDecoder::new(&now[..]).read_to_end(&mut t).unwrap();
                t
            } else {
                now
            };
            // The same size, another package name: only the signed hashes can tell.
            assert_eq!(plain.len(), text.len());
            assert!(plain.starts_with(b"Package: jitchntabs\n"), "{}", String::from_utf8_lossy(&plain));
        }
        assert!(super::tamper(&d.path().join("by-hash/none")).is_err());
    }
}
