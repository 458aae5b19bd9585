//! Host prerequisites, each probed by using it: a C compiler must compile and link a program,
//! a tool must run. Finding a name on PATH proves nothing: `aarch64-linux-gnu-gcc` without
//! `libc6-dev-arm64-cross` is on PATH and cannot build hello-world.
//!
//! A failed probe names the Debian packages that provide what it needs. [`ensure`] probes
//! every prerequisite, installs the packages of all the failed ones at once (as root, with
//! apt-get), probes again, and fails with every probe that still fails and the apt line.

use std::{fmt::Write as _, path::Path};

use anyhow::{Result, bail};
use serde::Serialize;

use crate::process::Command;

/// One thing a suite or a build needs from the host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Prereq {
    pub probe: Probe,
    /// The Debian packages that provide it (installed when the probe fails).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<String>,
    /// How to get it where apt cannot (a Node.js newer than Debian's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "probe", rename_all = "snake_case")]
pub enum Probe {
    /// The command exits 0; when `stdout_starts` is set, its output must begin with it.
    Runs {
        command: Command,
        #[serde(skip_serializing_if = "Option::is_none")]
        stdout_starts: Option<String>,
    },
    /// `cc` compiles and links a C program that includes <stdio.h>, dynamically and, when
    /// `static_link`, statically (static linking needs the C library's archive).
    Links { cc: String, static_link: bool },
    /// `program --version` prints a version of at least `min` (`v20.18.1`, `1.2.3`).
    MinVersion { program: String, min: [u32; 3] },
}

/// The oldest Node.js that runs the build tools: the strictest `engines` bound in
/// electron-app/pnpm-lock.yaml (undici 7 wants >= 20.18.1).
pub const NODE_MIN: [u32; 3] = [20, 18, 1];

const HELLO_C: &str = "#include <stdio.h>\nint main(void) { puts(\"hello\"); return 0; }\n";

impl Prereq {
    /// `program ARGS...` runs, from Debian `packages`.
    pub fn runs(program: &str, args: &[&str], packages: &[&str]) -> Prereq {
        Prereq {
            probe: Probe::Runs { command: Command::new(program, Path::new("/")).args(args), stdout_starts: None },
            packages: packages.iter().map(|p| p.to_string()).collect(),
            fix: None,
        }
    }

    /// The host's C compiler links dynamically and statically (gcc, libc6-dev).
    pub fn host_cc() -> Prereq {
        Prereq {
            probe: Probe::Links { cc: "gcc".into(), static_link: true },
            packages: vec!["gcc".into(), "libc6-dev".into()],
            fix: None,
        }
    }

    /// A Debian cross compiler for `triplet` with the C library of `debian_arch`: the compiler
    /// package alone has no headers or libc (`bits/libc-header-start.h: No such file`).
    pub fn cross_cc(triplet: &str, debian_arch: &str, static_link: bool) -> Prereq {
        Prereq {
            probe: Probe::Links { cc: format!("{triplet}-gcc"), static_link },
            packages: vec![format!("gcc-{triplet}"), format!("libc6-dev-{debian_arch}-cross")],
            fix: None,
        }
    }

    /// The cross compiler of a target arch, from arch.rs's triplet and Debian arch.
    pub fn cross_for(arch: crate::arch::Arch, static_link: bool) -> Prereq {
        let (triplet, debian) = (arch.gnu_triplet(), arch.debian_arch());
        Prereq::cross_cc(triplet.expect("a Linux arch"), debian.expect("a Linux arch"), static_link)
    }

    /// espeak-ng speaks a word into a WAV file (what the speech service and its tests do).
    pub fn espeak_ng() -> Prereq {
        Prereq {
            probe: Probe::Runs {
                command: Command::new("espeak-ng", Path::new("/")).args(["--stdout", "kitchen"]),
                stdout_starts: Some("RIFF".into()),
            },
            packages: vec!["espeak-ng".into()],
            fix: None,
        }
    }

    /// Node.js at [`NODE_MIN`] or later. Debian bookworm's own nodejs is 18, so apt cannot fix it.
    pub fn node() -> Prereq {
        Prereq {
            probe: Probe::MinVersion { program: "node".into(), min: NODE_MIN },
            packages: Vec::new(),
            fix: Some(format!(
                "install Node.js {} or later (https://nodejs.org, NodeSource's nodejs package, or nvm)",
                version_text(NODE_MIN)
            )),
        }
    }

