//! Directory walks: which files count as "should be an executable", and what
//! is reported for each kind of bad file in an unpacked app tree.

use super::common::*;
use crate::verify::object::{Expect, expectation};
use crate::verify::{Check, Severity};

#[test]
fn expectation_rule() {
    assert_eq!(expectation("libffmpeg.so", 0o644), Expect::Library);
    assert_eq!(expectation("libnode.so.108", 0o644), Expect::Library);
    assert_eq!(expectation("addon.node", 0o644), Expect::Library);
    assert_eq!(expectation("libfoo.dylib", 0o644), Expect::Library);
    assert_eq!(expectation("electron", 0o755), Expect::Executable);
    assert_eq!(expectation("helper", 0o100), Expect::Executable);
    assert_eq!(expectation("resources.pak", 0o644), Expect::Any);
    assert_eq!(expectation("notes.solution", 0o644), Expect::Any);
}

/// What linux-armv7l-unpacked could look like after a bad build.
#[test]
fn unpacked_app_tree() {
    let fx = Fx::new();
    let app = fx.path("linux-armv7l-unpacked");
    let put = |rel: &str, bytes: &[u8], exec: bool| {
        let p = fx.write(&format!("linux-armv7l-unpacked/{rel}"), bytes);
        fx.set_exec(&p, exec);
        p
    };
    let read = |p: std::path::PathBuf| std::fs::read(p).unwrap();
    let armhf = read(fx.armhf_dyn());
    put("kitchntabs", &armhf, true); // good
    put("libEGL.so", &read(fx.armhf_so()), false); // good library
    put("libffmpeg.so", &read(fx.x64_so()), false); // x86_64 library
    put("resources/app.asar.unpacked/node_modules/serialport/build/Release/bindings.node", &read(fx.x64_node()), false);
    put("libvulkan.so.1", b"", false); // empty
    put("libGLESv2.so", b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 42\n", false);
    put("chrome_crashpad_handler", &armhf[..armhf.len() / 2], true); // truncated
    put("kitchntabs.sh", b"#!/bin/sh\nexec ./kitchntabs\n", true); // script: fine
    put("chrome_100_percent.pak", &[0x05, 0, 0, 0, 1, 2, 3], false); // data: ignored
    put("icudtl.dat", &[0x99; 64], true); // exec bit on data: format error
    put("resources/helper-arm64", &read(fx.arm64_dyn()), false); // non-exec ELF: still checked
    std::os::unix::fs::symlink("libffmpeg.so", app.join("libffmpeg-link.so")).unwrap();

    let report = verify(&[&app], &target("armv7l").with_glibc_floor(2, 36));
    let mut got: Vec<(String, Check)> = report
        .findings
        .iter()
        .map(|f| (f.file.strip_prefix(&app).unwrap().to_string_lossy().into_owned(), f.check))
        .collect();
    got.sort();
    let mut want = vec![
        ("chrome_crashpad_handler".to_string(), Check::Truncated),
        ("icudtl.dat".to_string(), Check::Format),
        ("libGLESv2.so".to_string(), Check::LfsPointer),
        ("libffmpeg.so".to_string(), Check::Machine),
        ("libvulkan.so.1".to_string(), Check::Empty),
        ("resources/app.asar.unpacked/node_modules/serialport/build/Release/bindings.node".to_string(), Check::Machine),
        ("resources/helper-arm64".to_string(), Check::Machine),
    ];
    want.sort();
    assert_eq!(got, want, "\n{}", report.render_table());
    assert!(report.findings.iter().all(|f| f.severity == Severity::Error && f.inner.is_none()));
    assert_eq!(report.files_checked, 11, "a symlink's target is checked once, as a file of the tree");
    // armhf exe, armhf lib, x64 lib, x64 node, truncated exe, arm64 helper
    assert_eq!(report.elfs_checked, 6);

    let icu = report.with_check(Check::Format)[0];
    assert_eq!(icu.found, "data (starts with 99 99 99 99)");
    let cut = report.with_check(Check::Truncated)[0];
    assert_eq!(cut.expected, "complete, well-formed ELF");
    assert!(cut.found.contains("data ends at byte"), "{}", cut.found);
    let node = report.findings.iter().find(|f| f.file.ends_with("bindings.node")).unwrap();
    assert_finding(node, Check::Machine, Severity::Error, "ELF32 EM_ARM (40)", "ELF64 EM_X86_64 (62)");
}

#[test]
fn findings_are_sorted_and_stable_across_runs() {
    let fx = Fx::new();
    let dir = fx.path("tree");
    for i in 0..40 {
        let p = fx.write(&format!("tree/d{}/lib{i}.so", i % 5), &std::fs::read(fx.x64_so()).unwrap());
        fx.set_exec(&p, false);
    }
    let t = target("arm64");
    let a = verify(&[&dir], &t);
    let b = verify(&[&dir], &t);
    assert_eq!(a, b);
    assert_eq!(a.findings.len(), 40);
    let files: Vec<_> = a.findings.iter().map(|f| f.file.clone()).collect();
    let mut sorted = files.clone();
    sorted.sort();
    assert_eq!(files, sorted);
}

#[test]
fn unreadable_file_in_tree_is_an_input_error() {
    let fx = Fx::new();
    let dir = fx.path("tree");
    let p = fx.write("tree/secret.so", b"\x7fELF");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o000)).unwrap();
    // root reads through mode 000; only check the error shape when it bites.
    let (report, errors) = verify_all(&[&dir], &target("x64"), false);
    match errors.first() {
        Some(err) => {
            assert_eq!(err.kind, crate::verify::InputErrorKind::Io);
            assert_eq!(err.file, p);
        }
        None => assert_eq!(only(&report).check, Check::Truncated),
    }
}

