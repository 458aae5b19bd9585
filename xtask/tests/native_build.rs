//! Real native builds through `cargo xtask dist`, in a copy of the repository so edits do not
//! touch the checkout: the three services, electron-builder for real (offline, with a stand-in
//! Electron), afterpack, the .deb and release/<version>/; then the .deb checked with dpkg-deb
//! and lintian, rebuilt byte for byte, the afterPack shim compared with the Rust step, and the
//! incremental behaviour: no-op run, a one-service edit, a touch that must rebuild nothing.

mod common;

use std::{path::Path, process::Command};

use common::{SERVICES, copy_repo, outcome, outcomes, repo_root, version, xtask_json};

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "x64",
        "aarch64" if cfg!(target_os = "macos") => "darwin-arm64",
        "aarch64" => "arm64",
        "arm" => "armv7l",
        other => panic!("no target for host arch {other}"),
    }
}

/// Run `dist --json` in `root` (Electron from the stand-in beside it); the run report.
fn dist(root: &Path) -> Vec<(String, String)> {
    dist_with(root, &[])
}

fn dist_with(root: &Path, args: &[&str]) -> Vec<(String, String)> {
    // Share the checkout's venv (synced by `cargo xtask test`) rather than download another.
    let venv = repo_root().join("python-service/.venv");
    let env = match std::env::var("KT_VENV") {
        Ok(v) => v,
        Err(_) if venv.join("bin/python").exists() => venv.to_string_lossy().into_owned(),
        Err(_) => String::new(),
    };
    let electron = root.parent().unwrap().join(format!("electron-{}", host_arch()));
    let mut all = vec!["dist"];
    all.extend(args);
    outcomes(&xtask_json(root, &all, &[("KT_VENV", &env), ("KT_ELECTRON_DIST", electron.to_str().unwrap())]))
}

fn run_binary(bin: &Path, arg: &str) -> String {
    let out = Command::new(bin).arg(arg).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{} {arg} failed: {text}", bin.display());
    text
}

#[test]
fn native_dist_builds_packages_and_rebuilds_only_what_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let root = &tmp.path().join("repo");
    copy_repo(root);
    common::stand_in_electron(tmp.path(), host_arch());
    let version = version(root);

    let cold = dist(root);
    for s in SERVICES.iter().chain(&["electron-builder", "afterpack", "deb", "release"]) {
        assert_eq!(outcome(&cold, s), "built", "{cold:?}");
    }
    common::package::check(root, tmp.path(), host_arch(), &version, &|args| {
        let report = dist_with(root, args);
        assert_eq!(outcome(&report, "deb"), "built", "{report:?}");
    });
    for s in SERVICES {
        let bin = root.join("python-service/dist").join(host_arch()).join(s);
        let v = run_binary(&bin, "--version");
        assert_eq!(v.trim(), format!("{s} {version} (default, {})", host_arch()));
        let t = run_binary(&bin, "--self-test");
        assert!(t.contains(&format!("self-test ok: {s}")), "{t}");
    }

    // The real one-file binaries pass verify, every library inside their archives included,
    // and a floor below the build OS's glibc is caught inside the archive (libpython).
    let bins: Vec<String> = SERVICES
        .iter()
        .map(|s| root.join("python-service/dist").join(host_arch()).join(s).display().to_string())
        .collect();
    let mut args = vec!["verify", "--arch", host_arch()];
    args.extend(bins.iter().map(String::as_str));
    let clean = common::xtask_json(root, &args, &[]);
    assert_eq!(clean["findings"].as_array().unwrap().len(), 0, "{clean}");
    let archives = clean["archives"].as_array().unwrap();
    assert_eq!(archives.len(), 3, "{clean}");
    for a in archives {
        assert_eq!(a["python_version"], 311, "{a}");
        assert!(a["entries"].as_u64().unwrap() > 40, "{a}");
        assert!(a["binaries"].as_u64().unwrap() > 10, "{a}");
    }
    args.extend(["--glibc", "2.17"]);
    let out = Command::new(env!("CARGO_BIN_EXE_xtask")).arg("--root").arg(root).args(&args).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "a 2.17 floor must fail");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("libpython3.11.so.1.0"), "{table}");

    let again = dist(root);
    for (id, o) in &again {
        assert!(o == "up_to_date" || (id == "preflight" && o == "skipped"), "{again:?}");
    }

    // A real edit to one service rebuilds that service alone.
    common::edit(&root.join("python-service/src/print_service.py"));
    let edited = dist(root);
    assert_eq!(outcome(&edited, "print_service"), "built", "{edited:?}");
    assert_eq!(outcome(&edited, "kt_service"), "up_to_date", "{edited:?}");
    assert_eq!(outcome(&edited, "tts_service"), "up_to_date", "{edited:?}");
    // ... and everything it flows into, but not the Electron app itself.
    assert_eq!(outcome(&edited, "electron-builder"), "up_to_date", "{edited:?}");
    for s in ["afterpack", "deb", "release"] {
        assert_eq!(outcome(&edited, s), "built", "{edited:?}");
    }

    // Touching a file without changing it rebuilds nothing.
    let kt = root.join("python-service/src/kt_service.py");
    let same = std::fs::read(&kt).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(&kt, same).unwrap();
    let touched = dist(root);
    assert!(touched.iter().all(|(id, o)| o == "up_to_date" || id == "preflight"), "{touched:?}");
}