    /// The configured interpreter creates venvs with pip (Debian splits ensurepip into
    /// python3-venv; an interpreter of its own, such as pyenv's, apt cannot fix).
    pub fn python_venv(interpreter: &str) -> Prereq {
        let debian = interpreter == "python3" || interpreter == "/usr/bin/python3";
        Prereq {
            probe: Probe::Runs {
                command: Command::new(interpreter, Path::new("/")).args(["-c", "import ensurepip, venv"]),
                stdout_starts: None,
            },
            packages: if debian { vec!["python3".into(), "python3-venv".into()] } else { Vec::new() },
            fix: (!debian).then(|| {
                format!(
                    "make `{interpreter}` a Python 3 with venv and ensurepip, or set python.interpreter in dist.yaml"
                )
            }),
        }
    }

    /// The container engine's client runs. Not installed by the tool: which engine a machine
    /// should have is its owner's choice.
    pub fn container_client(program: &str) -> Prereq {
        Prereq {
            probe: Probe::Runs { command: Command::new(program, Path::new("/")).arg("--version"), stdout_starts: None },
            packages: Vec::new(),
            fix: Some(
                "install Docker (Debian: apt-get install docker.io) or podman, or point DOCKER / docker.executable at the client"
                    .into(),
            ),
        }
    }

    /// What the plan shows: the probe as it will run.
    pub fn describe(&self) -> String {
        let mut s = match &self.probe {
            Probe::Runs { command, stdout_starts: None } => format!("`{}` runs", command.shell_line_here()),
            Probe::Runs { command, stdout_starts: Some(p) } => {
                format!("`{}` prints {p}...", command.shell_line_here())
            }
            Probe::Links { cc, static_link } => {
                format!("{cc} links hello.c{}", if *static_link { " (dynamic and -static)" } else { "" })
            }
            Probe::MinVersion { program, min } => format!("`{program} --version` >= {}", version_text(*min)),
        };
        if !self.packages.is_empty() {
            let _ = write!(s, " (else apt-get install {})", self.packages.join(" "));
        }
        s
    }

    /// Use it: `Err` says what went wrong, in the tool's own words.
    pub fn check(&self) -> std::result::Result<(), String> {
        match &self.probe {
            Probe::Runs { command, stdout_starts } => {
                let out = command.to_std().output().map_err(|e| format!("cannot run {}: {e}", command.program))?;
                if !out.status.success() {
                    return Err(first_line(&out.stderr).unwrap_or_else(|| format!("exited with {}", out.status)));
                }
                match stdout_starts {
                    Some(p) if !out.stdout.starts_with(p.as_bytes()) => Err(format!(
                        "printed {:?}, not {p}...",
                        String::from_utf8_lossy(&out.stdout[..out.stdout.len().min(16)])
                    )),
                    _ => Ok(()),
                }
            }
            Probe::Links { cc, static_link } => links(cc, *static_link),
            Probe::MinVersion { program, min } => {
                let text = Command::new(program.clone(), Path::new("/")).arg("--version").capture()?;
                let found = parse_version(&text).ok_or_else(|| format!("`{program} --version` printed {text:?}"))?;
                if found < *min {
                    return Err(format!("{program} {} is older than {}", version_text(found), version_text(*min)));
                }
                Ok(())
            }
        }
    }
}

fn first_line(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    text.lines().find(|l| !l.trim().is_empty()).map(|l| l.trim().to_string())
}