#[test]
fn special_files_are_refused() {
    let err = input_error(std::path::Path::new("/dev/null"), &target("x64"));
    assert_eq!(err.kind, crate::verify::InputErrorKind::Io);
    assert_eq!(err.detail, "not a regular file or directory");
}

#[test]
fn inputs_with_nothing_to_check_fail_unless_allowed() {
    use std::os::unix::fs::symlink;
    let fx = Fx::new();
    // A symlink loop, a FIFO, a dangling symlink, nothing at all: no regular file anywhere.
    let looped = fx.path("loop");
    std::fs::create_dir_all(&looped).unwrap();
    symlink("b", looped.join("a")).unwrap();
    symlink("a", looped.join("b")).unwrap();
    let fifo = fx.path("fifo");
    std::fs::create_dir_all(&fifo).unwrap();
    run_tool("mkfifo", &[fifo.join("pipe").to_str().unwrap()]);
    let dangling = fx.path("dangling");
    std::fs::create_dir_all(&dangling).unwrap();
    symlink("missing.so.1", dangling.join("libx.so")).unwrap();
    let empty = fx.path("empty");
    std::fs::create_dir_all(&empty).unwrap();
    for dir in [&looped, &fifo, &dangling, &empty] {
        assert_eq!(tool_output("find", &[dir.to_str().unwrap(), "-type", "f"]), "", "find sees no file");
    }
    // A package of nothing but its control file: dpkg-deb lists folders only.
    let deb = dpkg_build(&fx, &deb_tree(&fx, "metapkg", "armhf", &[]), "xz");
    let listing = tool_output("dpkg-deb", &["--contents", deb.to_str().unwrap()]);
    assert!(listing.lines().all(|l| l.starts_with('d')), "{listing}");

    let t = target("armv7l");
    for input in [&looped, &fifo, &dangling, &empty, &deb] {
        let (report, errors) = verify_all(&[input.as_path()], &t, false);
        assert!(errors.is_empty(), "{errors:?}");
        assert!(report.has_errors(), "{}: {}", input.display(), report.verdict("armv7l"));
        let empty_finding = report.findings.iter().find(|f| f.check.as_str() == "nothing_checked");
        let f = empty_finding.unwrap_or_else(|| panic!("{}:\n{}", input.display(), report.render_table()));
        assert_eq!(&f.file, input);
        assert!(f.fix.contains("--allow-empty"), "{}", f.fix);
        // Allowed: emptiness is no finding; a broken link still is.
        let (allowed, _) = verify_all(&[input.as_path()], &t, true);
        assert!(!checks(&allowed).contains(&"nothing_checked"), "{}", allowed.render_table());
        let broken_links = input == &looped || input == &dangling;
        assert_eq!(allowed.has_errors(), broken_links, "{}:\n{}", input.display(), allowed.render_table());
    }
    // Only the empty input is named when another one holds a binary.
    let (both, _) = verify_all(&[&fifo, &fx.armhf_dyn()], &t, false);
    assert_eq!(checks(&both), vec!["nothing_checked"], "{}", both.render_table());
}

