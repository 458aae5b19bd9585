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

use anyhow::{Result, bail};

use crate::verify::pyinstaller::{self, COOKIE_MAGIC, Location};

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

/// PyInstaller's typecode of an entry script.
const SCRIPT: u8 = b's';
/// TOC records are padded to this, for the bootloader's aligned reads on armhf.
const RECORD_ALIGN: usize = 16;
/// entry_length, data_offset, stored_length, uncompressed_length (u32 each), compressed, typecode.
const RECORD_HEADER: usize = 18;

/// Whether the script entry `name` of the archive in `exe` is stored compressed: what
/// [`SCRIPT_ENTRY_PY`] is told. Fails when there is no archive or no such script entry.
pub fn script_is_compressed(exe: &[u8], name: &str) -> Result<bool> {
    let archive = archive(exe)?;
    Ok(script_entry(&archive, name)?.compressed)
}

/// The CArchive of `exe` with the entry script `name` holding `stored` (`uncompressed_len`
/// once inflated), every other entry copied as stored, in the same order.
pub fn replace_script(exe: &[u8], name: &str, stored: &[u8], uncompressed_len: u32) -> Result<Vec<u8>> {
    let archive = archive(exe)?;
    script_entry(&archive, name)?;
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
        vec![
            PkgEntry { name: "struct", typecode: b'm', data: b"module bytes".repeat(40), compress: true },
            PkgEntry { name: "pyi-runtime-option", typecode: b'o', data: vec![], compress: false },
            PkgEntry { name: "pyiboot01_bootstrap", typecode: b's', data: b"boot".to_vec(), compress: true },
            PkgEntry { name: "print_service", typecode: b's', data: script.to_vec(), compress: true },
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
        assert!(script_is_compressed(&exe, "print_service").unwrap());
        let same = replace_script(&exe, "print_service", &zlib(b"old code"), 8).unwrap();
        assert_eq!(same, old);
        let new_code = b"new code, longer than the old one".repeat(3);
        let (built, _) = build_package(&entries(&new_code), 311, "libpython3.11.so.1.0");
        let len = new_code.len() as u32;
        assert_eq!(replace_script(&exe, "print_service", &zlib(&new_code), len).unwrap(), built);
    }

    #[test]
    fn a_missing_script_or_archive_is_refused_by_name() {
        let (pkg, _) = build_package(&entries(b"x"), 311, "libpython3.11.so.1.0");
        let err = replace_script(&exe(&pkg), "kt_service", b"", 0).unwrap_err().to_string();
        assert!(
            err.contains("no entry script `kt_service` (its scripts: pyiboot01_bootstrap, print_service)"),
            "{err}"
        );
        // A module of that name is not the script.
        let err = replace_script(&exe(&pkg), "struct", b"", 0).unwrap_err().to_string();
        assert!(err.contains("no entry script `struct`"), "{err}");
        let err = script_is_compressed(b"\x7fELF no archive", "print_service").unwrap_err().to_string();
        assert!(err.contains("no PyInstaller archive"), "{err}");
    }
}
