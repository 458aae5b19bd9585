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
//! [`build`] is a native service build that takes this path when it is sure to give the bytes
//! PyInstaller would: the script's imports (by Python's `ast`, in source order) and every other
//! input are those of the build that made the installed binary, which is itself unchanged since.
//! Anything else runs PyInstaller.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::{
    fingerprint::{Fingerprint, Stats},
    fsx,
    process::Command,
    verify::pyinstaller::{self, COOKIE_MAGIC, Location},
};

/// Prints the imports of the script `argv[1]` as JSON: every `import` and `from ... import`
/// anywhere in it, in source order (PyInstaller's analysis follows them, in that order), and
/// the calls that import by a computed name (`__import__`, `import_module`, `exec`, `eval`),
/// which PyInstaller may see through a hook while this cannot: any of them means PyInstaller.
pub const IMPORTS_PY: &str = r#"import ast, json, sys
tree = ast.parse(open(sys.argv[1], "rb").read(), sys.argv[1])
imports, dynamic = [], []
for node in ast.walk(tree):
    at = (node.lineno, node.col_offset) if hasattr(node, "lineno") else (0, 0)
    if isinstance(node, ast.Import):
        imports.append((at, ["import", [(a.name, a.asname) for a in node.names]]))
    elif isinstance(node, ast.ImportFrom):
        imports.append((at, ["from", node.module, node.level, [(a.name, a.asname) for a in node.names]]))
    elif isinstance(node, ast.Call):
        f = node.func
        name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
        if name in ("__import__", "import_module", "exec", "eval"):
            dynamic.append([node.lineno, name])
print(json.dumps({"imports": [i for _, i in sorted(imports, key=lambda x: x[0])], "dynamic": dynamic}))
"#;

/// Writes the stored bytes of the entry script `argv[2]` compiled from `argv[1]` to `argv[4]`,
/// zlib-compressed when `argv[3]` is `1`, and prints its uncompressed length. Standard library
/// only: it runs in a base image without PyInstaller. Run it with `PYTHONHASHSEED=0`, as the
/// builds run PyInstaller: set constants are marshalled in hash order.
pub const SCRIPT_ENTRY_PY: &str = r#"import marshal, os, sys, types, zlib
src, name, compress, out = sys.argv[1:5]
with open(src, "rb") as f:
    source = f.read()
code = compile(source, src, "exec", optimize=0)
def rename(co, filename):
    consts = tuple(rename(c, filename) if isinstance(c, types.CodeType) else c for c in co.co_consts)
    return co.replace(co_consts=consts, co_filename=filename)
code = rename(code, os.path.splitext(name)[0] + os.path.splitext(code.co_filename)[1])
blob = marshal.dumps(code)
size = len(blob)
if compress == "1":
    blob = zlib.compress(blob, level=int(os.environ.get("PYINSTALLER_ZLIB_COMPRESSION_LEVEL", 9)))
with open(out, "wb") as f:
    f.write(blob)
print(size)
"#;

/// A native one-file service build: PyInstaller, or the repack of the installed binary.
#[derive(Clone, Debug, Serialize)]
pub struct ServiceBuild {
    /// The service: its entry script's name in the archive.
    pub name: String,
    /// The entry script.
    pub script: PathBuf,
    /// The target's Python (the service venv's), which compiles the script entry.
    pub python: String,
    pub pyinstaller: Command,
    /// Where the build leaves the binary (PyInstaller's distpath/name).
    pub out: PathBuf,
    /// The installed binary of the last build.
    pub previous: PathBuf,
    /// What the last build was made from: its key and the binary's SHA-256.
    pub record: PathBuf,
    /// Every input of the build but the entry script, and the step's values.
    pub inputs: Vec<PathBuf>,
    pub values: Vec<(String, String)>,
    pub root: PathBuf,
}

/// How a [`build`] made its binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Built {
    PyInstaller,
    Repacked,
}

#[derive(Serialize, Deserialize, PartialEq)]
struct Record {
    key: String,
    sha256: String,
}

#[derive(Deserialize)]
struct Imports {
    imports: serde_json::Value,
    dynamic: Vec<serde_json::Value>,
}

/// The dry run's line for `b`.
pub fn describe(b: &ServiceBuild) -> String {
    format!(
        "build {}: when the installed binary is the one {} records and only the body of {} changed (same imports, \
         every other input the same), replace its entry script (compiled by {}, PYTHONHASHSEED=0), then \
         `objcopy --remove-section pydata` and `--add-section pydata=<archive>`; else\n      $ {}",
        b.out.display(),
        b.record.display(),
        b.script.display(),
        b.python,
        b.pyinstaller.shell_line()
    )
}

