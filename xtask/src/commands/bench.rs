//! `cargo xtask bench <case>`: our tool against the peer tool on the same input, in one run,
//! with the ratios written to BENCHMARKS.md under the command that produced them.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context, Result, bail};

use crate::{arch::Arch, config::Config};

mod edit_loop;

#[derive(clap::Args)]
pub struct BenchArgs {
    #[arg(value_enum)]
    case: Case,
    /// Timed runs per measurement (the median is kept).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Print the results without updating BENCHMARKS.md.
    #[arg(long)]
    no_write: bool,
    /// For `cross`: the foreign arch to build (armv7l or arm64; default arm64). For `loop`:
    /// the arch of the .deb (default: this host's).
    #[arg(long)]
    arch: Option<Arch>,
    /// For `loop`: the revision whose xtask is timed against this one.
    #[arg(long, default_value = edit_loop::BASELINE)]
    baseline: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Case {
    /// Native service builds: `cargo xtask dist` (cold, no change, one service edited) against
    /// the hand-written pipeline it replaces: PyInstaller for each service in turn, every time.
    Native,
    /// `cargo xtask verify` over a ~250 MB tree of a few hundred files against
    /// `find -type f -exec file {} +` plus `readelf -V` over the same tree.
    Verify,
    /// Container builds for a foreign arch on a warm cache: `dist` with nothing changed and
    /// with one service edited, and all three services rebuilt by our parallel stages against
    /// the hand-written pipeline's Dockerfile shape (one stage, three PyInstaller runs in turn).
    Cross,
    /// The native .deb writer against `dpkg-deb --build` (xz -6, both cores) and against
    /// fpm's path as electron-builder runs it (tar | xz -3, one thread), on one ~200 MB
    /// Electron-shaped tree: wall time, peak memory, size.
    Deb,
    /// `cargo xtask apt-repo` (unsigned) over nine .debs of three arches against
    /// `apt-ftparchive packages` + xz + `apt-ftparchive release` on the same pool.
    AptRepo,
    /// The edit → verified .deb loop: edit print_service.py, then `dist --arch A`, with a
    /// ~191 MB code-like stand-in Electron; this xtask against `--baseline`'s, one clone each.
    Loop,
}

struct Row {
    case: String,
    ours: f64,
    /// None where no peer does the same work.
    peer: Option<f64>,
    note: String,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// An edit: `line` appended to `file` on a line of its own.
fn append_line(file: &Path, line: &str) -> Result<()> {
    let mut text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let _ = write!(text, "\n{line}\n");
    std::fs::write(file, text).with_context(|| format!("cannot write {}", file.display()))
}

/// Wall seconds of a command that must succeed (its output discarded).
fn timed(cmd: &mut Command) -> Result<f64> {
    let t = Instant::now();
    let out = cmd.output().with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).lines().rev().take(20).collect::<Vec<_>>().join("\n")
        );
    }
    Ok(t.elapsed().as_secs_f64())
}

/// A private copy of this xtask binary: a rebuild of the checkout during a long benchmark
/// must not pull the binary out from under it.
fn xtask() -> Result<PathBuf> {
    let copy = std::env::temp_dir().join(format!("kitchntabs-bench-xtask-{}", std::process::id()));
    if !copy.exists() {
        let me = std::env::current_exe().context("cannot find the running xtask")?;
        std::fs::copy(&me, &copy).with_context(|| format!("cannot copy {} to {}", me.display(), copy.display()))?;
    }
    Ok(copy)
}

pub fn run(config: &Config, args: &BenchArgs) -> Result<()> {
    let runs = args.runs.max(1);
    let (title, command, rows) = match args.case {
        Case::Native => ("native".to_string(), "native".to_string(), native(config, runs)?),
        Case::Verify => ("verify".into(), "verify".into(), verify(config, runs)?),
        Case::Cross => {
            let arch = args.arch.unwrap_or(Arch::Arm64);
            (format!("cross-{arch}"), format!("cross --arch {arch}"), cross(config, arch, runs)?)
        }
        Case::Loop => {
            let arch = args.arch.or(Arch::host()).context("bench loop: pass --arch (this host is no target)")?;
            let command = match args.baseline.as_str() {
                edit_loop::BASELINE => format!("loop --arch {arch}"),
                other => format!("loop --arch {arch} --baseline {other}"),
            };
            (format!("loop-{arch}"), command, edit_loop::run(config, arch, runs, &args.baseline)?)
        }
        Case::Deb => ("deb".into(), "deb".into(), deb(config, runs)?),
        Case::AptRepo => ("apt-repo".into(), "apt-repo".into(), apt_repo(config, runs)?),
    };
    let section = render(&title, &command, &rows, runs);
    print!("{section}");
    if !args.no_write {
        write_section(&config.root.join("BENCHMARKS.md"), &title, &section)?;
        eprintln!("updated BENCHMARKS.md ({title})");
    }
    Ok(())
}

