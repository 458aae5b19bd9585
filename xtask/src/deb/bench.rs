//! Packaging speed: this writer vs `dpkg-deb --build` vs fpm's data step, on one tree, and
//! this writer's repack after a one-file edit with a warm block cache.
//!
//! Every contender runs as a child process under `/usr/bin/time -f "%e %U %M"`, so wall
//! time, user time and peak RSS (the largest process of the child's tree, from wait4's
//! rusage) are measured the same way for all three. Our writer runs by re-invoking the
//! current executable with `DEB_BENCH_CHILD_*` variables set: any binary that calls
//! [`bench`] must call [`run_bench_child_if_requested`] first thing in `main`.

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::rng::XorShift;

use super::spec::{Compression, Control, DebArch, DebSpec};

/// The hidden subcommand the measured writer runs as:
/// `xtask <CHILD> TREE OUT LEVEL [--block-cache DIR]`.
pub const CHILD: &str = "bench-deb-writer";
const EPOCH: u64 = 1_700_000_000;
const TIME: &str = "/usr/bin/time";

/// One timed run of one contender.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    pub wall_s: f64,
    pub user_s: f64,
    pub sys_s: f64,
    pub peak_rss_kib: u64,
    /// CPU seconds other processes used during the run (machine busy time from /proc/stat
    /// minus the child's own): the run's disturbance on a shared machine.
    pub others_cpu_s: f64,
}

/// One contender's runs.
#[derive(Debug, Clone)]
pub struct Measurement {
    pub name: &'static str,
    /// The command as run (for the report).
    pub command: String,
    pub runs: Vec<Run>,
    /// Size of the output of the last run (all runs are byte-identical for ours and
    /// dpkg-deb; fpm's is data.tar.xz only).
    pub bytes: u64,
}

impl Measurement {
    fn col(&self, f: impl Fn(&Run) -> f64) -> Vec<f64> {
        self.runs.iter().map(f).collect()
    }
    pub fn median_wall(&self) -> f64 {
        median(&self.col(|r| r.wall_s))
    }
    /// The least-disturbed run: on a shared machine noise only ever adds time.
    pub fn best_wall(&self) -> f64 {
        self.col(|r| r.wall_s).into_iter().fold(f64::INFINITY, f64::min)
    }
    pub fn median_cpu(&self) -> f64 {
        median(&self.col(|r| r.user_s + r.sys_s))
    }
    /// Highest peak RSS over the runs.
    pub fn peak_rss_kib(&self) -> u64 {
        self.runs.iter().map(|r| r.peak_rss_kib).max().unwrap_or(0)
    }
}

#[derive(Debug, Clone)]
pub struct BenchResult {
    pub tree_bytes: u64,
    /// This writer at dpkg-deb's settings (xz -6, all cores).
    pub ours: Measurement,
    /// This writer at fpm's preset (xz -3, all cores): the like-for-like speed-up vs fpm.
    pub ours_xz3: Measurement,
    pub dpkg_deb: Measurement,
    pub fpm: Measurement,
    /// This writer at xz -6 after a one-file edit (a different one-line change each run),
    /// with the block cache warm from the tree before the edit.
    pub ours_repack: Measurement,
    /// The file the repack runs edit, relative to the tree.
    pub edited: &'static str,
}

/// The file a repack edits: one 1 MB JS chunk of [`build_bench_tree`]'s tree.
const EDITED: &str = "resources/app/dist/chunk-01.js";

impl BenchResult {
    fn all(&self) -> [&Measurement; 5] {
        [&self.ours, &self.ours_xz3, &self.dpkg_deb, &self.fpm, &self.ours_repack]
    }

