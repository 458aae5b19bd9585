//! A PyInstaller one-file archive (CArchive) rebuilt with its entry script replaced, without
//! running PyInstaller: the first part of a service edit that skips PyInstaller's analysis.
//!
//! PyInstaller writes every CArchive entry as an independent zlib stream at a recorded offset,
//! so the entries of the last build are copied as stored and only the offsets after the
//! replaced one move. The script entry is `marshal.dumps` of the script compiled at
//! optimization level 0 (the builds pass no `--optimize`), with every `co_filename` set to
//! `<name>.py`, compressed by zlib at level 9 (`PYINSTALLER_ZLIB_COMPRESSION_LEVEL`, unset in
//! the builds); [`SCRIPT_ENTRY_PY`] makes those bytes with the target's own Python and zlib,
//! which is what PyInstaller runs. On Linux the archive is the executable's `pydata` section,
//! which `objcopy --add-section` appended to the bootloader: `objcopy --remove-section pydata`
//! gives the bootloader back byte for byte.
//!
//! Reading goes through `verify::pyinstaller`, which bounds every offset and length.
//!
//! [`build`] (native) and [`cross_build`] (a container build of several services) take this
//! path when it is sure to give the bytes PyInstaller would: the script's imports (by Python's
//! `ast`, in source order) and every other input are those of the build that made the
//! installed binary, which is itself unchanged since. Anything else runs PyInstaller. For a
//! container build the script is compiled in the build's base image under QEMU (the deps
//! venv is made from that image's `python3`), and the host's cross `objcopy` swaps the section.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::{
    fingerprint::{Fingerprint, Stats},
    fsx,
    process::Command,
    verify::pyinstaller::{self, COOKIE_MAGIC, Location},
};

/// The analysis a repack needs, for every `[script, name, out]` of the JSON list `argv[1]`:
/// the script's imports, and its entry as PyInstaller stores it, written to `out`. Prints
/// `{name: {"imports", "dynamic", "calls", "size"} or {"error"}}`. Standard library only: it runs in
/// a base image without PyInstaller.
///
/// - `imports`: every `import` and `from ... import` anywhere in the script, in source order
///   (PyInstaller's analysis follows them, in that order); `dynamic`: the calls that import by
///   a computed name (`__import__`, `import_module`, `exec`, `eval`), which PyInstaller may see
///   through a hook while this cannot, so any of them means PyInstaller.
/// - `calls`: every call on constant arguments anywhere in the script (`f("x")`,
///   `a.b.c("x", 2)`), with its dotted name and arguments, in source order, and every
///   attribute read through a ctypes loader (`ctypes.cdll.libc`). PyInstaller reads the same
///   calls out of the bytecode (`recursive_function_calls`) and acts on them: metadata
///   lookups (`version("PyYAML")`) bundle a dist-info, `ctypes.CDLL("libx.so.1")` and
///   `find_library("x")` bundle a library and its dependencies, hooks look for their own
///   names. This list is a superset of what any of them can see (an argument with no name in
///   it is one the compiler folds into a constant), so a body edit that changes none of them
///   changes nothing PyInstaller's analysis collects.
/// - The entry: `marshal.dumps` of the script compiled at optimization level 0 (the builds
///   pass no `--optimize`) with every `co_filename` set to `<name>.py`, zlib level 9
///   (`PYINSTALLER_ZLIB_COMPRESSION_LEVEL`, unset in the builds); `size` is its length before
///   compression. Run it with `PYTHONHASHSEED=0`, as the builds run PyInstaller: set constants
///   are marshalled in hash order.
pub const TOOL_PY: &str = r#"import ast, json, marshal, os, sys, types, zlib

def dotted(node):
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None

def constant(node):
    return not any(isinstance(n, ast.Name) for n in ast.walk(node))

LOADERS = {"cdll", "windll", "oledll", "pydll"}

def imports(tree):
    found, dynamic, calls = [], [], []
    for node in ast.walk(tree):
        at = (node.lineno, node.col_offset) if hasattr(node, "lineno") else (0, 0)
        if isinstance(node, ast.Import):
            found.append((at, ["import", [(a.name, a.asname) for a in node.names]]))
        elif isinstance(node, ast.ImportFrom):
            found.append((at, ["from", node.module, node.level, [(a.name, a.asname) for a in node.names]]))
        elif isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
            if name in ("__import__", "import_module", "exec", "eval"):
                dynamic.append([node.lineno, name])
            args = node.args + [k.value for k in node.keywords]
            if dotted(f) is not None and all(constant(a) for a in args):
                calls.append((at, [dotted(f), [ast.dump(a) for a in node.args], [[k.arg, ast.dump(k.value)] for k in node.keywords]]))
        elif isinstance(node, ast.Attribute) and LOADERS & set((dotted(node) or "").split(".")[:-1]):
            calls.append((at, ["attribute", dotted(node)]))
    ordered = lambda xs: [i for _, i in sorted(xs, key=lambda x: x[0])]
    return ordered(found), dynamic, ordered(calls)

def rename(co, filename):
    consts = tuple(rename(c, filename) if isinstance(c, types.CodeType) else c for c in co.co_consts)
    return co.replace(co_consts=consts, co_filename=filename)