/// Nine .debs (amd64, arm64, armhf, three versions each) of ~8 MB of incompressible data,
/// built once with dpkg-deb into `<dir>/pool/main/k/ktbench/`.
fn apt_repo_pool(dir: &Path) -> Result<Vec<PathBuf>> {
    let pool = dir.join("pool/main/k/ktbench");
    // Named for what the pool holds: a pool from before the md5sums were written is rebuilt,
    // since apt-repo refuses a .deb without them.
    let done = dir.join(".complete-with-md5sums");
    let mut debs = Vec::new();
    let mut rng = crate::rng::XorShift(0x6b74_6265_6e63_6821);
    if !done.exists() {
        crate::fsx::remove_all(dir)?;
    }
    for arch in ["amd64", "arm64", "armhf"] {
        for version in ["1.0.0", "1.1.0", "1.2.0"] {
            let deb = pool.join(format!("ktbench_{version}_{arch}.deb"));
            debs.push(deb.clone());
            if done.exists() {
                continue;
            }
            let tree = dir.join("tree");
            crate::fsx::remove_all(&tree)?;
            std::fs::create_dir_all(tree.join("DEBIAN"))?;
            std::fs::create_dir_all(tree.join("opt/ktbench"))?;
            let data: Vec<u8> = (0..(8 << 20) / 8).flat_map(|_| rng.next_u64().to_le_bytes()).collect();
            // dpkg-deb writes no md5sums itself (dh_md5sums does); apt-repo checks data.tar against it.
            let sum = crate::fingerprint::hex(&<md5::Md5 as md5::Digest>::digest(&data));
            std::fs::write(tree.join("opt/ktbench/data"), data)?;
            std::fs::write(tree.join("DEBIAN/md5sums"), format!("{sum}  opt/ktbench/data\n"))?;
            std::fs::write(
                tree.join("DEBIAN/control"),
                format!(
                    "Package: ktbench\nVersion: {version}\nArchitecture: {arch}\nMaintainer: KT <kt@example.com>\n\
                     Installed-Size: 8192\nDescription: apt-repo benchmark package\n"
                ),
            )?;
            std::fs::create_dir_all(&pool)?;
            timed(Command::new("dpkg-deb").args(["--root-owner-group", "-Znone", "--build"]).arg(&tree).arg(&deb))?;
            crate::fsx::remove_all(&tree)?;
        }
    }
    std::fs::write(&done, "")?;
    Ok(debs)
}