#[test]
fn links_in_a_folder_are_resolved_inside_it() {
    use std::os::unix::fs::symlink;
    let fx = Fx::new();
    let app = fx.path("linux-arm64-unpacked");
    let read = |p: std::path::PathBuf| std::fs::read(p).unwrap();
    let put = |rel: &str, bytes: &[u8], exec: bool| {
        let p = fx.write(&format!("linux-arm64-unpacked/{rel}"), bytes);
        fx.set_exec(&p, exec);
    };
    put("kitchntabs", &read(fx.arm64_dyn()), true);
    put("lib/libreal.so.1", &read(fx.arm64_so()), false);
    put("resources/blob.dat", &[0x99; 64], false); // data: nothing is expected of it by its own name
    let x64 = fx.x64_dyn(); // beside the folder, not in it
    let link = |to: &str, at: &str| symlink(to, app.join(at)).unwrap();
    link("../x64-dyn", "helper"); // climbs out of the folder to an x86-64 binary
    symlink(&x64, app.join("helper-abs")).unwrap(); // the same binary by absolute path
    link("lib/libreal.so.1", "libreal.so"); // inside: the library is checked once
    link("libself.so", "libself.so"); // a loop
    link("gone.so.2", "libgone.so"); // dangling
    link(".", "lib/again"); // a folder linking to itself: no loop, no second count
    link("../lib/again/again/libreal.so.1", "lib/libdeep.so"); // through folder links, still inside
    link("../resources/blob.dat", "lib/libblob.so"); // a library name that reaches a data file

    // What the links lead to, as the kernel resolves them, and what that is.
    let helper = tool_output("readlink", &["-f", app.join("helper").to_str().unwrap()]);
    assert_eq!(helper.trim(), std::fs::canonicalize(&x64).unwrap().to_str().unwrap());
    assert!(tool_output("readelf", &["-h", helper.trim()]).contains("Advanced Micro Devices X86-64"));
    assert!(tool_output("readelf", &["-h", app.join("lib/libdeep.so").to_str().unwrap()]).contains("AArch64"));

    let report = verify(&[&app], &target("arm64"));
    let got: Vec<(String, &str)> = report
        .findings
        .iter()
        .map(|f| (f.file.strip_prefix(&app).unwrap().to_string_lossy().into_owned(), f.check.as_str()))
        .collect();
    let want: Vec<(String, &str)> = [
        ("helper", "link"),
        ("helper-abs", "link"),
        ("libgone.so", "link"),
        ("libself.so", "link"),
        ("resources/blob.dat", "format"),
    ]
    .iter()
    .map(|(p, c)| (p.to_string(), *c))
    .collect();
    assert_eq!(got, want, "\n{}", report.render_table());
    let found = |rel: &str| &report.findings.iter().find(|f| f.file == app.join(rel)).unwrap().found;
    assert_eq!(found("helper"), "helper -> ../x64-dyn: `..` climbs above the root of the tree");
    assert!(found("helper-abs").contains("absolute target"), "{}", found("helper-abs"));
    assert!(found("libself.so").contains("a loop"), "{}", found("libself.so"));
    assert_eq!(found("libgone.so"), "libgone.so -> gone.so.2: nothing at gone.so.2 in the tree");
    assert_eq!(report.files_checked, 3, "each regular file once, whatever links reach it");
    assert_eq!(report.elfs_checked, 2);
}

#[test]
fn one_unreadable_input_keeps_the_others() {
    let fx = Fx::new();
    let good = fx.armhf_dyn();
    let foreign = fx.x64_dyn();
    let broken = fx.write("broken.deb", b"!<arch>\nnot an ar member header");
    let missing = fx.path("never-built");
    let (report, errors) = verify_all(&[&good, &broken, &missing, &foreign], &target("armv7l"), false);
    let unreadable: Vec<&std::path::Path> = errors.iter().map(|e| e.file.as_path()).collect();
    assert_eq!(unreadable, vec![broken.as_path(), missing.as_path()], "{errors:#?}");
    // The input after the unreadable ones is still checked.
    let f = only(&report);
    assert_eq!((f.check, &f.file), (Check::Machine, &foreign));
    // One JSON document carries both.
    let json: serde_json::Value = serde_json::from_str(&report.to_json().unwrap()).unwrap();
    assert_eq!(json["findings"][0]["file"], foreign.to_str().unwrap());
    let files: Vec<&str> =
        json["input_errors"].as_array().unwrap().iter().map(|e| e["file"].as_str().unwrap()).collect();
    assert_eq!(files, vec![broken.to_str().unwrap(), missing.to_str().unwrap()]);
    assert!(
        report.verdict("armv7l").starts_with("FAIL: 1 error(s), 0 warning(s), 2 input(s) unreadable"),
        "{}",
        report.verdict("armv7l")
    );
}