    /// (target, met?) on the best runs: wall within 5% of dpkg-deb, peak memory no
    /// higher, size within 1%, at least 1.8x faster than fpm's data step, a one-file repack
    /// in at most 20% of a full pack's wall time.
    pub fn targets(&self) -> Vec<(String, bool)> {
        let (o, o3, d, f) = (&self.ours, &self.ours_xz3, &self.dpkg_deb, &self.fpm);
        let repack = self.ours_repack.best_wall() / o.best_wall();
        let repack_med = self.ours_repack.median_wall() / o.median_wall();
        let wall = o.best_wall() / d.best_wall();
        let wall_med = o.median_wall() / d.median_wall();
        let rss = o.peak_rss_kib() as f64 / d.peak_rss_kib() as f64;
        let size = o.bytes as f64 / d.bytes as f64;
        let speedup = f.best_wall() / o.best_wall();
        let speedup3 = f.best_wall() / o3.best_wall();
        let size3 = o3.bytes as f64 / f.bytes as f64;
        vec![
            (format!("wall vs dpkg-deb {wall:.3} best, {wall_med:.3} median (<= 1.05)"), wall <= 1.05),
            (format!("peak RSS vs dpkg-deb {rss:.3} (<= 1.00)"), rss <= 1.0),
            (format!("size vs dpkg-deb {size:.4} (within 1%)"), (size - 1.0).abs() <= 0.01),
            (format!("speed-up vs fpm, ours at xz -6: {speedup:.2}x (>= 1.8)"), speedup >= 1.8),
            (
                format!("speed-up vs fpm, ours at xz -3: {speedup3:.2}x (>= 1.8), size {size3:.4} of fpm's"),
                speedup3 >= 1.8,
            ),
            (
                format!(
                    "repack after editing {} vs full pack {repack:.3} best, {repack_med:.3} median (<= 0.20)",
                    self.edited
                ),
                repack <= 0.20,
            ),
        ]
    }
}

impl fmt::Display for BenchResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "tree: {:.1} MB", self.tree_bytes as f64 / 1e6)?;
        writeln!(
            f,
            "{:<9} {:>7} {:>7} {:>8} {:>9} {:>8}  runs: wall/CPU s (CPU s of other processes)",
            "", "best s", "median", "CPU s", "RSS MB", "size MB"
        )?;
        for m in self.all() {
            let runs: Vec<String> = m
                .runs
                .iter()
                .map(|r| format!("{:.1}/{:.1} ({:.0})", r.wall_s, r.user_s + r.sys_s, r.others_cpu_s))
                .collect();
            writeln!(
                f,
                "{:<9} {:>7.2} {:>7.2} {:>8.2} {:>9.1} {:>8.2}  {}",
                m.name,
                m.best_wall(),
                m.median_wall(),
                m.median_cpu(),
                m.peak_rss_kib() as f64 / 1024.0,
                m.bytes as f64 / 1e6,
                runs.join(" ")
            )?;
        }
        for m in self.all() {
            writeln!(f, "{}: {}", m.name, m.command)?;
        }
        for (target, met) in self.targets() {
            writeln!(f, "{} {target}", if met { "MET " } else { "MISS" })?;
        }
        Ok(())
    }
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The package both writers build from the tree: the tree under /opt/KitchnTabs.
fn bench_control() -> Control {
    Control {
        package: "kitchntabs".into(),
        version: "1.0.19".into(),
        architecture: DebArch::Amd64,
        maintainer: "KitchnTabs <dev@kitchntabs.example>".into(),
        section: "misc".into(),
        priority: "optional".into(),
        homepage: None,
        depends: Vec::new(),
        recommends: Vec::new(),
        description_short: "packaging benchmark".into(),
        description_long: "Benchmark package.".into(),
    }
}

fn bench_spec(tree: &Path, xz_level: u32) -> Result<DebSpec> {
    let mut spec = DebSpec::new(bench_control(), EPOCH);
    spec.compression = Compression::Xz { level: xz_level };
    // DebSpec::new's default: one thread per core, as dpkg-deb does.
    spec.add_tree(tree, "/opt/KitchnTabs")?;
    Ok(spec)
}

/// The measured writer: one .deb of `tree` at xz `level`, in its own process so that
/// /usr/bin/time sees its peak memory alone; with `block_cache`, reusing its blocks.
pub fn bench_child(tree: &Path, out: &Path, level: u32, block_cache: Option<&Path>) -> Result<()> {
    let mut spec = bench_spec(tree, level)?;
    spec.xz_block_cache =
        block_cache.map(|dir| super::spec::BlockCacheConfig { dir: dir.to_path_buf(), max_bytes: None });
    let summary = super::write_deb(&spec, out)?;
    if let Some(b) = summary.xz_blocks {
        eprintln!("{}: {} xz blocks, {} compressed, {} reused", out.display(), b.blocks, b.compressed, b.reused);
    }
    Ok(())
}