/// `apt-repo` into a new folder (hard links, hashing, Packages.xz, Release, by-hash) against
/// apt-ftparchive's index of the same pool, with xz and its Release, both from a warm cache.
fn apt_repo(config: &Config, runs: usize) -> Result<Vec<Row>> {
    for (tool, package) in [("apt-ftparchive", "apt-utils"), ("dpkg-deb", "dpkg"), ("xz", "xz-utils")] {
        crate::prereq::Prereq::runs(tool, &["--version"], &[package])
            .check()
            .map_err(|e| anyhow::anyhow!("{tool}: {e}; install it: apt-get install {package}"))?;
    }
    let dir = config.root.join("target/xtask/bench/apt-repo");
    let debs = apt_repo_pool(&dir)?;
    let bytes: u64 = debs.iter().map(|d| std::fs::metadata(d).map_or(0, |m| m.len())).sum();
    let _ = Command::new("cat").args(&debs).stdout(std::process::Stdio::null()).output();
    let xtask = xtask()?;
    let out = dir.join("ours");
    let ours = median(
        (0..runs)
            .map(|_| {
                crate::fsx::remove_all(&out)?;
                timed(
                    Command::new(&xtask)
                        .arg("--root")
                        .arg(&config.root)
                        .args(["apt-repo", "--unsigned", "--into"])
                        .arg(&out)
                        .args(debs.iter().flat_map(|d| [std::ffi::OsStr::new("--deb"), d.as_os_str()]))
                        .env_remove("KT_GPG_KEY")
                        .env_remove("SOURCE_DATE_EPOCH"),
                )
            })
            .collect::<Result<Vec<_>>>()?,
    );
    let script = "set -e; rm -rf dists; mkdir -p dists/stable/main/binary-all; \
        apt-ftparchive packages pool > dists/stable/main/binary-all/Packages; \
        xz -k -6 dists/stable/main/binary-all/Packages; \
        apt-ftparchive release dists/stable > dists/stable/Release.new; mv dists/stable/Release.new dists/stable/Release";
    let peer = median(
        (0..runs)
            .map(|_| timed(Command::new("sh").args(["-c", script]).current_dir(&dir)))
            .collect::<Result<Vec<_>>>()?,
    );
    crate::fsx::remove_all(&out)?;
    Ok(vec![Row {
        case: format!(
            "9 .debs, 3 arches, {:.0} MB: apt-repo vs apt-ftparchive packages + xz + release",
            bytes as f64 / 1e6
        ),
        ours,
        peer: Some(peer),
        note: "ours also links the pool, writes by-hash and one index per arch; both unsigned".into(),
    }])
}

/// The writer's own benchmark (`deb::bench`), as rows: the medians of each contender.
fn deb(config: &Config, runs: usize) -> Result<Vec<Row>> {
    let dir = config.root.join("target/xtask/bench/deb");
    let tree = dir.join("tree");
    if !tree.join("kitchntabs").exists() {
        crate::fsx::remove_all(&tree)?;
        // Electron 43 unpacked is ~250 MB, of which the .deb's data is ~200 MB of files.
        crate::deb::bench::build_bench_tree(&tree, 200_000_000)?;
    }
    let r = crate::deb::bench::bench(&tree, &dir.join("work"), runs)?;
    eprint!("{r}");
    let mb = |kib: u64| kib as f64 / 1024.0;
    let (o, o3, d, f) = (&r.ours, &r.ours_xz3, &r.dpkg_deb, &r.fpm);
    let repack = &r.ours_repack;
    Ok(vec![
        Row {
            case: format!("xz -6: repack after editing {} (warm block cache) vs full pack", r.edited),
            ours: repack.median_wall(),
            peer: Some(o.median_wall()),
            note: format!("{:.1}% of the full pack's wall time", repack.median_wall() / o.median_wall() * 100.0),
        },
        Row {
            case: format!("{:.0} MB tree, xz -6: ours vs dpkg-deb --build", r.tree_bytes as f64 / 1e6),
            ours: o.median_wall(),
            peer: Some(d.median_wall()),
            note: format!(
                "peak RSS {:.0} vs {:.0} MB ({:.2}×); size {:.2} vs {:.2} MB ({:+.2} %)",
                mb(o.peak_rss_kib()),
                mb(d.peak_rss_kib()),
                o.peak_rss_kib() as f64 / d.peak_rss_kib() as f64,
                o.bytes as f64 / 1e6,
                d.bytes as f64 / 1e6,
                (o.bytes as f64 / d.bytes as f64 - 1.0) * 100.0
            ),
        },
        Row {
            case: "xz -3: ours (both cores) vs fpm's path (tar \\| xz -3 -T1)".into(),
            ours: o3.median_wall(),
            peer: Some(f.median_wall()),
            note: format!("size {:.2} vs {:.2} MB", o3.bytes as f64 / 1e6, f.bytes as f64 / 1e6),
        },
        Row {
            case: "ours at xz -6 vs fpm's path at its xz -3".into(),
            ours: o.median_wall(),
            peer: Some(f.median_wall()),
            note: "not like for like: -6 costs ~2× the CPU of -3, so on 2 cores it cannot be 1.8× faster".into(),
        },
    ])
}