/// Build `b.out`: by repack when that gives PyInstaller's bytes and the build is not `forced`,
/// else with PyInstaller (`run` runs a command); then record what it was made from.
pub fn build(b: &ServiceBuild, forced: bool, run: &dyn Fn(&Command) -> Result<()>) -> Result<Built> {
    let key = key(b)?;
    let last: Option<Record> = std::fs::read(&b.record).ok().and_then(|t| serde_json::from_slice(&t).ok());
    // Gone first: a run stopped half-way leaves no record that vouches for its output.
    fsx::remove_all(&b.record)?;
    let repack = match (&key, &last) {
        _ if forced => false,
        (Some(k), Some(r)) if *k == r.key => {
            crate::fingerprint::hash_file(&b.previous).is_ok_and(|sha| sha == r.sha256)
        }
        _ => false,
    };
    // A repack that fails (a tool missing, a binary PyInstaller would not have written) is
    // doubt like any other: PyInstaller builds it.
    let repacked = repack
        && match repack_into(b) {
            Ok(()) => true,
            Err(e) => {
                eprintln!("    {}: no repack ({e:#}); PyInstaller builds it", b.name);
                false
            }
        };
    let built = if repacked {
        eprintln!("    {}: repacked (only the body of {} changed), PyInstaller not run", b.name, b.script.display());
        Built::Repacked
    } else {
        run(&b.pyinstaller)?;
        Built::PyInstaller
    };
    if let Some(key) = key {
        let sha256 = crate::fingerprint::hash_file(&b.out)?;
        fsx::write_atomic(&b.record, &serde_json::to_vec(&Record { key, sha256 })?)?;
    }
    Ok(built)
}

/// What must be unchanged for a repack, or None when the script's imports cannot be known.
fn key(b: &ServiceBuild) -> Result<Option<String>> {
    let py = Command::new(b.python.clone(), &b.root).args(["-c", IMPORTS_PY]).arg(&b.script);
    let Ok(text) = py.capture() else { return Ok(None) };
    let Ok(imports) = serde_json::from_str::<Imports>(&text) else { return Ok(None) };
    if !imports.dynamic.is_empty() {
        return Ok(None);
    }
    let mut fp = Fingerprint::default();
    let mut stats = Stats::new(None);
    for input in &b.inputs {
        fp.add_path(&b.root, fsx::rel(&b.root, input), &mut stats)?;
    }
    for (k, v) in &b.values {
        fp.add_value(k, v);
    }
    let root = b.root.to_string_lossy();
    fp.add_value("pyinstaller", &b.pyinstaller.shell_line().replace(root.as_ref(), "<root>"));
    fp.add_value("imports", &imports.imports.to_string());
    Ok(Some(fp.digest()))
}