/// Compare the three on `tree` (an unpacked app), `runs` times each, interleaved so that
/// machine noise hits all of them alike. Outputs and a staged copy (hard links) of the
/// tree for dpkg-deb go to `work`.
pub fn bench(tree: &Path, work: &Path, runs: usize) -> Result<BenchResult> {
    if runs == 0 {
        bail!("bench: runs must be at least 1");
    }
    for tool in [TIME, "/usr/bin/dpkg-deb", "/usr/bin/xz", "/bin/tar"] {
        if !Path::new(tool).exists() {
            bail!("{tool} is missing; install it: apt-get install -y time dpkg-dev xz-utils tar");
        }
    }
    let tree = fs::canonicalize(tree).with_context(|| format!("bench tree {} does not exist", tree.display()))?;
    fs::create_dir_all(work).with_context(|| format!("cannot create {}", work.display()))?;
    let work = fs::canonicalize(work)?;
    let tree_bytes = warm_cache(&tree)?;

    // dpkg-deb's input: the same tree as the package root's opt/KitchnTabs.
    let root = work.join("dpkg-root");
    if root.exists() {
        fs::remove_dir_all(&root).with_context(|| format!("cannot clear {}", root.display()))?;
    }
    fs::create_dir_all(root.join("opt")).context("cannot create the dpkg-deb root")?;
    fs::create_dir_all(root.join("DEBIAN")).context("cannot create the dpkg-deb root")?;
    let dest = root.join("opt/KitchnTabs");
    let linked = Command::new("cp").arg("-al").arg(&tree).arg(&dest).status()?;
    if !linked.success() {
        let _ = fs::remove_dir_all(&dest);
        let copied = Command::new("cp").arg("-a").arg(&tree).arg(&dest).status()?;
        if !copied.success() {
            bail!("cannot stage {} into {}", tree.display(), dest.display());
        }
    }
    fs::write(
        root.join("DEBIAN/control"),
        super::control::render(&bench_control(), 0).replace("Installed-Size: 0\n", ""),
    )?;

    let exe = std::env::current_exe().context("cannot find the current executable")?;
    let exe_name = exe.display();
    let ours_out = work.join("ours.deb");
    let ours3_out = work.join("ours-xz3.deb");
    let dpkg_out = work.join("dpkg-deb.deb");
    let fpm_out = work.join("fpm-data.tar.xz");

    let mut ours = Contender::new("ours", format!("{exe_name} {CHILD} TREE OUT 6 (xz -6, all cores)"));
    let mut ours3 = Contender::new("ours-xz3", format!("{exe_name} {CHILD} TREE OUT 3 (xz -3, all cores)"));
    let mut dpkg = Contender::new(
        "dpkg-deb",
        format!("dpkg-deb --root-owner-group -Zxz -z6 --build {} {}", root.display(), dpkg_out.display()),
    );
    let fpm_script = r#"tar -C "$1" --owner=0 --group=0 --numeric-owner --sort=name -cf - . | xz -3 -T1 > "$2""#;
    let mut fpm =
        Contender::new("fpm-data", format!("sh -c '{fpm_script}' sh {} {}", tree.display(), fpm_out.display()));
    let cache = work.join("deb-blocks");
    let repack_out = work.join("ours-repack.deb");
    let mut repack = Contender::new(
        "repack",
        format!("{exe_name} {CHILD} TREE OUT 6 --block-cache {} (after editing {EDITED})", cache.display()),
    );
    // Warm the cache with the unedited tree (untimed): the state after the previous dist.
    if cache.exists() {
        fs::remove_dir_all(&cache).with_context(|| format!("cannot clear {}", cache.display()))?;
    }
    let warmed =
        Command::new(&exe).arg(CHILD).arg(&tree).arg(&repack_out).arg("6").arg("--block-cache").arg(&cache).status()?;
    if !warmed.success() {
        bail!("warming the block cache {} failed ({warmed})", cache.display());
    }
    let edited = tree.join(EDITED);
    let original = fs::read(&edited).with_context(|| format!("the bench tree has no {EDITED}; rebuild it"))?;

    for run in 0..runs {
        eprintln!("bench run {}/{runs}", run + 1);
        let mut c = Command::new(&exe);
        c.arg(CHILD).arg(&tree).arg(&ours_out).arg("6");
        ours.run(c, &work, &ours_out)?;

        let mut c = Command::new(&exe);
        c.arg(CHILD).arg(&tree).arg(&ours3_out).arg("3");
        ours3.run(c, &work, &ours3_out)?;

        let mut c = Command::new("dpkg-deb");
        c.args(["--root-owner-group", "-Zxz", "-z6", "--build"]).arg(&root).arg(&dpkg_out);
        dpkg.run(c, &work, &dpkg_out)?;

        let mut c = Command::new("sh");
        c.arg("-c").arg(fpm_script).arg("sh").arg(&tree).arg(&fpm_out);
        fpm.run(c, &work, &fpm_out)?;

        // A one-line edit no earlier run made, then the original back for the next contenders.
        let mut text = original.clone();
        text.extend_from_slice(format!("\n// bench edit {run} {}\n", std::process::id()).as_bytes());
        fs::write(&edited, &text).with_context(|| format!("cannot edit {}", edited.display()))?;
        let mut c = Command::new(&exe);
        c.arg(CHILD).arg(&tree).arg(&repack_out).arg("6").arg("--block-cache").arg(&cache);
        let result = repack.run(c, &work, &repack_out);
        fs::write(&edited, &original).with_context(|| format!("cannot restore {}", edited.display()))?;
        result?;
    }
    Ok(BenchResult {
        tree_bytes,
        ours: ours.m,
        ours_xz3: ours3.m,
        dpkg_deb: dpkg.m,
        fpm: fpm.m,
        ours_repack: repack.m,
        edited: EDITED,
    })
}