fn render(title: &str, command: &str, rows: &[Row], runs: usize) -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load.split_whitespace().next().unwrap_or("?");
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut s = format!(
        "<!-- bench:{title} -->\n### {title}\n\n`cargo xtask bench {command} --runs {runs}` — median of {runs}, {cores} cores, load {load} at the end.\n\n"
    );
    let _ = writeln!(s, "| case | ours (s) | peer (s) | peer / ours | notes |\n|---|---:|---:|---:|---|");
    for r in rows {
        let (peer, ratio) = match r.peer {
            Some(p) => (format!("{p:.3}"), format!("{:.1}×", p / r.ours.max(1e-9))),
            None => ("—".into(), "—".into()),
        };
        let _ = writeln!(s, "| {} | {:.3} | {peer} | {ratio} | {} |", r.case, r.ours, r.note);
    }
    let _ = writeln!(s, "<!-- /bench:{title} -->");
    s
}

/// Replace this case's section of BENCHMARKS.md (or append it), through a temporary file.
fn write_section(path: &Path, title: &str, section: &str) -> Result<()> {
    let old = std::fs::read_to_string(path).unwrap_or_else(|_| {
        "# Benchmarks\n\nEach section is written by the command it names; rerun it to refresh it.\n".into()
    });
    let (start, end) = (format!("<!-- bench:{title} -->"), format!("<!-- /bench:{title} -->\n"));
    let new = match (old.find(&start), old.find(&end)) {
        (Some(a), Some(b)) if a < b => format!("{}{section}{}", &old[..a], &old[b + end.len()..]),
        _ => format!("{}\n{section}", old.trim_end_matches('\n').to_string() + "\n"),
    };
    crate::fsx::write_atomic(path, new.as_bytes())
}

/// A scratch copy of what dist reads.
fn scratch_repo(config: &Config, name: &str) -> Result<PathBuf> {
    let dir = config.root.join("target/xtask/bench").join(name);
    crate::fsx::remove_all(&dir)?;
    crate::fsx::copy_tree(
        &config.root,
        &dir,
        &[
            "dist.yaml",
            ".dockerignore",
            "LICENSE",
            "electron-app/package.json",
            "electron-app/build",
            "python-service",
            "docker",
        ],
    )?;
    Ok(dir)
}