result = {}
for script, name, out in json.loads(sys.argv[1]):
    if os.environ.get("PYTHONHASHSEED") != "0":
        result[name] = {"error": "PYTHONHASHSEED is not 0: set constants would be in another order"}
        continue
    try:
        with open(script, "rb") as f:
            source = f.read()
        found, dynamic, calls = imports(ast.parse(source, script))
        code = compile(source, script, "exec", optimize=0)
        code = rename(code, os.path.splitext(name)[0] + os.path.splitext(code.co_filename)[1])
        blob = marshal.dumps(code)
        level = int(os.environ.get("PYINSTALLER_ZLIB_COMPRESSION_LEVEL", 9))
        with open(out, "wb") as f:
            f.write(zlib.compress(blob, level=level))
        result[name] = {"imports": found, "dynamic": dynamic, "calls": calls, "size": len(blob)}
    except (OSError, SyntaxError, ValueError) as e:
        result[name] = {"error": "%s: %s" % (type(e).__name__, e)}
print(json.dumps(result))
"#;

/// One service's part of a build that may be a repack.
#[derive(Clone, Debug, Serialize)]
pub struct Service {
    /// The service: its entry script's name in the archive.
    pub name: String,
    /// The entry script.
    pub script: PathBuf,
    /// Where [`TOOL_PY`] writes the compiled entry script.
    pub compiled: PathBuf,
    /// Where the build leaves the binary.
    pub out: PathBuf,
    /// The installed binary of the last build.
    pub previous: PathBuf,
    /// What the last build was made from: its key and the binary's SHA-256.
    pub record: PathBuf,
    /// Every input of the build but the entry script, and the step's values.
    pub inputs: Vec<PathBuf>,
    pub values: Vec<(String, String)>,
}

/// How the target's Python runs [`TOOL_PY`].
#[derive(Clone, Debug, Serialize)]
pub struct Analysis {
    /// The whole command: the target's Python on [`Analysis::tool`] and the jobs.
    pub command: Command,
    /// Where [`TOOL_PY`] is written first (a host path the command reads).
    pub tool: PathBuf,
    /// Prints the identity of the image the command runs in (container builds).
    pub image: Option<Command>,
}

impl Analysis {
    /// `python tool jobs`: `python` is the target's Python with the arguments appended, run
    /// with `PYTHONHASHSEED=0` (the tool refuses to work without it), and `path` gives a host
    /// path as that Python sees it.
    pub fn new(
        python: Command,
        tool: PathBuf,
        services: &[Service],
        path: &dyn Fn(&Path) -> String,
        image: Option<Command>,
    ) -> Analysis {
        let jobs: Vec<[String; 3]> =
            services.iter().map(|s| [path(&s.script), s.name.clone(), path(&s.compiled)]).collect();
        let jobs = serde_json::to_string(&jobs).expect("strings serialise");
        Analysis { command: python.arg(path(&tool)).arg(jobs), tool, image }
    }
}

/// What replaces the section of a repacked binary: `objcopy`, or the target's cross one.
#[derive(Clone, Debug, Serialize)]
pub struct Objcopy {
    pub program: String,
    /// The Debian package that has it, for the note when it does not run.
    pub package: String,
}

/// A native one-file service build: PyInstaller, or the repack of the installed binary.
#[derive(Clone, Debug, Serialize)]
pub struct ServiceBuild {
    pub service: Service,
    pub analysis: Analysis,
    pub objcopy: Objcopy,
    pub pyinstaller: Command,
    pub root: PathBuf,
}

/// A container build of several services: a repack of each one that can be, one build of
/// the others.
#[derive(Clone, Debug, Serialize)]
pub struct CrossBuild {
    pub services: Vec<Service>,
    pub repack: Repack,
    pub objcopy: Objcopy,
    /// Builds every service (the step's export stage).
    pub all: Command,
    /// Builds one service each, in the order of `services`: for a part of them.
    pub each: Vec<Command>,
    /// What else the binaries are made from: the generated Dockerfile, the build command.
    pub values: Vec<(String, String)>,
    pub root: PathBuf,
}

/// Whether a container build may repack its services.
#[derive(Clone, Debug, Serialize)]
pub enum Repack {
    /// The scripts are analysed by this, and a vouched-for service is repacked.
    #[serde(rename = "analysis")]
    By(Analysis),
    /// No repack could vouch for its bytes here, for this reason: every service is built.
    #[serde(rename = "no_repack")]
    Refused(String),
}

/// How a build made a binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Built {
    PyInstaller,
    Repacked,
    /// Made from exactly the inputs of the installed binary: that binary, copied.
    Kept,
}

#[derive(Serialize, Deserialize, PartialEq)]
struct Record {
    key: String,
    /// The entry script's SHA-256: the same one with the same key is the same binary.
    script: String,
    sha256: String,
}

#[derive(Deserialize)]
struct Analysed {
    #[serde(default)]
    imports: serde_json::Value,
    #[serde(default)]
    dynamic: Vec<serde_json::Value>,
    /// Absent: the analysis cannot vouch for a repack.
    calls: Option<serde_json::Value>,
    size: Option<u32>,
    error: Option<String>,
}

