//! Checks of what `dist` packaged: the .deb with the real Debian tools, lintian, byte-identical
//! rebuilds, the afterPack shim against the Rust step, and release/<version>/.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

use super::{COMMIT_EPOCH, SERVICES, sha256};

/// lintian tags we accept on the real package, each with its reason. Anything else at
/// warning or error level fails the test.
pub const LINTIAN_ALLOWED: &[(&str, &str)] = &[
    // electron-builder's layout (fpm): the app lives in /opt/<productName>, as every Electron
    // .deb does; FHS-wise it is an add-on package.
    ("dir-or-file-in-opt", "Electron apps install to /opt/<productName> (electron-builder's layout)"),
    // PyInstaller's prebuilt x86-64 bootloader (from its wheel) is linked without PIE; the
    // ARM bootloaders, compiled from source in the build image, are PIE.
    ("hardening-no-pie", "PyInstaller's prebuilt bootloader in the one-file services"),
    // Electron ships its own ffmpeg/libvulkan builds (and PyInstaller bundles zlib etc.).
    ("embedded-library", "Electron and PyInstaller bundle their libraries by design"),
];

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

/// A tree as (relative path → (mode, sha256 or link target)).
pub fn tree(dir: &Path) -> BTreeMap<String, (u32, String)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let e = e.unwrap();
        let rel = e.path().strip_prefix(dir).unwrap().to_string_lossy().into_owned();
        let meta = e.path().symlink_metadata().unwrap();
        let what = if e.file_type().is_file() {
            sha256(e.path())
        } else if e.file_type().is_symlink() {
            std::fs::read_link(e.path()).unwrap().display().to_string()
        } else {
            "dir".into()
        };
        out.insert(rel, (meta.permissions().mode() & 0o7777, what));
    }
    out
}

/// `dist` is how the test runs `cargo xtask dist` with extra flags (its environment).
pub fn check(root: &Path, scratch: &Path, arch: &str, version: &str, dist: &dyn Fn(&[&str])) {
    let debarch = match arch {
        "x64" => "amd64",
        "armv7l" => "armhf",
        "arm64" => "arm64",
        _ => unreachable!(),
    };
    let release = root.join("release").join(version);
    let deb = release.join(format!("kitchntabs_{version}_{debarch}.deb"));
    let app = root.join("electron-app/release").join(match arch {
        "x64" => "linux-unpacked".to_string(),
        a => format!("linux-{a}-unpacked"),
    });

    // dpkg-deb reads the control fields we wrote.
    let info = run(Command::new("dpkg-deb").arg("--info").arg(&deb));
    for field in [
        "Package: kitchntabs".to_string(),
        format!("Version: {version}"),
        format!("Architecture: {debarch}"),
        "Depends: libc6 (>= 2.36), libgtk-3-0, libnotify4, libnss3".into(),
        "Recommends: libappindicator3-1, espeak-ng".into(),
        "Section: utils".into(),
    ] {
        assert!(info.contains(&field), "no `{field}` in:\n{info}");
    }
    // Every entry root-owned with the commit's time; services 0755.
    let contents = run(Command::new("dpkg-deb").arg("--contents").arg(&deb));
    assert!(contents.lines().all(|l| l.contains(" root/root ") && l.contains(" 2026-01-02 03:04 ")), "{contents}");
    for s in SERVICES {
        let line = contents.lines().find(|l| l.ends_with(&format!("./opt/KitchnTabs/resources/python-service/{s}")));
        assert!(line.is_some_and(|l| l.starts_with("-rwxr-xr-x")), "{s}: {line:?}");
    }
    for path in [
        "./opt/KitchnTabs/kitchntabs",
        "./opt/KitchnTabs/resources/app.asar",
        "./opt/KitchnTabs/resources/python-service/manifest.json",
        "./usr/share/applications/kitchntabs.desktop",
        "./usr/share/icons/hicolor/256x256/apps/kitchntabs.png",
        "./usr/share/doc/kitchntabs/copyright",
    ] {
        assert!(contents.lines().any(|l| l.ends_with(path)), "no {path} in:\n{contents}");
    }

    // -x gives back the unpacked app byte for byte (modes normalised as the .deb stores them).
    let x = scratch.join("extracted");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&x));
    let mut unpacked = tree(&app);
    unpacked.values_mut().for_each(|(mode, _)| *mode = if *mode & 0o111 != 0 { 0o755 } else { 0o644 });
    let mut extracted = tree(&x.join("opt/KitchnTabs"));
    extracted.values_mut().for_each(|(mode, _)| *mode = if *mode & 0o111 != 0 { 0o755 } else { 0o644 });
    assert_eq!(unpacked, extracted, "the .deb's /opt/KitchnTabs differs from the unpacked app");
    if arch == super::host_arch_name() {
        let kt = x.join("opt/KitchnTabs/resources/python-service/kt_service");
        let v = run(Command::new(&kt).arg("--version"));
        assert!(v.starts_with(&format!("kt_service {version}")), "{v}");
    }

    // lintian: nothing at warning or error level beyond the allow-list.
    let out = Command::new("lintian").args(["--no-tag-display-limit"]).arg(&deb).output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    let unexpected: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("E: ") || l.starts_with("W: "))
        .filter(|l| !LINTIAN_ALLOWED.iter().any(|(tag, _)| l.contains(&format!(": {tag}"))))
        .collect();
    assert!(unexpected.is_empty(), "lintian:\n{}\n(full report:\n{report})", unexpected.join("\n"));

    // release/<version>/: sha256sum -c passes, the manifest matches the files.
    run(Command::new("sha256sum").args(["-c", "SHA256SUMS"]).current_dir(&release));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(release.join("dist-manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["source_date_epoch"], COMMIT_EPOCH);
    assert_eq!(manifest["artifacts"][0]["sha256"], sha256(&deb).as_str());
    // The Electron packed, as the stand-in's version file says.
    assert_eq!(manifest["tools"][arch]["electron"], "43.8.11", "{}", manifest["tools"]);
    let services = manifest["services"][arch].as_array().unwrap();
    assert_eq!(services.len(), 3);
    for s in services {
        let bin = root.join("python-service/dist").join(arch).join(s["name"].as_str().unwrap());
        assert_eq!(s["sha256"], sha256(&bin).as_str(), "{s}");
    }

    // Two builds of one commit are byte-identical.
    let first = sha256(&deb);
    dist(&["--force", "deb"]);
    assert_eq!(sha256(&deb), first, "a second build of the same commit differs");

    // The shim electron-builder calls gives the same tree as dist's Rust step.
    let shim_out = "release-shim";
    let eb = root.join("electron-app/node_modules/.bin/electron-builder");
    let flag = format!("--{}", if arch == "x64" { "x64" } else { arch });
    run(Command::new(&eb)
        .args(["--config", "electron-builder.config.js", "--linux", "dir", &flag, "--publish", "never"])
        .arg(format!("-c.directories.output={shim_out}"))
        .current_dir(root.join("electron-app"))
        .env("KT_ELECTRON_DIST", scratch.join(format!("electron-{arch}")))
        .env("KT_XTASK", env!("CARGO_BIN_EXE_xtask"))
        .env_remove("KT_SKIP_AFTERPACK"));
    let shim_app: PathBuf = root.join("electron-app").join(shim_out).join(app.file_name().unwrap());
    assert_eq!(tree(&shim_app), tree(&app), "the afterPack shim and dist's afterpack step differ");
}