fn native(config: &Config, runs: usize) -> Result<Vec<Row>> {
    let host = Arch::host().context("no native target on this host")?;
    let venv = config.python_dir().join(".venv");
    if !venv.join("bin/python").exists() {
        bail!("no venv at {}: run `cargo xtask dist` (or `cargo xtask test`) once first", venv.display());
    }
    let repo = scratch_repo(config, "native")?;
    // One `dist --json`: wall seconds, and the seconds its venv step took.
    let dist = || -> Result<(f64, f64)> {
        let t = Instant::now();
        let out = Command::new(xtask()?)
            .arg("--root")
            .arg(&repo)
            .args(["build-services", "--json", "--arch", host.name()])
            .env("KT_VENV", &venv)
            .output()?;
        if !out.status.success() {
            bail!("dist failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let wall = t.elapsed().as_secs_f64();
        let json: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let venv_s = json["report"]["steps"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["id"] == "venv"))
            .and_then(|s| s["seconds"].as_f64())
            .unwrap_or(0.0);
        Ok((wall, venv_s))
    };

    // Seed 000's native build: PyInstaller for each service in turn (its own work folder kept
    // between runs, as build.js leaves it, so PyInstaller's own up-to-date checks apply).
    let py = repo.join("python-service");
    let peer_build = || -> Result<f64> {
        let t = Instant::now();
        for (name, svc) in &config.dist.services {
            let mut cmd = Command::new(venv.join("bin/python"));
            cmd.current_dir(&py).args(["-m", "PyInstaller", "--noconfirm", "--onefile", "--log-level", "WARN"]);
            cmd.args([
                "--distpath",
                "peer-dist",
                "--workpath",
                "peer-build",
                "--specpath",
                "peer-build",
                "--name",
                name,
            ]);
            cmd.arg("--add-data").arg(format!("{}:.", py.join("config.yaml").display()));
            for c in &svc.collect_data {
                cmd.args(["--collect-data", c]);
            }
            cmd.arg(&svc.entry);
            timed(&mut cmd)?;
        }
        Ok(t.elapsed().as_secs_f64())
    };
    // Warm the page cache for both sides: the first to read the venv would pay for it alone.
    timed(
        Command::new(venv.join("bin/python"))
            .args(["-c", "import PyInstaller.__main__, escpos.printer, websockets, yaml"]),
    )?;
    let peer_cold = peer_build()?;
    let (cold, cold_venv) = dist()?;
    let peer_noop = median((0..runs).map(|_| peer_build()).collect::<Result<_>>()?);
    let noop = median((0..runs).map(|_| dist().map(|d| d.0)).collect::<Result<_>>()?);
    let (mut edits, mut peer_edits) = (Vec::new(), Vec::new());
    for i in 0..runs {
        append_line(&py.join("src/print_service.py"), &format!("# bench edit {i}"))?;
        edits.push(dist()?.0);
        peer_edits.push(peer_build()?);
    }
    Ok(vec![
        Row {
            case: "cold build, 3 services".into(),
            ours: cold - cold_venv,
            peer: Some(peer_cold),
            note: format!(
                "empty PyInstaller work folders on both sides; ours without its venv sync ({cold_venv:.1} s, which the seed leaves to a person), with verify of each binary"
            ),
        },
        Row {
            case: "no change".into(),
            ours: noop,
            peer: Some(peer_noop),
            note: "ours: fingerprints only; peer: three PyInstaller runs that find their work up to date".into(),
        },
        Row {
            case: "print_service edited".into(),
            ours: median(edits),
            peer: Some(median(peer_edits)),
            note: "the same edit on both sides; ours runs PyInstaller for print_service alone".into(),
        },
    ])
}

/// A tree shaped like an unpacked Electron app: real ELF libraries of this host (a few
/// hundred, copied from the system) and data files, ~250 MB. Built once, reused.
fn verify_tree(root: &Path) -> Result<PathBuf> {
    let tree = root.join("target/xtask/bench/verify-tree");
    let done = tree.join(".complete");
    if done.exists() {
        return Ok(tree);
    }
    crate::fsx::remove_all(&tree)?;
    let libs = tree.join("resources/lib");
    std::fs::create_dir_all(&libs)?;
    let mut total = 0u64;
    let mut count = 0;
    let system = Path::new("/usr/lib/x86_64-linux-gnu");
    let system = if system.exists() { system.to_path_buf() } else { PathBuf::from("/usr/lib") };
    let mut candidates: Vec<PathBuf> = std::fs::read_dir(&system)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.to_string_lossy().contains(".so"))
        .collect();
    candidates.sort();
    for lib in candidates {
        // Libraries up to 8 MB: a few giants (libLLVM) would fill the budget alone.
        let small = std::fs::metadata(&lib).is_ok_and(|m| m.len() <= 8 << 20);
        let head = small && std::fs::read(&lib).map(|b| b.starts_with(b"\x7fELF")).unwrap_or(false);
        if !head || count >= 250 || total > 160 << 20 {
            continue;
        }
        total += std::fs::copy(&lib, libs.join(lib.file_name().unwrap()))?;
        count += 1;
    }
    // Data files (assets, locales, pak files) up to ~250 MB, deterministic bytes.
    let data = tree.join("resources/assets");
    std::fs::create_dir_all(&data)?;
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut i = 0;
    while total < 250 << 20 {
        let size = (512 << 10) + (i % 7) * (128 << 10);
        let bytes: Vec<u8> = (0..size)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        std::fs::write(data.join(format!("asset-{i:03}.pak")), &bytes)?;
        total += size as u64;
        i += 1;
    }
    std::fs::write(&done, format!("{count} libraries, {i} data files, {total} bytes\n"))?;
    Ok(tree)
}