fn describe_repack(services: &[Service], analysis: &Analysis, objcopy: &Objcopy) -> String {
    let names: Vec<_> = services.iter().map(|s| s.name.as_str()).collect();
    let mut out = format!(
        "repack {} when its installed binary is the one its record ({}) names and only the body of its script changed \
         (same imports and calls on constant arguments, every other input the same):\n      write {}\n      $ {}",
        names.join(", "),
        services.iter().map(|s| s.record.display().to_string()).collect::<Vec<_>>().join(", "),
        analysis.tool.display(),
        analysis.command.shell_line()
    );
    if let Some(image) = &analysis.image {
        out.push_str(&format!("\n      $ {}", image.shell_line()));
    }
    for s in services {
        out.push_str(&format!(
            "\n      {}: its archive with {} as the entry script, then\n      $ {p} --remove-section pydata {o}\n      $ {p} --add-section pydata=<archive> {o}",
            s.name,
            s.compiled.display(),
            p = objcopy.program,
            o = s.out.display()
        ));
    }
    out
}

/// The dry run's line for `b`.
pub fn describe(b: &ServiceBuild) -> String {
    format!(
        "{}\n      else\n      $ {}",
        describe_repack(std::slice::from_ref(&b.service), &b.analysis, &b.objcopy),
        b.pyinstaller.shell_line()
    )
}

/// The dry run's line for `c`.
pub fn describe_cross(c: &CrossBuild) -> String {
    let all = format!("$ {}", c.all.shell_line());
    match &c.repack {
        Repack::By(a) => {
            let mut out = format!(
                "{}\n      then the others: all of them by\n      {all}",
                describe_repack(&c.services, a, &c.objcopy)
            );
            if c.services.len() > 1 {
                out.push_str("\n      or each one by");
                for cmd in &c.each {
                    out.push_str(&format!("\n      $ {}", cmd.shell_line()));
                }
            }
            out
        }
        Repack::Refused(why) => format!("{all}\n      (no repack: {why})"),
    }
}

/// Build `b`'s binary: by repack when that gives PyInstaller's bytes and the build is not
/// `forced`, else with PyInstaller (`run` runs a command); then record what it was made from.
pub fn build(b: &ServiceBuild, forced: bool, run: &dyn Fn(&Command) -> Result<()>) -> Result<Built> {
    let services = std::slice::from_ref(&b.service);
    let extra = [("pyinstaller".to_string(), b.pyinstaller.shell_line().replace(&*b.root.to_string_lossy(), "<root>"))];
    let built = build_all(services, Some(&b.analysis), &b.objcopy, &extra, forced, &b.root, &|_| run(&b.pyinstaller))?;
    Ok(built[0])
}

/// Build `c`'s binaries: a repack of each that can be (not when `forced`), then one build of
/// the others (all of them by `c.all`, a part of them one by one).
pub fn cross_build(c: &CrossBuild, forced: bool, run: &dyn Fn(&Command) -> Result<()>) -> Result<Vec<Built>> {
    let analysis = match &c.repack {
        Repack::By(a) => Some(a),
        Repack::Refused(_) => None,
    };
    build_all(&c.services, analysis, &c.objcopy, &c.values, forced, &c.root, &|left| {
        if left.len() == c.services.len() {
            return run(&c.all);
        }
        left.iter().try_for_each(|&i| run(&c.each[i]))
    })
}

fn build_all(
    services: &[Service],
    analysis: Option<&Analysis>,
    objcopy: &Objcopy,
    extra: &[(String, String)],
    forced: bool,
    root: &Path,
    pyinstaller: &dyn Fn(&[usize]) -> Result<()>,
) -> Result<Vec<Built>> {
    let mut last = Vec::new();
    for s in services {
        last.push(std::fs::read(&s.record).ok().and_then(|t| serde_json::from_slice::<Record>(&t).ok()));
        // Gone first: a run stopped half-way leaves no record that vouches for its output.
        fsx::remove_all(&s.record)?;
    }
    // Hashed before the analysis reads them: a script edited later is never vouched for.
    let scripts: Vec<Option<String>> = services.iter().map(|s| crate::fingerprint::hash_file(&s.script).ok()).collect();
    let keys = match analysis {
        Some(a) => keys(services, a, extra, root),
        None => vec![None; services.len()],
    };
    let mut built = Vec::new();
    let mut left = Vec::new();
    for (i, s) in services.iter().enumerate() {
        let vouched = match (&keys[i], &last[i]) {
            (Some((k, _)), Some(r)) if !forced && *k == r.key => {
                crate::fingerprint::hash_file(&s.previous).is_ok_and(|sha| sha == r.sha256)
            }
            _ => false,
        };
        let same_script = vouched && last[i].as_ref().is_some_and(|r| scripts[i].as_ref() == Some(&r.script));
        // A repack that fails (a tool missing, a binary PyInstaller would not have written) is
        // doubt like any other: PyInstaller builds it.
        let made = if same_script {
            keep(s).map(|()| Built::Kept)
        } else if vouched {
            repack_into(s, keys[i].as_ref().map(|(_, size)| *size).unwrap_or(0), objcopy, root)
                .map(|()| Built::Repacked)
        } else {
            Ok(Built::PyInstaller)
        };
        built.push(*made.as_ref().unwrap_or(&Built::PyInstaller));
        match made {
            Ok(Built::Repacked) => {
                eprintln!(
                    "    {}: repacked (only the body of {} changed), PyInstaller not run",
                    s.name,
                    s.script.display()
                )
            }
            Ok(Built::Kept) => eprintln!("    {}: unchanged since its recorded build, kept", s.name),
            Ok(Built::PyInstaller) => left.push(i),
            Err(e) => {
                eprintln!("    {}: no repack ({e:#}); PyInstaller builds it", s.name);
                left.push(i);
            }
        }
    }
    if !left.is_empty() {
        pyinstaller(&left)?;
    }
    for ((s, key), script) in services.iter().zip(keys).zip(scripts) {
        if let (Some((key, _)), Some(script)) = (key, script) {
            let sha256 = crate::fingerprint::hash_file(&s.out)?;
            fsx::write_atomic(&s.record, &serde_json::to_vec(&Record { key, script, sha256 })?)?;
        }
    }
    Ok(built)
}

