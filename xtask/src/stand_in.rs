//! A stand-in for an unpacked Electron of an arch (electron-builder's `electronDist`), for the
//! tests and the benches: Electron itself cannot be downloaded on every machine, and has no
//! linux-armv7l build from 44 on. Real ELF of the target, made with the host's or Debian's cross
//! compiler: `electron` links `libffmpeg.so` beside it through `$ORIGIN` as the real one does,
//! `chrome-sandbox`, a `version` file. electron-builder, afterpack's arch check, verify and the
//! .deb see what they would see in a real Electron.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use crate::arch::Arch;

const FFMPEG_C: &str = "#include <string.h>\nsize_t kt_ffmpeg(const char *s) { return strlen(s); }\n";

const ELECTRON_C: &str = r#"#include <stdio.h>
#include <string.h>
#include <stddef.h>
size_t kt_ffmpeg(const char *s);
int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--version") == 0) { puts("v43.8.11"); return 0; }
    printf("stand-in Electron 43.8.11 %zu\n", kt_ffmpeg(argv[0]));
    return 0;
}
"#;

/// The C compiler that builds for `arch` on this host: the host's own gcc, else Debian's
/// cross compiler (`gcc-<triplet>` with `libc6-dev-<debarch>-cross`).
pub fn compiler(arch: Arch) -> Result<String> {
    if Arch::host() == Some(arch) {
        return Ok("gcc".into());
    }
    let triplet = arch.gnu_triplet().with_context(|| format!("no Linux C compiler targets {arch}"))?;
    Ok(format!("{triplet}-gcc"))
}

/// `<dir>/electron-<arch>`: the stand-in, built (again) from its two C files.
pub fn electron(dir: &Path, arch: Arch) -> Result<PathBuf> {
    let cc = compiler(arch)?;
    let out = dir.join(format!("electron-{arch}"));
    let src = dir.join(format!("stand-in-{arch}"));
    for d in [out.join("locales"), src.clone()] {
        std::fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    std::fs::write(src.join("ffmpeg.c"), FFMPEG_C)?;
    std::fs::write(src.join("electron.c"), ELECTRON_C)?;
    let run = |args: &[&str]| -> Result<()> {
        let o = Command::new(&cc)
            .args(args)
            .current_dir(&src)
            .output()
            .with_context(|| format!("cannot run {cc}: `cargo xtask test --setup` installs the cross compilers"))?;
        if !o.status.success() {
            bail!("{cc} {}: {}", args.join(" "), String::from_utf8_lossy(&o.stderr).trim());
        }
        Ok(())
    };
    let lib = out.join("libffmpeg.so");
    let exe = out.join("electron");
    // Stripped, PIE, linked with -z now and relro: as Electron ships (lintian checks these).
    run(&["-O2", "-s", "-shared", "-fPIC", "-Wl,-z,relro,-z,now", "-o", &lib.to_string_lossy(), "ffmpeg.c"])?;
    run(&[
        "-O2",
        "-s",
        "-fPIE",
        "-pie",
        "-Wl,-z,relro,-z,now",
        "-o",
        &exe.to_string_lossy(),
        "electron.c",
        &format!("-L{}", out.display()),
        "-lffmpeg",
        "-Wl,-rpath,$ORIGIN",
    ])?;
    std::fs::copy(&exe, out.join("chrome-sandbox"))?;
    std::fs::write(out.join("version"), "43.8.11")?;
    std::fs::write(out.join("locales/en-US.pak"), b"stand-in locale")?;
    Ok(out)
}