struct Contender {
    m: Measurement,
}

impl Contender {
    fn new(name: &'static str, command: String) -> Self {
        Contender { m: Measurement { name, command, runs: Vec::new(), bytes: 0 } }
    }

    /// Run `cmd` under /usr/bin/time and record its numbers.
    fn run(&mut self, cmd: Command, work: &Path, output: &Path) -> Result<()> {
        let stats = work.join(format!("{}.time", self.m.name));
        let mut timed = Command::new(TIME);
        timed
            .arg("-f")
            .arg("%e %U %S %M")
            .arg("-o")
            .arg(&stats)
            .arg(cmd.get_program())
            .args(cmd.get_args())
            .envs(cmd.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))))
            .env("SOURCE_DATE_EPOCH", EPOCH.to_string())
            .env("LC_ALL", "C");
        let busy_before = machine_busy_s()?;
        let status = timed.status().with_context(|| format!("cannot run {}", self.m.command))?;
        let busy = machine_busy_s()? - busy_before;
        if !status.success() {
            bail!("{} failed ({status})", self.m.command);
        }
        let text = fs::read_to_string(&stats)?;
        let fields: Vec<&str> = text.split_whitespace().collect();
        let [wall, user, sys, rss] = fields[fields.len().saturating_sub(4)..] else {
            bail!("cannot parse {TIME} output {text:?}");
        };
        let (user_s, sys_s): (f64, f64) = (user.parse()?, sys.parse()?);
        self.m.runs.push(Run {
            wall_s: wall.parse()?,
            user_s,
            sys_s,
            peak_rss_kib: rss.parse()?,
            others_cpu_s: (busy - user_s - sys_s).max(0.0),
        });
        self.m.bytes =
            fs::metadata(output).with_context(|| format!("{} wrote no {}", self.m.name, output.display()))?.len();
        Ok(())
    }
}