fn verify(config: &Config, runs: usize) -> Result<Vec<Row>> {
    let host = Arch::host().context("no target for this host")?;
    let tree = verify_tree(&config.root)?;
    let files =
        walkdir::WalkDir::new(&tree).into_iter().filter(|e| e.as_ref().is_ok_and(|e| e.file_type().is_file())).count();
    // Warm the page cache once so both sides read from memory.
    let _ = Command::new("cat")
        .arg("--")
        .args(std::fs::read_dir(tree.join("resources/lib"))?.filter_map(|e| e.ok().map(|e| e.path())))
        .output();
    let ours = median(
        (0..runs)
            .map(|_| {
                timed(
                    Command::new(xtask()?)
                        .args(["verify", "--arch", host.name()])
                        .arg(&tree)
                        .stdout(std::process::Stdio::null()),
                )
            })
            .collect::<Result<_>>()?,
    );
    let peer_once = || -> Result<f64> {
        let t = Instant::now();
        let mut find_file = Command::new("find");
        find_file.arg(&tree).args(["-type", "f", "-exec", "file", "{}", "+"]);
        timed(&mut find_file)?;
        // readelf exits non-zero on non-ELF files; only its time matters here.
        let _ = Command::new("find").arg(&tree).args(["-type", "f", "-exec", "readelf", "-V", "{}", "+"]).output()?;
        Ok(t.elapsed().as_secs_f64())
    };
    let peer = median((0..runs).map(|_| peer_once()).collect::<Result<_>>()?);
    Ok(vec![Row {
        case: format!("{files} files, ~250 MB, warm cache"),
        ours,
        peer: Some(peer),
        note: "ours also checks float ABI, interpreter, glibc floor and PyInstaller contents".into(),
    }])
}

/// Seed 000's Dockerfile shape on our stages: the same system, dependency and common layers
/// (so both sides start from the same cache), then one stage that runs each service's
/// PyInstaller build in turn.
fn sequential_dockerfile(fixed: &str, config: &Config) -> Result<String> {
    let (ours, _) = crate::steps::service_stages::dockerfile(config, fixed)?;
    let marker = "\nFROM common AS service-";
    let cut = ours.find(marker).context("the generated Dockerfile has no service stage")?;
    let mut s = ours[..=cut].to_string();
    s.push_str("FROM common AS sequential\n");
    for block in ours[cut..].split(marker).skip(1) {
        for line in block.lines().skip(1).take_while(|l| !l.is_empty()) {
            s.push_str(line);
            s.push('\n');
        }
    }
    s.push_str("FROM scratch AS export\nCOPY --from=sequential /out/ /\n");
    Ok(s)
}