/// Runs the analysis; for each service what must be unchanged for a repack and the entry
/// script's length, or None when the script's imports or the image cannot be known.
fn keys(services: &[Service], a: &Analysis, extra: &[(String, String)], root: &Path) -> Vec<Option<(String, u32)>> {
    let none = vec![None; services.len()];
    let analysed = (|| -> Result<(std::collections::BTreeMap<String, Analysed>, Option<String>)> {
        services.iter().try_for_each(|s| fsx::create_parent(&s.compiled))?;
        fsx::write_atomic(&a.tool, TOOL_PY.as_bytes())?;
        let text = a.command.capture().map_err(|e| anyhow::anyhow!("{e}"))?;
        let analysed = serde_json::from_str(&text).with_context(|| format!("the analysis printed `{text}`"))?;
        let image = match &a.image {
            Some(cmd) => Some(cmd.capture().map_err(|e| anyhow::anyhow!("{e}"))?),
            None => None,
        };
        Ok((analysed, image))
    })();
    let (analysed, image) = match analysed {
        Ok(a) => a,
        Err(e) => {
            eprintln!("    no repack: the scripts' analysis failed ({e:#}); PyInstaller builds them");
            return none;
        }
    };
    // One for all services: the inputs they share are hashed once.
    let mut stats = Stats::new(None);
    services
        .iter()
        .map(|s| {
            let found = analysed.get(&s.name)?;
            if found.error.is_some() || !found.dynamic.is_empty() {
                return None;
            }
            let mut fp = Fingerprint::default();
            for input in &s.inputs {
                fp.add_path(root, fsx::rel(root, input), &mut stats).ok()?;
            }
            for (k, v) in s.values.iter().chain(extra) {
                fp.add_value(k, v);
            }
            if let Some(id) = &image {
                fp.add_value("image", id);
            }
            fp.add_value("imports", &found.imports.to_string());
            fp.add_value("calls", &found.calls.as_ref()?.to_string());
            Some((fp.digest(), found.size?))
        })
        .collect()
}

/// The installed binary as the build's output.
fn keep(s: &Service) -> Result<()> {
    fsx::create_parent(&s.out)?;
    std::fs::copy(&s.previous, &s.out).map(drop).with_context(|| format!("cannot copy {}", s.previous.display()))
}

fn repack_into(s: &Service, size: u32, objcopy: &Objcopy, root: &Path) -> Result<()> {
    let exe = std::fs::read(&s.previous).with_context(|| format!("cannot read {}", s.previous.display()))?;
    let archive = archive(&exe)?;
    let compressed = script_entry(&archive, &s.name)?.compressed;
    let zlib = std::fs::read(&s.compiled).with_context(|| format!("cannot read {}", s.compiled.display()))?;
    let script = if compressed {
        zlib
    } else {
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::ZlibDecoder::new(&zlib[..]), &mut raw)
            .with_context(|| format!("{} is not a zlib stream", s.compiled.display()))?;
        raw
    };
    fsx::create_parent(&s.out)?;
    let pkg = s.out.with_file_name(format!("{}.pkg", s.name));
    fsx::write_atomic(&pkg, &replace_script(&exe, &archive, &s.name, &script, size)?)?;
    std::fs::copy(&s.previous, &s.out).with_context(|| format!("cannot copy {}", s.previous.display()))?;
    let run = |args: Vec<String>| -> Result<()> {
        Command::new(objcopy.program.clone(), root).args(args).arg(&s.out).capture().map(drop).map_err(|e| {
            anyhow::anyhow!(
                "{} on {} failed ({e}); it is in Debian's {}",
                objcopy.program,
                s.out.display(),
                objcopy.package
            )
        })
    };
    let swapped = run(vec!["--remove-section".into(), "pydata".into()])
        .and_then(|()| run(vec!["--add-section".into(), format!("pydata={}", pkg.display())]));
    fsx::remove_all(&pkg)?;
    if swapped.is_err() {
        fsx::remove_all(&s.out)?;
    }
    swapped
}

/// PyInstaller's typecode of an entry script.
const SCRIPT: u8 = b's';
/// TOC records are padded to this, for the bootloader's aligned reads on armhf.
const RECORD_ALIGN: usize = 16;
/// entry_length, data_offset, stored_length, uncompressed_length (u32 each), compressed, typecode.
const RECORD_HEADER: usize = 18;