/// Compile and link hello.c with `cc` in a scratch folder; the compiler's first error line.
fn links(cc: &str, static_link: bool) -> std::result::Result<(), String> {
    let dir = tempfile_dir().map_err(|e| format!("cannot make a scratch folder: {e}"))?;
    let src = dir.path.join("hello.c");
    std::fs::write(&src, HELLO_C).map_err(|e| format!("cannot write {}: {e}", src.display()))?;
    let mut modes = vec![("hello", &[][..])];
    if static_link {
        modes.push(("hello-static", &["-static"][..]));
    }
    for (out, flags) in modes {
        let o = std::process::Command::new(cc)
            .args(flags)
            .arg("-o")
            .arg(dir.path.join(out))
            .arg(&src)
            .current_dir(&dir.path)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {cc}: {e}"))?;
        if !o.status.success() {
            let why = String::from_utf8_lossy(&o.stderr);
            let why = why.lines().find(|l| l.contains("error")).or_else(|| why.lines().next()).unwrap_or("failed");
            let how = if flags.is_empty() { "" } else { " -static" };
            return Err(format!("`{cc}{how} hello.c`: {}", why.trim()));
        }
        let head = std::fs::read(dir.path.join(out)).unwrap_or_default();
        if !head.starts_with(b"\x7fELF") && !head.starts_with(&[0xcf, 0xfa, 0xed, 0xfe]) {
            return Err(format!("`{cc}` exited 0 but wrote no executable"));
        }
    }
    Ok(())
}