/// CPU seconds all CPUs have spent busy since boot (first line of /proc/stat; the kernel
/// reports USER_HZ = 100 ticks per second on every Linux architecture).
fn machine_busy_s() -> Result<f64> {
    let stat = fs::read_to_string("/proc/stat").context("cannot read /proc/stat")?;
    let line = stat.lines().next().context("/proc/stat is empty")?;
    // cpu user nice system idle iowait irq softirq steal ...
    let ticks: Vec<u64> = line.split_whitespace().skip(1).map(|t| t.parse().unwrap_or(0)).collect();
    let busy: u64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| ticks.get(i)).sum();
    Ok(busy as f64 / 100.0)
}

/// Read every file once so the first timed run does not pay for the disk. Returns the
/// tree's total file size.
fn warm_cache(tree: &Path) -> Result<u64> {
    let mut total = 0;
    for e in walkdir::WalkDir::new(tree) {
        let e = e?;
        if e.file_type().is_file() {
            let mut f = fs::File::open(e.path())?;
            total += std::io::copy(&mut f, &mut std::io::sink())?;
        }
    }
    Ok(total)
}

/// Build an Electron-like tree of about `target_bytes` in `dir`: copies of the system's
/// shared libraries (at most 8 MB each, like Electron's .so files and binaries) for ~65%,
/// incompressible data (app.asar with media) ~15%, compressible text (JS, .pak) ~20%.
/// Deterministic: the same machine gives the same tree.
pub fn build_bench_tree(dir: &Path, target_bytes: u64) -> Result<()> {
    let lib_dir = ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib/arm-linux-gnueabihf"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_dir())
        .context("no /usr/lib/<multiarch> folder to copy libraries from")?;
    fs::create_dir_all(dir.join("libs"))?;
    fs::create_dir_all(dir.join("resources/app/dist"))?;
    fs::create_dir_all(dir.join("locales"))?;

    let mut libs: Vec<PathBuf> = fs::read_dir(&lib_dir)?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter(|e| e.file_name().to_string_lossy().contains(".so"))
        .filter(|e| e.metadata().is_ok_and(|m| m.len() <= 8_000_000))
        .map(|e| e.path())
        .collect();
    libs.sort();
    let lib_budget = target_bytes * 65 / 100;
    let mut used = 0;
    for lib in libs {
        if used >= lib_budget {
            break;
        }
        let name = lib.file_name().expect("read_dir entries have names");
        used +=
            fs::copy(&lib, dir.join("libs").join(name)).with_context(|| format!("cannot copy {}", lib.display()))?;
    }

    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let random_bytes = target_bytes * 15 / 100;
    let mut f = fs::File::create(dir.join("resources/app.asar"))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = random_bytes;
    while left > 0 {
        for chunk in buf.chunks_mut(8) {
            chunk.copy_from_slice(&rng.next_u64().to_le_bytes()[..chunk.len()]);
        }
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }

    // Text: tokens from a small vocabulary, like minified JS (xz gets roughly 4-6x).
    const WORDS: &[&str] = &[
        "function",
        "return",
        "const",
        "let",
        "this",
        "props",
        "state",
        "order",
        "table",
        "kitchen",
        "ticket",
        "=>",
        "{",
        "}",
        "(",
        ")",
        ";",
        "if",
        "else",
        "await",
        "async",
        "null",
        "undefined",
        "0",
        "1",
        "true",
        "false",
        "map",
        "filter",
        "render",
    ];
    let text_total = target_bytes * 20 / 100;
    let files = 40u64;
    for i in 0..files {
        let path = if i % 4 == 0 {
            dir.join(format!("locales/l{i:02}.pak"))
        } else {
            dir.join(format!("resources/app/dist/chunk-{i:02}.js"))
        };
        let mut w = std::io::BufWriter::new(fs::File::create(path)?);
        let mut written = 0;
        while written < text_total / files {
            let word = WORDS[(rng.next_u64() % WORDS.len() as u64) as usize];
            w.write_all(word.as_bytes())?;
            w.write_all(if rng.next_u64().is_multiple_of(7) { b"\n" } else { b" " })?;
            written += word.len() as u64 + 1;
        }
        w.flush()?;
    }
    let exe = dir.join("kitchntabs");
    fs::copy("/bin/true", &exe).context("cannot copy /bin/true")?;
    Ok(())
}