/// The CArchive `archive` of `exe` with the entry script `name` holding `stored`
/// (`uncompressed_len` once inflated), every other entry copied as stored, in the same order.
fn replace_script(
    exe: &[u8],
    archive: &pyinstaller::Archive,
    name: &str,
    stored: &[u8],
    uncompressed_len: u32,
) -> Result<Vec<u8>> {
    script_entry(archive, name)?;
    let mut pkg = Vec::with_capacity(archive.cookie.pkg_length as usize);
    let mut toc = Vec::new();
    for e in &archive.entries {
        let replaced = e.typecode == SCRIPT && e.name == name;
        let (data, ulen) = if replaced {
            (stored, uncompressed_len)
        } else {
            let start = archive.package_start + e.data_offset as usize;
            (&exe[start..start + e.stored_length as usize], e.uncompressed_length)
        };
        let offset = u32_len(pkg.len(), "the archive")?;
        pkg.extend_from_slice(data);
        let name = e.name.as_bytes();
        let record = (RECORD_HEADER + name.len() + 1).next_multiple_of(RECORD_ALIGN);
        toc.extend_from_slice(&u32_len(record, "a TOC record")?.to_be_bytes());
        toc.extend_from_slice(&offset.to_be_bytes());
        toc.extend_from_slice(&u32_len(data.len(), "an entry")?.to_be_bytes());
        toc.extend_from_slice(&ulen.to_be_bytes());
        toc.push(u8::from(e.compressed));
        toc.push(e.typecode);
        toc.extend_from_slice(name);
        toc.resize(toc.len() + record - RECORD_HEADER - name.len(), 0);
    }
    let toc_offset = u32_len(pkg.len(), "the archive")?;
    pkg.extend_from_slice(&toc);
    let libname = archive.cookie.python_libname.as_bytes();
    if libname.len() >= 64 {
        bail!("the archive's Python library name `{}` does not fit its cookie", archive.cookie.python_libname);
    }
    let length = u32_len(pkg.len() + pyinstaller::COOKIE_LEN, "the archive")?;
    pkg.extend_from_slice(&COOKIE_MAGIC);
    for v in [length, toc_offset, u32_len(toc.len(), "the TOC")?, archive.cookie.python_version] {
        pkg.extend_from_slice(&v.to_be_bytes());
    }
    pkg.extend_from_slice(libname);
    pkg.resize(pkg.len() + 64 - libname.len(), 0);
    Ok(pkg)
}

fn archive(exe: &[u8]) -> Result<pyinstaller::Archive> {
    match pyinstaller::locate(exe, Location::Scan) {
        Ok(Some(a)) => Ok(a),
        Ok(None) => bail!("no PyInstaller archive in the executable: it is not a one-file build"),
        Err(e) => bail!("the executable's PyInstaller archive is corrupt at byte {}: {}", e.offset, e.detail),
    }
}

fn script_entry<'a>(archive: &'a pyinstaller::Archive, name: &str) -> Result<&'a pyinstaller::TocEntry> {
    let mut scripts = archive.entries.iter().filter(|e| e.typecode == SCRIPT);
    match scripts.clone().find(|e| e.name == name) {
        Some(e) => Ok(e),
        None => bail!(
            "the archive has no entry script `{name}` (its scripts: {}): it was built from another entry point",
            scripts.by_ref().map(|e| e.name.as_str()).collect::<Vec<_>>().join(", ")
        ),
    }
}