fn cross(config: &Config, arch: Arch, runs: usize) -> Result<Vec<Row>> {
    if arch.native_only() || Some(arch) == Arch::host() {
        bail!("bench cross needs a foreign Linux arch (armv7l or arm64), not {arch}");
    }
    let repo = scratch_repo(config, &format!("cross-{arch}"))?;
    let dist = |env: &str| -> Result<f64> {
        timed(Command::new(xtask()?).arg("--root").arg(&repo).args([
            "build-services",
            "--arch",
            arch.name(),
            "--env",
            env,
        ]))
    };
    // First run: a fresh tree, so the step runs, on the warm engine cache (a full cache hit
    // when the sources match the cache; a cold build otherwise).
    let first = dist("default")?;
    let noop = median((0..runs).map(|_| dist("default")).collect::<Result<_>>()?);
    let mut edits = Vec::new();
    for i in 0..runs {
        append_line(
            &repo.join("python-service/src/print_service.py"),
            &format!("# bench edit {i} {}", std::process::id()),
        )?;
        edits.push(dist("default")?);
    }
    let edit = median(edits);

    // All three services rebuilt: a config change invalidates every service stage but none of
    // the dependency layers. Ours: parallel stages; peer: one sequential stage. Each side gets
    // an env whose staged config it has never built, so neither hits the cache.
    for env in ["ngrok", "prod"] {
        // Unique per run, or a second bench would find both in the cache.
        append_line(
            &repo.join(format!("python-service/config.{env}.yaml")),
            &format!("# bench {}", std::process::id()),
        )?;
    }
    let ours_all = dist("ngrok")?;
    // The peer: the same plan, its generated Dockerfile swapped for the sequential one.
    let peer_all = {
        let scratch = Config::load(&repo)?;
        let tools = crate::host::Host::probe(&scratch);
        let req = crate::steps::dist::Request {
            arch,
            env: "prod".into(),
            engine: None,
            services: Vec::new(),
            package: false,
        };
        let mut plan = crate::steps::dist::plan(&scratch, &req, Arch::host(), &tools)?;
        let fixed = std::fs::read_to_string(repo.join(&scratch.dist.docker.dockerfile))?;
        let sequential = sequential_dockerfile(&fixed, &scratch)?;
        let step = plan.steps.iter_mut().find(|s| s.id == "cross-build").context("the plan has no cross-build")?;
        let dockerfile = step
            .actions
            .iter_mut()
            .find_map(|a| match a {
                crate::plan::Action::WriteFile { path, contents } if path.ends_with("Dockerfile.services") => {
                    Some(contents)
                }
                _ => None,
            })
            .context("the cross-build writes no Dockerfile")?;
        *dockerfile = sequential;
        let t = Instant::now();
        let opts = crate::plan::RunOptions { force: crate::plan::Force::None, verbose: false, keep_going: false };
        crate::plan::run(&plan, &opts)?;
        t.elapsed().as_secs_f64()
    };

    // The wheelhouse: new requirements re-run the dependency layer, but the per-platform pip
    // cache already holds every wheel built from source (Pillow, PyYAML, PyInstaller on
    // armv7l), so nothing compiles again.
    let target = config.target(arch)?;
    let reqs =
        repo.join("python-service").join(target.requirements.as_ref().unwrap_or(&config.dist.python.requirements));
    append_line(&reqs, &format!("# bench {}", std::process::id()))?;
    let wheelhouse = dist("default")?;
    Ok(vec![
        Row {
            case: format!("{arch}: first run in a fresh tree (warm engine cache)"),
            ours: first,
            peer: None,
            note: "the engine replays its cache".into(),
        },
        Row {
            case: format!("{arch}: no change"),
            ours: noop,
            peer: Some(first),
            note: "peer: a `docker build` on a warm cache, as the seed runs every time".into(),
        },
        Row {
            case: format!("{arch}: print_service edited"),
            ours: edit,
            peer: Some(peer_all),
            note: "peer: the seed's one stage rebuilds all three services".into(),
        },
        Row {
            case: format!("{arch}: all 3 services rebuilt (config changed)"),
            ours: ours_all,
            peer: Some(peer_all),
            note: "parallel BuildKit stages vs the seed's sequential stage, same cached dependencies".into(),
        },
        Row {
            case: format!("{arch}: requirements changed, wheelhouse warm"),
            ours: wheelhouse,
            peer: None,
            note: "dependency layer re-run; wheels built from source come from the per-platform pip cache".into(),
        },
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_are_replaced_in_place_and_others_kept() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("BENCHMARKS.md");
        let a =
            render("native", "native", &[Row { case: "x".into(), ours: 1.0, peer: Some(4.0), note: "n".into() }], 3);
        assert!(a.contains("| x | 1.000 | 4.000 | 4.0× | n |"), "{a}");
        write_section(&path, "native", &a).unwrap();
        let b = render(
            "cross-arm64",
            "cross --arch arm64",
            &[Row { case: "y".into(), ours: 0.5, peer: None, note: String::new() }],
            3,
        );
        assert!(b.contains("`cargo xtask bench cross --arch arm64 --runs 3`"), "{b}");
        write_section(&path, "cross-arm64", &b).unwrap();
        let a2 =
            render("native", "native", &[Row { case: "x".into(), ours: 2.0, peer: Some(4.0), note: "n".into() }], 3);
        write_section(&path, "native", &a2).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.matches("<!-- bench:native -->").count(), 1, "{text}");
        assert!(text.contains("| x | 2.000 | 4.000 | 2.0× |"), "{text}");
        assert!(text.contains("| y | 0.500 | — | — |"), "{text}");
        assert!(text.starts_with("# Benchmarks"), "{text}");
    }

    #[test]
    fn the_sequential_dockerfile_keeps_our_dependency_layers_and_runs_services_in_turn() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let config = Config::load(repo).unwrap();
        let ours = std::fs::read_to_string(repo.join("docker/Dockerfile.services")).unwrap();
        let seq = sequential_dockerfile(&ours, &config).unwrap();
        assert!(seq.contains("FROM system AS deps"), "{seq}");
        assert!(seq.contains("FROM deps AS common"), "{seq}");
        assert_eq!(seq.matches("RUN [\"pyinstaller\"").count(), 3, "{seq}");
        assert!(seq.contains("\"--collect-data\",\"escpos\""), "print_service's options: {seq}");
        assert_eq!(seq.matches("FROM ").count(), 5, "system, deps, common, sequential, export: {seq}");
        assert!(seq.ends_with("FROM scratch AS export\nCOPY --from=sequential /out/ /\n"), "{seq}");
    }

    #[test]
    fn median_is_the_middle_value() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![5.0]), 5.0);
    }
}