/// A scratch folder removed on drop (the xtask has no tempfile dependency outside tests).
struct ScratchDir {
    path: std::path::PathBuf,
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

fn tempfile_dir() -> std::io::Result<ScratchDir> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let path =
        std::env::temp_dir().join(format!("kt-probe-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
    let _ = std::fs::remove_dir_all(&path);
    std::fs::create_dir_all(&path)?;
    Ok(ScratchDir { path })
}

/// The first `N.N[.N]` in a tool's version line: `v20.18.1` → [20, 18, 1].
pub fn parse_version(text: &str) -> Option<[u32; 3]> {
    let start = text.find(|c: char| c.is_ascii_digit())?;
    let word: String = text[start..].chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    let mut parts = word.split('.').filter(|p| !p.is_empty()).map(|p| p.parse::<u32>());
    let major = parts.next()?.ok()?;
    let minor = parts.next()?.ok()?;
    let patch = parts.next().and_then(|p| p.ok()).unwrap_or(0);
    Some([major, minor, patch])
}

pub fn version_text(v: [u32; 3]) -> String {
    format!("{}.{}.{}", v[0], v[1], v[2])
}

/// Probe all; the failures, each with its reason.
pub fn failures(needs: &[Prereq]) -> Vec<(&Prereq, String)> {
    needs.iter().filter_map(|n| n.check().err().map(|why| (n, why))).collect()
}

fn render_failures(failed: &[(&Prereq, String)]) -> String {
    failed.iter().map(|(n, why)| format!("\n  - {}: {why}", n.describe())).collect()
}

/// Held around an install, for the runs of this tool on the machine.
const APT_LOCK: &str = "/run/lock/kitchntabs-apt.lock";

/// Probe every prerequisite; install the packages of those that fail (as root with apt-get),
/// probe again; fail with every probe that still fails, and the command that installs them.
pub fn ensure(needs: &[Prereq], run: &dyn Fn(&Command, &str) -> Result<()>) -> Result<()> {
    let failed = failures(needs);
    if failed.is_empty() {
        return Ok(());
    }
    let mut packages: Vec<&str> = Vec::new();
    for (n, _) in &failed {
        for p in &n.packages {
            if !packages.contains(&p.as_str()) {
                packages.push(p);
            }
        }
    }
    let apt_line = format!("apt-get install -y --no-install-recommends {}", packages.join(" "));
    let unfixable: Vec<String> = failed.iter().filter_map(|(n, _)| n.fix.clone()).collect();
    let can_install = crate::fsx::is_root() && Prereq::runs("apt-get", &["--version"], &[]).check().is_ok();
    if packages.is_empty() || !can_install {
        let mut fix = Vec::new();
        if !packages.is_empty() {
            fix.push(format!("sudo apt-get update && sudo {apt_line}"));
        }
        fix.extend(unfixable);
        bail!("{} prerequisite(s) failed:{}\nfix: {}", failed.len(), render_failures(&failed), fix.join("; "));
    }
    eprintln!(
        "    {} probe(s) failed:{}\n    installing: {}",
        failed.len(),
        render_failures(&failed),
        packages.join(" ")
    );
    // Suites set up at the same time (`cargo xtask test` runs the Rust suite beside the
    // end-to-end ones) may both install. apt-get waits for dpkg's lock when told to, but
    // `apt-get update` (apt 2.6) fails at once on the lists lock: one install at a time here.
    let _apt = crate::lock::TreeLock::wait(Path::new(APT_LOCK), "apt-get install")?;
    let here = Path::new("/");
    let lock = ["-o", "DPkg::Lock::Timeout=600"];
    run(&Command::new("apt-get", here).args(lock).args(["update", "-qq"]), "apt-get update")?;
    let install = Command::new("apt-get", here)
        .args(lock)
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&packages)
        .env("DEBIAN_FRONTEND", "noninteractive");
    run(&install, "apt-get install")?;
    let still = failures(needs);
    if !still.is_empty() {
        let mut msg =
            format!("{} prerequisite(s) still fail after `{apt_line}`:{}", still.len(), render_failures(&still));
        let fixes: Vec<String> = still.iter().filter_map(|(n, _)| n.fix.clone()).collect();
        if !fixes.is_empty() {
            let _ = write!(msg, "\nfix: {}", fixes.join("; "));
        }
        bail!(msg);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_from_tool_output() {
        assert_eq!(parse_version("v20.20.2\n"), Some([20, 20, 2]));
        assert_eq!(parse_version("Docker version 20.10.24+dfsg1, build 297e128"), Some([20, 10, 24]));
        assert_eq!(parse_version("git version 2.39"), Some([2, 39, 0]));
        assert_eq!(parse_version("no digits"), None);
        assert_eq!(parse_version("v20"), None);
        assert!(parse_version("v18.19.0").unwrap() < NODE_MIN);
        assert!(parse_version("v20.18.1").unwrap() >= NODE_MIN);
        assert!(parse_version("v22.0.0").unwrap() >= NODE_MIN);
    }

    /// NODE_MIN is the lockfile's fact: no package that runs on the host during `dist` or the
    /// tests may want a newer Node. The packages below declare Node >= 22.12 but never run
    /// here; a new one that does fails this test.
    #[test]
    fn node_min_satisfies_every_engines_bound_of_what_runs() {
        let never_run = [
            // Electron's own postinstall download: skipped (ELECTRON_SKIP_BINARY_DOWNLOAD=1) and
            // replaced by electronDist or electron-builder's download (@electron/get 3, Node >= 14).
            "electron",
            "@electron/get@5",
            "@electron-internal/extract-zip",
            // Native-module rebuilds: electron-builder.config.js sets npmRebuild: false.
            "@electron/rebuild",
            "node-abi",
        ];
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let lock = std::fs::read_to_string(root.join("electron-app/pnpm-lock.yaml")).unwrap();
        let config = std::fs::read_to_string(root.join("electron-app/electron-builder.config.js")).unwrap();
        assert!(config.contains("npmRebuild: false"), "the exceptions above assume npmRebuild: false");
        let mut strictest = ([0, 0, 0], String::new());
        let mut package = String::new();
        for line in lock.lines() {
            if line.starts_with("  ") && !line.starts_with("   ") && line.trim_end().ends_with(':') {
                package = line.trim().trim_end_matches(':').trim_matches('\'').to_string();
            }
            let Some(spec) = line.trim_start().strip_prefix("engines: {node:") else { continue };
            let (name, version) = package.rsplit_once('@').filter(|(n, _)| !n.is_empty()).unwrap_or((&package, ""));
            let skipped = never_run.iter().any(|n| match n.rsplit_once('@').filter(|(n, _)| !n.is_empty()) {
                Some((n, major)) => name == n && version.split('.').next() == Some(major),
                None => name == *n,
            });
            if skipped {
                continue;
            }
            // `'>=20.18.1'`, `^20.17.0 || >=22.9.0`: the lowest version each range admits.
            let spec = spec.trim_matches(|c| " '}\"".contains(c));
            let lowest = spec
                .split("||")
                .filter_map(|alt| {
                    parse_version(&format!("{}.0.0", alt.trim().trim_start_matches(['>', '=', '^', '~', ' '])))
                })
                .min();
            if let Some(v) = lowest
                && v > strictest.0
            {
                strictest = (v, package.clone());
            }
        }
        assert!(strictest.0 > [0, 0, 0], "no engines bounds found");
        assert!(NODE_MIN >= strictest.0, "{} needs Node {}", strictest.1, version_text(strictest.0));
        assert_eq!(NODE_MIN, strictest.0, "NODE_MIN is stricter than any package ({})", strictest.1);
    }

    #[test]
    fn a_probe_that_runs_passes_and_one_that_fails_says_why() {
        assert_eq!(Prereq::runs("sh", &["-c", "exit 0"], &[]).check(), Ok(()));
        assert_eq!(Prereq::runs("sh", &["-c", "echo broken >&2; exit 3"], &[]).check(), Err("broken".into()));
        let missing = Prereq::runs("kt-no-such-tool", &["--version"], &["kt-pkg"]).check().unwrap_err();
        assert!(missing.starts_with("cannot run kt-no-such-tool"), "{missing}");
        let mut p = Prereq::runs("sh", &["-c", "echo nope"], &[]);
        if let Probe::Runs { stdout_starts, .. } = &mut p.probe {
            *stdout_starts = Some("RIFF".into());
        }
        assert_eq!(p.check(), Err("printed \"nope\\n\", not RIFF...".into()));
    }

    #[test]
    fn a_compiler_without_its_c_library_fails_the_link_probe() {
        let d = tempfile::tempdir().unwrap();
        // A "compiler" that is on PATH but cannot find the headers, as gcc-aarch64-linux-gnu
        // without libc6-dev-arm64-cross.
        let cc = d.path().join("fake-cc");
        std::fs::write(
            &cc,
            "#!/bin/sh\necho 'stdio.h:27:10: fatal error: bits/libc-header-start.h: No such file or directory' >&2\nexit 1\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&cc, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = links(cc.to_str().unwrap(), false).unwrap_err();
        assert!(err.contains("bits/libc-header-start.h: No such file"), "{err}");
        // A compiler that says yes but writes nothing is not a compiler.
        std::fs::write(&cc, "#!/bin/sh\nexit 0\n").unwrap();
        assert!(links(cc.to_str().unwrap(), false).unwrap_err().contains("wrote no executable"));
    }

    #[test]
    fn the_host_compiler_links_both_ways() {
        // `cargo xtask test` installs gcc and libc6-dev before this suite runs.
        assert_eq!(Prereq::host_cc().check(), Ok(()));
    }

    #[test]
    fn ensure_without_root_or_apt_names_every_failure_and_one_fix() {
        let needs = [
            Prereq::runs("sh", &["-c", "exit 0"], &["dash"]),
            Prereq::runs("kt-no-such-a", &[], &["kt-a"]),
            Prereq::runs("kt-no-such-b", &[], &["kt-b", "kt-a"]),
            Prereq {
                probe: Probe::MinVersion { program: "sh".into(), min: [999, 0, 0] },
                packages: vec![],
                fix: Some("get a newer sh".into()),
            },
        ];
        if crate::fsx::is_root() {
            // As root the packages would be installed: check the install commands instead.
            let calls = std::cell::RefCell::new(Vec::new());
            let err = ensure(&needs, &|c, _| {
                calls.borrow_mut().push(c.args.join(" "));
                Ok(())
            })
            .unwrap_err()
            .to_string();
            // Both wait for another suite's apt lock rather than fail on it.
            assert_eq!(
                calls.into_inner(),
                [
                    "-o DPkg::Lock::Timeout=600 update -qq",
                    "-o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends kt-a kt-b"
                ]
            );
            assert!(
                err.starts_with(
                    "3 prerequisite(s) still fail after `apt-get install -y --no-install-recommends kt-a kt-b`"
                ),
                "{err}"
            );
            assert!(err.contains("fix: get a newer sh"), "{err}");
        } else {
            let err = ensure(&needs, &|_, _| panic!("nothing may run")).unwrap_err().to_string();
            assert!(err.starts_with("3 prerequisite(s) failed:"), "{err}");
            assert!(err.contains("sudo apt-get install -y --no-install-recommends kt-a kt-b; get a newer sh"), "{err}");
        }
        assert!(ensure(&needs[..1], &|_, _| panic!("nothing to install")).is_ok());
    }
}
