//! `cargo xtask bench loop --arch A`: the edit → verified .deb loop, this xtask against the
//! xtask of a baseline revision, on the same input in one run. Each side gets its own clone
//! of HEAD and its own binary; both get the same stand-in Electron of the arch carrying
//! ~191 MB of code-like data (this host's shared-library bytes behind a non-ELF header: they
//! compress as Electron's code does) and, natively, the checkout's venv. Each side: a cold
//! `dist --arch A` (the set-up), no-op runs, then edits of print_service.py, each followed by
//! `dist --arch A` to a verified .deb. The baseline reads its own revision's dist.yaml: the
//! keys added since are all off by default.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use super::{Row, median, timed};
use crate::{arch::Arch, config::Config};

/// The last commit before the loop work: fingerprints re-hash every file, the .deb is
/// compressed whole, PyInstaller starts from an empty work folder.
pub const BASELINE: &str = "e3d3705";

/// Bytes of code-like payload in the stand-in Electron: about what a linux Electron 43 weighs.
const PAYLOAD: usize = 191 << 20;

/// The baseline's xtask, built once per revision in its own worktree and target folder.
fn baseline_binary(config: &Config, rev: &str) -> Result<PathBuf> {
    let dir = config.root.join("target/xtask/bench/loop-baseline");
    let bin = dir.join(format!("xtask-{rev}"));
    if bin.is_file() {
        return Ok(bin);
    }
    std::fs::create_dir_all(&dir)?;
    let src = dir.join("src");
    let git = |args: &[&str]| timed(Command::new("git").arg("-C").arg(&config.root).args(args));
    if src.exists() {
        git(&["worktree", "remove", "--force", &src.to_string_lossy()]).ok();
        crate::fsx::remove_all(&src)?;
    }
    git(&["worktree", "add", "--force", "--detach", &src.to_string_lossy(), rev])
        .with_context(|| format!("--baseline {rev}: not a revision of this repository"))?;
    eprintln!("bench loop: building the xtask of {rev}");
    let built = timed(
        Command::new("cargo")
            .args(["build", "--quiet", "-p", "xtask"])
            .env("CARGO_TARGET_DIR", dir.join("target"))
            .current_dir(&src),
    );
    git(&["worktree", "remove", "--force", &src.to_string_lossy()])?;
    built.with_context(|| format!("cannot build the xtask of {rev}"))?;
    let tmp = crate::fsx::tmp_sibling(&bin);
    std::fs::copy(dir.join("target/debug/xtask"), &tmp)?;
    std::fs::rename(&tmp, &bin)?;
    Ok(bin)
}

/// The shared libraries of this host, in a stable order: the code-like bytes of the payload.
fn host_libraries() -> Vec<PathBuf> {
    let mut libs = Vec::new();
    for top in ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib/gcc", "/usr/libexec"] {
        for e in walkdir::WalkDir::new(top).sort_by_file_name().into_iter().filter_map(|e| e.ok()) {
            let big = e.metadata().is_ok_and(|m| m.len() > 100 << 10);
            if e.file_type().is_file() && big && e.file_name().to_string_lossy().contains(".so") {
                libs.push(e.into_path());
            }
        }
    }
    libs
}

/// The stand-in Electron of `arch` with the payload: resources.pak (150 MiB) and 41 locale
/// files of 1 MiB, each behind a `PAK\0` header so nothing takes them for ELF.
fn electron_dist(dir: &Path, arch: Arch) -> Result<PathBuf> {
    let out = dir.join(format!("electron-{arch}"));
    let done = out.join(".payload-complete");
    if done.is_file() {
        return Ok(out);
    }
    crate::fsx::remove_all(&out)?;
    crate::prereq::ensure(&[crate::prereq::Prereq::cross_for(arch, false)], &|cmd, title| {
        crate::process::run(cmd, title, false)
    })?;
    crate::stand_in::electron(dir, arch)?;
    let mut data = Vec::with_capacity(PAYLOAD + (8 << 20));
    for lib in host_libraries() {
        if data.len() >= PAYLOAD {
            break;
        }
        if let Ok(bytes) = std::fs::read(&lib) {
            data.extend_from_slice(&bytes);
        }
    }
    if data.len() < PAYLOAD {
        bail!(
            "only {} MiB of shared libraries on this host; the payload needs {} MiB",
            data.len() >> 20,
            PAYLOAD >> 20
        );
    }
    let big = 150 << 20;
    let pak = |path: PathBuf, bytes: &[u8]| -> Result<()> {
        let mut file = b"PAK\0".to_vec();
        file.extend_from_slice(bytes);
        std::fs::write(&path, file).with_context(|| format!("cannot write {}", path.display()))
    };
    pak(out.join("resources.pak"), &data[..big])?;
    for (i, piece) in data[big..PAYLOAD].chunks(1 << 20).enumerate() {
        pak(out.join(format!("locales/l{i:02}.pak")), piece)?;
    }
    std::fs::write(&done, "")?;
    Ok(out)
}