/// What PyInstaller's own archive reader finds in the entry script of a one-file binary.
fn entry_script(venv: &Path, bin: &Path, name: &str) -> Vec<u8> {
    let script = "import sys\nfrom PyInstaller.archive.readers import CArchiveReader\n\
                  sys.stdout.buffer.write(CArchiveReader(sys.argv[1]).extract(sys.argv[2]))\n";
    let out = Command::new(venv.join("bin/python")).args(["-c", script]).arg(bin).arg(name).output().unwrap();
    assert!(out.status.success(), "CArchiveReader: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// The venv the builds use: `KT_VENV`, else the checkout's (synced by `cargo xtask test`).
fn test_venv() -> std::path::PathBuf {
    let venv = match std::env::var("KT_VENV") {
        Ok(v) if !v.is_empty() => std::path::PathBuf::from(v),
        _ => repo_root().join("python-service/.venv"),
    };
    assert!(venv.join("bin/python").exists(), "no venv at {}: run `cargo xtask test`", venv.display());
    venv
}

/// `build-services --service print_service --json` in `root` with `extra` flags, which must
/// succeed: the run report and what it printed on stderr.
fn build_print_service(root: &Path, venv: &Path, extra: &[&str]) -> (Vec<(String, String)>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("--root")
        .arg(root)
        .args(["build-services", "--service", "print_service", "--json"])
        .args(extra)
        .env("KT_VENV", venv)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "build-services failed:\n{stderr}");
    (outcomes(&serde_json::from_slice(&out.stdout).unwrap()), stderr)
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// A source saved while PyInstaller runs is not in that build, so the run must not record it
/// as built: the next plain run builds it, and the binary then holds it.
#[test]
fn a_source_saved_during_the_build_is_built_by_the_next_run() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("repo");
    copy_repo(&root);
    let venv = test_venv();
    let src = root.join("python-service/src/print_service.py");
    let nonce = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let (first, second) = (format!("kt-first-{nonce}"), format!("kt-second-{nonce}"));
    let original = std::fs::read_to_string(&src).unwrap();
    std::fs::write(&src, format!("{original}\nEDIT_MARKER = \"{first}\"\n")).unwrap();

    // Save the second edit once PyInstaller has finished its archive (PKG-00.toc is written
    // after the scripts are compiled into it), while the step is still running.
    let work = root.join("target/xtask/pyinstaller");
    let saver = {
        let (src, original, second) = (src.clone(), original.clone(), second.clone());
        std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
            while std::time::Instant::now() < deadline {
                let pkg = walkdir::WalkDir::new(&work)
                    .into_iter()
                    .filter_map(|e| e.ok())
                    .any(|e| e.file_name() == "PKG-00.toc");
                if pkg {
                    std::fs::write(&src, format!("{original}\nEDIT_MARKER = \"{second}\"\n")).unwrap();
                    return true;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            false
        })
    };
    let build = |root: &Path| build_print_service(root, &venv, &[]);
    let (report, stderr) = build(&root);
    assert!(saver.join().unwrap(), "PyInstaller never wrote its archive");
    assert_eq!(outcome(&report, "print_service"), "built", "{report:?}");
    assert!(stderr.contains("changed while `print_service` ran"), "the edit was not seen as mid-build:\n{stderr}");
    let bin = root.join("python-service/dist").join(host_arch()).join("print_service");
    let script = entry_script(&venv, &bin, "print_service");
    assert!(contains(&script, &first) && !contains(&script, &second), "the build saw the second edit");

    // The next plain run builds the edit, and then nothing.
    let (report, _) = build(&root);
    assert_eq!(outcome(&report, "print_service"), "built", "{report:?}");
    let script = entry_script(&venv, &bin, "print_service");
    assert!(contains(&script, &second), "the binary lacks the edit saved during the first build");
    let (report, _) = build(&root);
    assert_eq!(outcome(&report, "print_service"), "up_to_date", "{report:?}");
}

/// PyInstaller runs with `--clean`: a build after an edit that keeps size and mtime holds the
/// edit, and gives the same bytes as a build from empty folders of the same sources (with the
/// hash seed fixed: PyInstaller orders base_library.zip by a Python set).
/// An edit to the entry script's body alone is not built by PyInstaller: the installed binary
/// gets the recompiled script, and that is PyInstaller's binary of the edit, byte for byte.
#[test]
fn a_warm_service_build_is_byte_identical_to_a_cold_one() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("repo");
    copy_repo(&root);
    let venv = test_venv();
    let build = |extra: &[&str]| {
        let (report, stderr) = build_print_service(&root, &venv, extra);
        assert_eq!(outcome(&report, "print_service"), "built", "{report:?}");
        (stderr.contains("print_service: repacked"), stderr)
    };
    let bin = root.join("python-service/dist").join(host_arch()).join("print_service");
    let work = root.join("target/xtask/pyinstaller").join(host_arch()).join("print_service");
    let cache = root.join("target/xtask/pyinstaller-cache").join(host_arch()).join("print_service");
    let (repacked, _) = build(&[]);
    assert!(!repacked, "a first build cannot be a repack");
    assert!(work.join("print_service/PKG-00.toc").exists(), "no work folder at {}", work.display());

    // A same-size edit to the shared code with its mtime put back (`cp -p`, `rsync -t`,
    // `tar -x`): PyInstaller's work folder keeps compiled modules by mtime and size, so the
    // binary must come from a clean work folder to hold the edit.
    let shared = root.join("python-service/src/kt_common/__init__.py");
    let mtime = std::fs::metadata(&shared).unwrap().modified().unwrap();
    let text = std::fs::read_to_string(&shared).unwrap();
    assert!(text.contains("\"must not be empty\""), "the edit's anchor is gone from {}", shared.display());
    std::fs::write(&shared, text.replace("\"must not be empty\"", "\"must not be EMPTY\"")).unwrap();
    std::fs::File::options().write(true).open(&shared).unwrap().set_modified(mtime).unwrap();
    let (repacked, _) = build(&[]);
    assert!(!repacked, "an edit to the shared code was repacked");
    let module = pyz_module(&venv, &bin, "kt_common");
    assert!(contains(&module, "must not be EMPTY"), "the binary holds kt_common from before the edit");
    let first = std::fs::read(&bin).unwrap();

    // An edit to the body that reaches the bytecode: a repack, then PyInstaller (--force) on
    // the warm folders, from the same sources.
    let src = root.join("python-service/src/print_service.py");
    let nonce = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let marker = format!("kt-warm-{nonce}");
    let text = std::fs::read_to_string(&src).unwrap();
    std::fs::write(&src, format!("{text}\nEDIT_MARKER = \"{marker}\"\n")).unwrap();
    let t = std::time::Instant::now();
    let (repacked, stderr) = build(&[]);
    eprintln!("print_service after a body edit, repacked: {:.2} s", t.elapsed().as_secs_f64());
    assert!(repacked, "a body edit was not repacked:\n{stderr}");
    let repack = std::fs::read(&bin).unwrap();
    assert_ne!(repack, first);
    assert!(contains(&entry_script(&venv, &bin, "print_service"), &marker), "the repack lacks the edit");
    let listed = toc_listing(&venv, &bin);
    let (repacked, _) = build(&["--force"]);
    assert!(!repacked, "--force must run PyInstaller");
    assert!(std::fs::read(&bin).unwrap() == repack, "the repacked binary differs from PyInstaller's of the same edit");
    assert_eq!(listed, toc_listing(&venv, &bin), "PyInstaller's reader lists other entries");

    // A new import is PyInstaller's to analyse: built warm, then the same sources from empty
    // folders.
    std::fs::write(&src, format!("{text}\nimport json as _kt_json_edit  # {marker}\n")).unwrap();
    let (repacked, _) = build(&[]);
    assert!(!repacked, "an edit that adds an import was repacked");
    let warm = std::fs::read(&bin).unwrap();
    assert!(contains(&entry_script(&venv, &bin, "print_service"), "_kt_json_edit"), "the warm build lacks the edit");
    std::fs::remove_dir_all(&work).unwrap();
    // PyInstaller fills its own cache only for binaries it processes (strip, codesign).
    let _ = std::fs::remove_dir_all(&cache);
    build(&["--force"]);
    let cold = std::fs::read(&bin).unwrap();
    assert!(
        warm == cold,
        "a warm rebuild and a cold build of the same sources differ ({} vs {} bytes)",
        warm.len(),
        cold.len()
    );
}