fn u32_len(n: usize, what: &str) -> Result<u32> {
    u32::try_from(n).map_err(|_| anyhow::anyhow!("{what} would be {n} bytes, over the format's 4 GiB"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::tests::common::{PkgEntry, build_package};

    fn entries(script: &[u8]) -> Vec<PkgEntry> {
        entries_named("print_service", script)
    }

    fn entries_named(name: &'static str, script: &[u8]) -> Vec<PkgEntry> {
        vec![
            PkgEntry { name: "struct", typecode: b'm', data: b"module bytes".repeat(40), compress: true },
            PkgEntry { name: "pyi-runtime-option", typecode: b'o', data: vec![], compress: false },
            PkgEntry { name: "pyiboot01_bootstrap", typecode: b's', data: b"boot".to_vec(), compress: true },
            PkgEntry { name, typecode: b's', data: script.to_vec(), compress: true },
            PkgEntry { name: "lib/a-name-long-enough-to-pad.so", typecode: b'b', data: vec![7; 300], compress: false },
        ]
    }

    fn exe(pkg: &[u8]) -> Vec<u8> {
        let mut exe = b"\x7fELF bootloader".to_vec();
        exe.extend_from_slice(pkg);
        exe.extend_from_slice(b"section headers");
        exe
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn the_same_script_gives_the_archive_back_and_another_one_the_archive_built_with_it() {
        let (old, _) = build_package(&entries(b"old code"), 311, "libpython3.11.so.1.0");
        let exe = exe(&old);
        let a = archive(&exe).unwrap();
        assert!(script_entry(&a, "print_service").unwrap().compressed);
        let same = replace_script(&exe, &a, "print_service", &zlib(b"old code"), 8).unwrap();
        assert_eq!(same, old);
        let new_code = b"new code, longer than the old one".repeat(3);
        let (built, _) = build_package(&entries(&new_code), 311, "libpython3.11.so.1.0");
        let len = new_code.len() as u32;
        assert_eq!(replace_script(&exe, &a, "print_service", &zlib(&new_code), len).unwrap(), built);
    }

    /// A build in `dir` whose "PyInstaller" is the closure given to [`build`].
    fn service_build(dir: &std::path::Path) -> ServiceBuild {
        std::fs::write(dir.join("svc.py"), "import os\nfrom json import dumps\nX = 1\n").unwrap();
        std::fs::write(dir.join("requirements.txt"), "pyinstaller==6\n").unwrap();
        // The installed binary: a real ELF with a `pydata` archive whose script is `svc`.
        let (pkg, _) = build_package(&entries_named("svc", b"old code"), 311, "libpython3.11.so.1.0");
        std::fs::write(dir.join("pkg"), pkg).unwrap();
        std::fs::copy("/bin/true", dir.join("previous")).unwrap();
        let add = std::process::Command::new("objcopy")
            .arg("--add-section")
            .arg(format!("pydata={}", dir.join("pkg").display()))
            .arg(dir.join("previous"))
            .status()
            .expect("objcopy (binutils) must be installed for these tests");
        assert!(add.success());
        let service = Service {
            name: "svc".into(),
            script: dir.join("svc.py"),
            compiled: dir.join("tmp/svc.script"),
            out: dir.join("tmp/svc"),
            previous: dir.join("previous"),
            record: dir.join("work/repack.json"),
            inputs: vec![dir.join("requirements.txt")],
            values: vec![("python".into(), "Python 3.11.2".into())],
        };
        let python = Command::new("python3", dir).env("PYTHONHASHSEED", "0");
        let analysis = Analysis::new(
            python,
            dir.join("tmp/tool.py"),
            std::slice::from_ref(&service),
            &|p| p.to_string_lossy().into_owned(),
            None,
        );
        ServiceBuild {
            service,
            analysis,
            objcopy: Objcopy { program: "objcopy".into(), package: "binutils".into() },
            pyinstaller: Command::new("pyinstaller", dir),
            root: dir.to_path_buf(),
        }
    }

    /// Runs `build` with a "PyInstaller" that copies the installed binary, then installs the
    /// output as the real step does: whether PyInstaller ran.
    fn ran_pyinstaller(b: &ServiceBuild, forced: bool) -> bool {
        built_by(b, forced) == Built::PyInstaller
    }

    fn built_by(b: &ServiceBuild, forced: bool) -> Built {
        let ran = std::cell::Cell::new(false);
        let built = build(b, forced, &|_| {
            ran.set(true);
            std::fs::create_dir_all(b.service.out.parent().unwrap()).unwrap();
            std::fs::copy(&b.service.previous, &b.service.out).unwrap();
            Ok(())
        })
        .unwrap();
        assert_eq!(built == Built::PyInstaller, ran.get());
        std::fs::rename(&b.service.out, &b.service.previous).unwrap();
        built
    }

    /// The stored script entry `svc` of the installed binary, inflated.
    fn installed_script(b: &ServiceBuild) -> Vec<u8> {
        let exe = std::fs::read(&b.service.previous).unwrap();
        let archive = archive(&exe).unwrap();
        let e = script_entry(&archive, "svc").unwrap();
        archive.entry_data(&exe, e).unwrap().into_owned()
    }

    #[test]
    fn pyinstaller_runs_unless_only_the_scripts_body_changed_since_the_recorded_build() {
        let d = tempfile::tempdir().unwrap();
        let b = service_build(d.path());
        assert!(ran_pyinstaller(&b, false), "no record: PyInstaller");
        assert!(b.service.record.exists());
        // Same imports, a new body: repacked, with the script compiled by the Python given.
        std::fs::write(&b.service.script, "import os\nfrom json import dumps\nX = 'kt-new-body'\n").unwrap();
        assert!(!ran_pyinstaller(&b, false), "a body edit ran PyInstaller");
        let script = installed_script(&b);
        assert!(script.windows(11).any(|w| w == b"kt-new-body"), "the repack lacks the edit");
        let repacked = std::fs::read(&b.service.previous).unwrap();
        assert_eq!(built_by(&b, false), Built::Kept, "the repack's record vouches for its binary");
        assert_eq!(std::fs::read(&b.service.previous).unwrap(), repacked, "a kept binary changed");
        assert!(ran_pyinstaller(&b, true), "--force is PyInstaller's");
        assert_eq!(built_by(&b, false), Built::Kept, "a forced build's record vouches for its binary too");
        std::fs::write(&b.service.script, "import os\nfrom json import dumps\nX = 'kt-newer-body'\n").unwrap();
        assert_eq!(built_by(&b, false), Built::Repacked);
        // A binary PyInstaller would not write (its script entry gone): PyInstaller builds it.
        let (pkg, _) = build_package(&entries_named("other", b"x"), 311, "libpython3.11.so.1.0");
        std::fs::write(d.path().join("pkg"), pkg).unwrap();
        let swap = std::process::Command::new("objcopy")
            .arg("--update-section")
            .arg(format!("pydata={}", d.path().join("pkg").display()))
            .arg(&b.service.previous)
            .status()
            .unwrap();
        assert!(swap.success());
        let record: Record = serde_json::from_slice(&std::fs::read(&b.service.record).unwrap()).unwrap();
        let sha256 = crate::fingerprint::hash_file(&b.service.previous).unwrap();
        fsx::write_atomic(&b.service.record, &serde_json::to_vec(&Record { sha256, ..record }).unwrap()).unwrap();
        std::fs::write(&b.service.script, "import os\nfrom json import dumps\nX = 'kt-newest-body'\n").unwrap();
        assert!(ran_pyinstaller(&b, false), "a failed repack did not fall back to PyInstaller");

        type Edit<'a> = &'a dyn Fn(&ServiceBuild);
        let edits: [(&str, Edit); 6] = [
            ("another import", &|b| {
                std::fs::write(&b.service.script, "import os\nimport sys\nfrom json import dumps\n").unwrap()
            }),
            ("imports reordered", &|b| {
                std::fs::write(&b.service.script, "from json import dumps\nimport os\n").unwrap()
            }),
            ("an import inside a function", &|b| {
                std::fs::write(&b.service.script, "import os\nfrom json import dumps\ndef f():\n    import ssl\n")
                    .unwrap()
            }),
            ("an import by computed name", &|b| {
                std::fs::write(&b.service.script, "import os\nfrom json import dumps\n__import__('s' + 'sl')\n")
                    .unwrap()
            }),
            ("another input", &|b| std::fs::write(&b.service.inputs[0], "pyinstaller==7\n").unwrap()),
            ("the installed binary", &|b| std::fs::write(&b.service.previous, b"edited by hand").unwrap()),
        ];
        for (what, edit) in edits {
            let d = tempfile::tempdir().unwrap();
            let b = service_build(d.path());
            assert!(ran_pyinstaller(&b, false));
            edit(&b);
            assert!(ran_pyinstaller(&b, false), "{what} did not run PyInstaller");
        }
        // Calls that PyInstaller's analysis acts on, with every import they need already
        // there: the imports are the same, yet PyInstaller would bundle more.
        let base = "import ctypes\nfrom importlib.metadata import version\nX = 1\n";
        let calls = [
            ("a metadata lookup", "", "V = version('PyYAML')\n"),
            ("a ctypes library", "", "def speak():\n    return ctypes.CDLL('libespeak-ng.so.1')\n"),
            ("a library found by name", "", "L = ctypes.util.find_library('espeak-' + 'ng')\n"),
            ("a library by a loader's attribute", "", "L = ctypes.cdll.libespeak\n"),
            ("a call's constant argument", "V = version('PyYAML')\n", "V = version('pyyaml')\n"),
        ];
        for (what, before, after) in calls {
            let d = tempfile::tempdir().unwrap();
            let b = service_build(d.path());
            std::fs::write(&b.service.script, format!("{base}{before}")).unwrap();
            assert!(ran_pyinstaller(&b, false));
            std::fs::write(&b.service.script, format!("{base}{before}Y = 2\n")).unwrap();
            assert_eq!(built_by(&b, false), Built::Repacked, "{what}: an edit beside it");
            std::fs::write(&b.service.script, format!("{base}{after}Y = 2\n")).unwrap();
            assert!(ran_pyinstaller(&b, false), "{what} did not run PyInstaller");
        }

        // A script that does not parse is PyInstaller's to report.
        let d = tempfile::tempdir().unwrap();
        let b = service_build(d.path());
        assert!(ran_pyinstaller(&b, false));
        std::fs::write(&b.service.script, "import os\nfrom json import dumps\ndef (:\n").unwrap();
        assert!(ran_pyinstaller(&b, false));
        assert!(!b.service.record.exists(), "a script whose imports are unknown got a record");
    }

    /// A container build of services a, b and c in `dir`, each installed as a real ELF whose
    /// `pydata` archive has its script; `shared` is an input of all three.
    fn cross(dir: &std::path::Path) -> CrossBuild {
        std::fs::write(dir.join("shared.txt"), "v1\n").unwrap();
        let names = ["a", "b", "c"];
        let services: Vec<Service> = names
            .iter()
            .map(|n| {
                std::fs::write(dir.join(format!("{n}.py")), "import os\nX = 1\n").unwrap();
                let (pkg, _) = build_package(&entries_named(n, b"old code"), 311, "libpython3.11.so.1.0");
                std::fs::write(dir.join(format!("{n}.pkg")), pkg).unwrap();
                std::fs::create_dir_all(dir.join("dist")).unwrap();
                std::fs::copy("/bin/true", dir.join("dist").join(n)).unwrap();
                let add = std::process::Command::new("objcopy")
                    .arg("--add-section")
                    .arg(format!("pydata={}", dir.join(format!("{n}.pkg")).display()))
                    .arg(dir.join("dist").join(n))
                    .status()
                    .expect("objcopy (binutils) must be installed for these tests");
                assert!(add.success());
                Service {
                    name: n.to_string(),
                    script: dir.join(format!("{n}.py")),
                    compiled: dir.join(format!("scratch/{n}.script")),
                    out: dir.join(format!("tmp/{n}")),
                    previous: dir.join("dist").join(n),
                    record: dir.join(format!("work/{n}/repack.json")),
                    inputs: vec![dir.join("shared.txt")],
                    values: vec![],
                }
            })
            .collect();
        let python = Command::new("python3", dir).env("PYTHONHASHSEED", "0");
        let host = |p: &std::path::Path| p.to_string_lossy().into_owned();
        let analysis = Analysis::new(python, dir.join("scratch/tool.py"), &services, &host, None);
        CrossBuild {
            services,
            repack: Repack::By(analysis),
            objcopy: Objcopy { program: "objcopy".into(), package: "binutils".into() },
            all: Command::new("build", dir).arg("all"),
            each: names.iter().map(|n| Command::new("build", dir).arg(n)).collect(),
            values: vec![("dockerfile".into(), "FROM scratch".into())],
            root: dir.to_path_buf(),
        }
    }

    /// Runs `cross_build` with a "container build" that copies the installed binaries it is
    /// asked for, installs the outputs as the step does: the build commands run, and how each
    /// binary was made.
    fn cross_run(c: &CrossBuild, forced: bool) -> (Vec<String>, Vec<Built>) {
        let ran = std::cell::RefCell::new(Vec::new());
        let built = cross_build(c, forced, &|cmd| {
            let what = cmd.args[0].clone();
            for s in c.services.iter().filter(|s| what == "all" || what == s.name) {
                std::fs::create_dir_all(s.out.parent().unwrap()).unwrap();
                std::fs::copy(&s.previous, &s.out).unwrap();
            }
            ran.borrow_mut().push(what);
            Ok(())
        })
        .unwrap();
        for s in &c.services {
            std::fs::rename(&s.out, &s.previous).unwrap();
        }
        (ran.into_inner(), built)
    }

    #[test]
    fn a_container_build_repacks_what_it_can_and_builds_only_the_rest() {
        use Built::{Kept, PyInstaller as Py, Repacked};
        let d = tempfile::tempdir().unwrap();
        let c = cross(d.path());
        let script = |n: &str, text: &str| std::fs::write(d.path().join(format!("{n}.py")), text).unwrap();
        assert_eq!(cross_run(&c, false), (vec!["all".into()], vec![Py, Py, Py]), "no records: one build of all");
        script("b", "import os\nX = 'kt-b-body'\n");
        assert_eq!(cross_run(&c, false), (vec![], vec![Kept, Repacked, Kept]), "a body edit built something");
        let exe = std::fs::read(&c.services[1].previous).unwrap();
        let a = archive(&exe).unwrap();
        let entry = a.entry_data(&exe, script_entry(&a, "b").unwrap()).unwrap().into_owned();
        assert!(entry.windows(9).any(|w| w == b"kt-b-body"), "b's repack lacks the edit");
        // An import in b, a body edit in a: b alone is built, by its own command.
        script("b", "import os\nimport sys\n");
        script("a", "import os\nX = 2\n");
        assert_eq!(cross_run(&c, false), (vec!["b".into()], vec![Repacked, Py, Kept]));
        // Imports in a and c: each built by its own command, in order.
        script("a", "import json\n");
        script("c", "import json\n");
        assert_eq!(cross_run(&c, false), (vec!["a".into(), "c".into()], vec![Py, Kept, Py]));
        // An input they share, and --force: one build of all.
        std::fs::write(d.path().join("shared.txt"), "v2\n").unwrap();
        assert_eq!(cross_run(&c, false), (vec!["all".into()], vec![Py, Py, Py]));
        assert_eq!(cross_run(&c, true), (vec!["all".into()], vec![Py, Py, Py]));
        assert_eq!(cross_run(&c, false), (vec![], vec![Kept, Kept, Kept]));
        // Another Dockerfile: every binary is PyInstaller's again.
        let other = CrossBuild { values: vec![("dockerfile".into(), "FROM other".into())], ..c.clone() };
        assert_eq!(cross_run(&other, false), (vec!["all".into()], vec![Py, Py, Py]));
        // No analysis (a tag that can move): all built, and no record left to vouch for them.
        let none = CrossBuild { repack: Repack::Refused("a tag".into()), ..c.clone() };
        assert_eq!(cross_run(&none, false), (vec!["all".into()], vec![Py, Py, Py]));
        assert!(c.services.iter().all(|s| !s.record.exists()), "a build without analysis left records");
        assert_eq!(cross_run(&c, false), (vec!["all".into()], vec![Py, Py, Py]));
    }

    #[test]
    fn a_missing_script_or_archive_is_refused_by_name() {
        let (pkg, _) = build_package(&entries(b"x"), 311, "libpython3.11.so.1.0");
        let exe = exe(&pkg);
        let a = archive(&exe).unwrap();
        let err = replace_script(&exe, &a, "kt_service", b"", 0).unwrap_err().to_string();
        assert!(
            err.contains("no entry script `kt_service` (its scripts: pyiboot01_bootstrap, print_service)"),
            "{err}"
        );
        // A module of that name is not the script.
        let err = replace_script(&exe, &a, "struct", b"", 0).unwrap_err().to_string();
        assert!(err.contains("no entry script `struct`"), "{err}");
        let err = archive(b"\x7fELF no archive").unwrap_err().to_string();
        assert!(err.contains("no PyInstaller archive"), "{err}");
    }
}