/// One side's measurements.
struct Side {
    cold: f64,
    noop: f64,
    edit: f64,
    /// The steps of the last edit's run that took 0.05 s or more: (id, seconds).
    steps: Vec<(String, f64)>,
}

fn side(bin: &Path, tree: &Path, arch: Arch, env: &[(&str, &Path)], runs: usize) -> Result<Side> {
    let dist = || {
        let mut c = Command::new(bin);
        c.arg("--root").arg(tree).args(["dist", "--arch", arch.name()]);
        for (k, v) in env {
            c.env(k, v);
        }
        c
    };
    let cold = timed(&mut dist())?;
    let noop = median((0..runs).map(|_| timed(&mut dist())).collect::<Result<_>>()?);
    let (mut edits, mut steps) = (Vec::new(), Vec::new());
    for i in 0..runs {
        // An assignment, not a comment: the compiled module changes too. The value is new to
        // every run: a repeated edit finds its build in BuildKit's cache from the last bench.
        let nonce = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos();
        super::append_line(
            &tree.join("python-service/src/print_service.py"),
            &format!("_BENCH_EDIT = \"{nonce}-{i}\""),
        )?;
        let t = std::time::Instant::now();
        let out = dist().arg("--json").output().context("cannot run dist")?;
        edits.push(t.elapsed().as_secs_f64());
        if !out.status.success() {
            bail!(
                "dist --arch {arch} after an edit failed in {}:\n{}",
                tree.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).context("dist --json printed no JSON")?;
        steps = json["report"]["steps"]
            .as_array()
            .context("dist --json has no report.steps")?
            .iter()
            .filter_map(|s| Some((s["id"].as_str()?.to_string(), s["seconds"].as_f64()?)))
            .filter(|(_, s)| *s >= 0.05)
            .collect();
    }
    Ok(Side { cold, noop, edit: median(edits), steps })
}

pub fn run(config: &Config, arch: Arch, runs: usize, baseline: &str) -> Result<Vec<Row>> {
    if arch.native_only() && Arch::host() != Some(arch) {
        bail!("bench loop --arch {arch}: builds only natively on its own host");
    }
    let work = config.root.join("target/xtask/bench").join(format!("loop-{arch}"));
    std::fs::create_dir_all(&work)?;
    let ours = super::xtask()?;
    let theirs = baseline_binary(config, baseline)?;
    let electron = electron_dist(&config.root.join("target/xtask/bench"), arch)?;
    let venv = config.root.join("python-service/.venv");
    let env = [("KT_ELECTRON_DIST", electron.as_path()), ("KT_VENV", venv.as_path())];
    let mut sides = Vec::new();
    for (name, bin) in [("baseline", &theirs), ("ours", &ours)] {
        let tree = work.join(name);
        crate::fsx::remove_all(&tree)?;
        timed(Command::new("git").args(["clone", "--quiet"]).arg(&config.root).arg(&tree))?;
        if name == "baseline" {
            // dist.yaml has gained keys the baseline refuses (all off by default): it reads its
            // own revision's, which describes the same build.
            let out =
                Command::new("git").arg("-C").arg(&tree).args(["show", &format!("{baseline}:dist.yaml")]).output()?;
            if !out.status.success() {
                bail!("--baseline {baseline}: no dist.yaml in it: {}", String::from_utf8_lossy(&out.stderr).trim());
            }
            std::fs::write(tree.join("dist.yaml"), out.stdout)?;
        }
        eprintln!("bench loop: {name} in {}", tree.display());
        sides.push(side(bin, &tree, arch, &env, runs)?);
    }
    let (b, o) = (&sides[0], &sides[1]);
    let steps = |s: &Side| s.steps.iter().map(|(id, t)| format!("{id} {t:.1}")).collect::<Vec<_>>().join(", ");
    Ok(vec![
        Row {
            case: format!("{arch}: edit print_service.py → `dist --arch {arch}` (verified .deb)"),
            ours: o.edit,
            peer: Some(b.edit),
            note: format!(
                "ours is {:.0} % of {baseline}'s time; steps {baseline}: {}; ours: {}",
                o.edit / b.edit * 100.0,
                steps(b),
                steps(o)
            ),
        },
        Row {
            case: format!("{arch}: no-op `dist --arch {arch}`"),
            ours: o.noop,
            peer: Some(b.noop),
            note: format!(
                "{:.0} % of {baseline}'s; ours reuses each file's hash while its stat is unchanged",
                o.noop / b.noop * 100.0
            ),
        },
        Row {
            case: format!("{arch}: first `dist` in a fresh clone (set-up)"),
            ours: o.cold,
            peer: Some(b.cold),
            note: "the engine and the caches are shared: the side that runs second finds them warm".into(),
        },
    ])
}