/// The marshalled code of module `name` in a one-file binary's PYZ, by PyInstaller's readers.
fn pyz_module(venv: &Path, bin: &Path, name: &str) -> Vec<u8> {
    let script = "import sys\nfrom PyInstaller.archive.readers import CArchiveReader\n\
                  pyz = CArchiveReader(sys.argv[1]).open_embedded_archive('PYZ.pyz')\n\
                  sys.stdout.buffer.write(pyz.extract(sys.argv[2], raw=True))\n";
    let out = Command::new(venv.join("bin/python")).args(["-c", script]).arg(bin).arg(name).output().unwrap();
    assert!(out.status.success(), "ZlibArchiveReader: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// Every entry as PyInstaller's `CArchiveReader` sees it: name, offset, lengths, flag,
/// typecode and the SHA-256 of what it extracts.
fn toc_listing(venv: &Path, bin: &Path) -> String {
    let script = "import hashlib, sys\nfrom PyInstaller.archive.readers import CArchiveReader\n\
                  r = CArchiveReader(sys.argv[1])\n\
                  for n, e in r.toc.items(): print(n, e, hashlib.sha256(r.extract(n) or b'').hexdigest())\n";
    let out = Command::new(venv.join("bin/python")).args(["-c", script]).arg(bin).output().unwrap();
    assert!(out.status.success(), "CArchiveReader: {}", String::from_utf8_lossy(&out.stderr));
    let listing = String::from_utf8(out.stdout).unwrap();
    assert!(listing.lines().count() > 100, "too few entries for a one-file build:\n{listing}");
    listing
}

/// dist.yaml decides what is built: a fourth service and a moved entry build natively, and
/// every binary runs its self-test.
#[test]
fn a_fourth_service_and_a_moved_entry_build_natively() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("repo");
    copy_repo(&root);
    common::fourth_service(&root);
    let venv = match std::env::var("KT_VENV") {
        Ok(v) if !v.is_empty() => std::path::PathBuf::from(v),
        _ => repo_root().join("python-service/.venv"),
    };
    let report = outcomes(&xtask_json(&root, &["build-services"], &[("KT_VENV", venv.to_str().unwrap())]));
    for s in common::FOUR_SERVICES {
        assert_eq!(outcome(&report, s), "built", "{report:?}");
        let bin = root.join("python-service/dist").join(host_arch()).join(s);
        assert!(run_binary(&bin, "--self-test").contains(&format!("self-test ok: {s}")));
        assert!(run_binary(&bin, "--version").starts_with(&format!("{s} ")));
    }
}