fn repack_into(b: &ServiceBuild) -> Result<()> {
    let exe = std::fs::read(&b.previous).with_context(|| format!("cannot read {}", b.previous.display()))?;
    let archive = archive(&exe)?;
    let compressed = script_entry(&archive, &b.name)?.compressed;
    let dir = b.out.parent().context("the output has a folder")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let stored = dir.join(format!("{}.script", b.name));
    let size = Command::new(b.python.clone(), &b.root)
        .env("PYTHONHASHSEED", "0")
        .args(["-c", SCRIPT_ENTRY_PY])
        .arg(&b.script)
        .args([b.name.as_str(), if compressed { "1" } else { "0" }])
        .arg(&stored)
        .capture()
        .map_err(|e| anyhow::anyhow!("compiling the entry script {} failed: {e}", b.script.display()))?;
    let size: u32 = size.parse().with_context(|| format!("the script compiler printed `{size}`"))?;
    let script = std::fs::read(&stored).with_context(|| format!("cannot read {}", stored.display()))?;
    let pkg = dir.join(format!("{}.pkg", b.name));
    fsx::write_atomic(&pkg, &replace_script(&exe, &archive, &b.name, &script, size)?)?;
    std::fs::copy(&b.previous, &b.out).with_context(|| format!("cannot copy {}", b.previous.display()))?;
    let objcopy = |args: Vec<String>| -> Result<()> {
        Command::new("objcopy", &b.root)
            .args(args)
            .arg(&b.out)
            .capture()
            .map(drop)
            .map_err(|e| anyhow::anyhow!("objcopy on {} failed: {e}", b.out.display()))
    };
    objcopy(vec!["--remove-section".into(), "pydata".into()])?;
    objcopy(vec!["--add-section".into(), format!("pydata={}", pkg.display())])?;
    fsx::remove_all(&stored)?;
    fsx::remove_all(&pkg)
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
        ServiceBuild {
            name: "svc".into(),
            script: dir.join("svc.py"),
            python: "python3".into(),
            pyinstaller: Command::new("pyinstaller", dir),
            out: dir.join("tmp/svc"),
            previous: dir.join("previous"),
            record: dir.join("work/repack.json"),
            inputs: vec![dir.join("requirements.txt")],
            values: vec![("python".into(), "Python 3.11.2".into())],
            root: dir.to_path_buf(),
        }
    }

    /// Runs `build` with a "PyInstaller" that copies the installed binary, then installs the
    /// output as the real step does: whether PyInstaller ran.
    fn ran_pyinstaller(b: &ServiceBuild, forced: bool) -> bool {
        let ran = std::cell::Cell::new(false);
        let built = build(b, forced, &|_| {
            ran.set(true);
            std::fs::create_dir_all(b.out.parent().unwrap()).unwrap();
            std::fs::copy(&b.previous, &b.out).unwrap();
            Ok(())
        })
        .unwrap();
        assert_eq!(built == Built::PyInstaller, ran.get());
        std::fs::rename(&b.out, &b.previous).unwrap();
        ran.get()
    }

    /// The stored script entry `svc` of the installed binary, inflated.
    fn installed_script(b: &ServiceBuild) -> Vec<u8> {
        let exe = std::fs::read(&b.previous).unwrap();
        let archive = archive(&exe).unwrap();
        let e = script_entry(&archive, "svc").unwrap();
        archive.entry_data(&exe, e).unwrap().into_owned()
    }

    #[test]
    fn pyinstaller_runs_unless_only_the_scripts_body_changed_since_the_recorded_build() {
        let d = tempfile::tempdir().unwrap();
        let b = service_build(d.path());
        assert!(ran_pyinstaller(&b, false), "no record: PyInstaller");
        assert!(b.record.exists());
        // Same imports, a new body: repacked, with the script compiled by the Python given.
        std::fs::write(&b.script, "import os\nfrom json import dumps\nX = 'kt-new-body'\n").unwrap();
        assert!(!ran_pyinstaller(&b, false), "a body edit ran PyInstaller");
        let script = installed_script(&b);
        assert!(script.windows(11).any(|w| w == b"kt-new-body"), "the repack lacks the edit");
        assert!(!ran_pyinstaller(&b, false), "the repack's record vouches for its binary");
        assert!(ran_pyinstaller(&b, true), "--force is PyInstaller's");
        assert!(!ran_pyinstaller(&b, false), "a forced build's record vouches for its binary too");
        // A binary PyInstaller would not write (its script entry gone): PyInstaller builds it.
        let (pkg, _) = build_package(&entries_named("other", b"x"), 311, "libpython3.11.so.1.0");
        std::fs::write(d.path().join("pkg"), pkg).unwrap();
        let swap = std::process::Command::new("objcopy")
            .arg("--update-section")
            .arg(format!("pydata={}", d.path().join("pkg").display()))
            .arg(&b.previous)
            .status()
            .unwrap();
        assert!(swap.success());
        let record: Record = serde_json::from_slice(&std::fs::read(&b.record).unwrap()).unwrap();
        let sha256 = crate::fingerprint::hash_file(&b.previous).unwrap();
        fsx::write_atomic(&b.record, &serde_json::to_vec(&Record { sha256, ..record }).unwrap()).unwrap();
        assert!(ran_pyinstaller(&b, false), "a failed repack did not fall back to PyInstaller");

        type Edit<'a> = &'a dyn Fn(&ServiceBuild);
        let edits: [(&str, Edit); 6] = [
            ("another import", &|b| {
                std::fs::write(&b.script, "import os\nimport sys\nfrom json import dumps\n").unwrap()
            }),
            ("imports reordered", &|b| std::fs::write(&b.script, "from json import dumps\nimport os\n").unwrap()),
            ("an import inside a function", &|b| {
                std::fs::write(&b.script, "import os\nfrom json import dumps\ndef f():\n    import ssl\n").unwrap()
            }),
            ("an import by computed name", &|b| {
                std::fs::write(&b.script, "import os\nfrom json import dumps\n__import__('s' + 'sl')\n").unwrap()
            }),
            ("another input", &|b| std::fs::write(&b.inputs[0], "pyinstaller==7\n").unwrap()),
            ("the installed binary", &|b| std::fs::write(&b.previous, b"edited by hand").unwrap()),
        ];
        for (what, edit) in edits {
            let d = tempfile::tempdir().unwrap();
            let b = service_build(d.path());
            assert!(ran_pyinstaller(&b, false));
            edit(&b);
            assert!(ran_pyinstaller(&b, false), "{what} did not run PyInstaller");
        }
        // A script that does not parse is PyInstaller's to report.
        let d = tempfile::tempdir().unwrap();
        let b = service_build(d.path());
        assert!(ran_pyinstaller(&b, false));
        std::fs::write(&b.script, "import os\nfrom json import dumps\ndef (:\n").unwrap();
        assert!(ran_pyinstaller(&b, false));
        assert!(!b.record.exists(), "a script whose imports are unknown got a record");
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
