//! `cargo xtask doctor`: what a person would otherwise check by hand before a build, as checks
//! that print the exact fix, and with `--fix` apply it where that is safe (registering QEMU
//! handlers, creating a buildx builder). It passes only what `dist` then accepts.

use anyhow::Result;

use crate::{
    arch::Arch,
    checkup::{Checkup, HostCheck},
    config::Config,
    engine::Engine,
    engine_checks::{Binfmt, engine_checks, free_bytes},
    host::Host,
};

/// Host tools and the CA bundle: the checks that do not depend on an arch. Each tool is
/// probed by running it, as dist's preflight does.
fn host_checks(config: &Config, tools: &Host) -> Vec<HostCheck> {
    let mut out = Vec::new();
    let cwd = std::env::current_dir().unwrap_or_else(|_| "/".into());
    // The client `auto` picks for container builds: not just the first `docker` on PATH.
    let docker = tools.docker.as_deref().unwrap_or(&config.dist.docker.executable);
    let found = crate::engine::Detected::probe(docker, &tools.path);
    out.push(match (&found.buildx, &found.builtin, &found.podman) {
        (Some(d), _, _) => HostCheck::ok("container client", format!("{d} (buildx)")),
        (None, Some(d), _) => HostCheck::ok("container client", format!("{d} (BuildKit built in)")),
        (None, None, Some(p)) => HostCheck::ok("container client", format!("{p} (podman)")),
        _ => HostCheck::warn(
            "container client",
            if found.notes.is_empty() { "no docker or podman on PATH".into() } else { found.notes.join("; ") },
            "needed only for cross targets: apt-get install docker.io (or podman)",
        ),
    });
    let probe = |check: &str, p: &crate::prereq::Prereq| match p.check() {
        Ok(()) => HostCheck::ok(check, p.describe()),
        Err(why) => HostCheck::fail(
            check,
            format!("{}: {why}", p.describe()),
            p.fix.clone().unwrap_or_else(|| format!("apt-get install {}", p.packages.join(" "))),
        ),
    };
    out.push(probe("python", &crate::prereq::Prereq::python_venv(&config.dist.python.interpreter)));
    out.push(probe("node", &crate::prereq::Prereq::node()));
    let find = |names: &[&str]| names.iter().find_map(|n| which::which_in(n, Some(&tools.path), &cwd).ok());
    out.push(match find(&["pnpm", "npm"]) {
        Some(p) => HostCheck::ok("tool pnpm or npm", p.display().to_string()),
        None => HostCheck::fail(
            "tool pnpm or npm",
            "none of pnpm, npm on PATH",
            "apt-get install npm (or `npm install -g pnpm`)",
        ),
    });
    out.push(match &tools.ca_bundle {
        Some(ca) => HostCheck::ok(
            "CA bundle",
            format!("{} is handed to container builds as BuildKit secret `cacert`", ca.display()),
        ),
        None => HostCheck::ok("CA bundle", "none on this host: builds use their image's CA roots"),
    });
    out
}

/// Where `dist` would take Electron for `arch` from: the electronDist (its binary verified
/// for the arch), electron-builder's cache, ELECTRON_MIRROR or github.com.
fn electron_check(config: &Config, arch: Arch, tools: &Host, env: crate::electron_source::Env) -> HostCheck {
    let check = format!("{arch}: electron");
    match crate::steps::electron::electron_dist(config, arch, tools.electron_dist.as_deref()) {
        Some(dist) => {
            let exe =
                dist.join(if arch == Arch::DarwinArm64 { "Electron.app/Contents/MacOS/Electron" } else { "electron" });
            match crate::verify::check_release(std::slice::from_ref(&exe), arch, None) {
                Ok(()) => HostCheck::ok(check, format!("electronDist {}", dist.display())),
                Err(e) => HostCheck::fail(
                    check,
                    format!("electronDist {}: {e:#}", dist.display()),
                    "point KT_ELECTRON_DIST (or dist.yaml electron.dist) at an unpacked Electron of this arch",
                ),
            }
        }
        None => {
            let version = match config.app.electron() {
                Ok(v) => v,
                Err(e) => {
                    return HostCheck::fail(
                        check,
                        format!("{e:#}"),
                        "pin an exact Electron in electron-app/package.json",
                    );
                }
            };
            let zip = match crate::electron_source::electron_zip(version, arch, env) {
                Ok(z) => z,
                Err(e) => {
                    return HostCheck::fail(
                        check,
                        format!("{e:#}"),
                        "pin an exact Electron in electron-app/package.json",
                    );
                }
            };
            match crate::electron_source::download(version, &zip, env) {
                Ok(crate::electron_source::Download::Available(from)) => {
                    HostCheck::ok(check, format!("download {from}"))
                }
                Ok(crate::electron_source::Download::Unchecked(note)) => {
                    HostCheck::warn(check, note, "set KT_ELECTRON_DIST to build without a download")
                }
                Err(e) => {
                    let text = format!("{e:#}");
                    let (found, fix) = text
                        .split_once(": point ")
                        .map_or((text.clone(), String::new()), |(a, b)| (a.to_string(), format!("point {b}")));
                    HostCheck::fail(check, found, fix)
                }
            }
        }
    }
}

/// Free space where native builds write (the checkout's target/), against `min_free_gb`.
fn native_disk_check(config: &Config, arch: Arch, min_free_gb: u64) -> HostCheck {
    let check = format!("{arch}: disk space");
    let dir = config.root.to_string_lossy().into_owned();
    match free_bytes(&dir) {
        Some(free) if free >= min_free_gb << 30 => HostCheck::ok(check, format!("{} GB free in {dir}", free >> 30)),
        Some(free) => HostCheck::fail(
            check,
            format!("{} GB free in {dir}, below {min_free_gb} GB", free >> 30),
            "free space (`cargo clean`, old release/ folders), or pass a lower --min-free-gb",
        ),
        None => HostCheck::warn(check, format!("cannot read free space of {dir}"), "check `df -h` yourself"),
    }
}

#[derive(clap::Args)]
pub struct DoctorArgs {
    /// Check these arches (default: every configured target this host can build).
    #[arg(long = "arch")]
    arches: Vec<Arch>,
    /// Repair what can be repaired safely (QEMU registration, the buildx builder).
    #[arg(long)]
    fix: bool,
    #[arg(long)]
    json: bool,
    /// Minimum free space for the engine's data root.
    #[arg(long, default_value_t = 20)]
    min_free_gb: u64,
}

/// Exit code 0 when every check passes, 1 when one fails.
pub fn run(config: &Config, args: &DoctorArgs) -> Result<i32> {
    let tools = Host::probe(config);
    let arches: Vec<Arch> = if args.arches.is_empty() {
        config.dist.targets.keys().copied().filter(|a| !a.native_only() || Arch::host() == Some(*a)).collect()
    } else {
        args.arches.clone()
    };
    let report =
        Checkup::new(findings(config, &tools, &arches, args, &Binfmt::default(), &crate::electron_source::process_env));
    let code = if report.ok { crate::exit::OK } else { crate::exit::FAILED };
    if args.json {
        crate::exit::print_json(&report, code)?;
    } else {
        print!("{}", report.render());
    }
    Ok(code)
}

/// Every check for `arches`: what `dist --arch A` would need of this host, so doctor passes
/// only what dist then accepts.
fn findings(
    config: &Config,
    tools: &Host,
    arches: &[Arch],
    args: &DoctorArgs,
    binfmt: &Binfmt,
    env: crate::electron_source::Env,
) -> Vec<HostCheck> {
    let mut findings = host_checks(config, tools);
    let host = Arch::host();
    for &arch in arches {
        let check = format!("{arch}: engine");
        match crate::engine::engine_for(config, arch, host, None, tools) {
            Ok(Engine::Native) if host == Some(arch) => {
                findings.push(HostCheck::ok(check, "native build on this host"));
                findings.push(native_disk_check(config, arch, args.min_free_gb));
            }
            Ok(Engine::Native) => findings.push(HostCheck::fail(
                check,
                format!(
                    "{arch} builds natively, and this host is {}",
                    host.map_or("not a known target".to_string(), |h| h.to_string())
                ),
                match arch.docker_platform() {
                    None => format!("{arch} builds only on its own host: run this on an Apple Silicon Mac (CI's macOS job does)"),
                    Some(_) => format!("set `engine: auto` (or docker, buildx, podman) for {arch} in dist.yaml, or build on a {arch} machine"),
                },
            )),
            Ok(engine) => {
                findings.push(HostCheck::ok(check, engine.to_string()));
                match config.base_image(arch) {
                    Ok(image) => findings.extend(engine_checks(
                        &config.root,
                        arch,
                        &engine,
                        &image,
                        binfmt,
                        args.fix,
                        args.min_free_gb,
                    )),
                    Err(e) => findings.push(HostCheck::fail(format!("{arch}: base image"), format!("{e:#}"), "fix dist.yaml targets")),
                }
            }
            Err(e) => match e.downcast_ref::<crate::engine::NoEngine>() {
                Some(none) => findings.push(HostCheck::fail(check, none.why.clone(), none.fix.clone())),
                None => findings.push(HostCheck::fail(check, format!("{e:#}"), format!("fix targets.{arch} in dist.yaml, or pass another --arch"))),
            },
        }
        findings.push(electron_check(config, arch, tools, env));
    }
    findings
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::checkup::Status;

    fn config() -> Config {
        Config::load(Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()).unwrap()
    }

    /// Host facts fixed for a test: engines only from the fake clients on `path`.
    fn tools(path: &[&str]) -> Host {
        let mut tools = Host::probe(&config());
        tools.path = crate::engine::tests::fake_path(path);
        tools.docker = None;
        tools.electron_dist = None;
        tools
    }

    fn args(min_free_gb: u64) -> DoctorArgs {
        DoctorArgs { arches: Vec::new(), fix: false, json: true, min_free_gb }
    }

    fn finding<'a>(all: &'a [HostCheck], check: &str) -> &'a HostCheck {
        all.iter().find(|f| f.check == check).unwrap_or_else(|| panic!("no {check} in {all:#?}"))
    }

    /// No electron download variables, and a cache that holds nothing.
    fn no_env(name: &str) -> Option<String> {
        (name == "ELECTRON_CACHE").then(|| "/nonexistent/kt-electron-cache".into())
    }

    #[test]
    fn the_container_client_reported_is_the_one_dist_uses() {
        // A Docker 28 without buildx comes first on PATH; dist uses the 20.10 client behind it.
        let f = host_checks(&config(), &tools(&["new-docker", "buildkit"]));
        let client = finding(&f, "container client");
        assert_eq!(client.status, Status::Ok);
        assert!(client.found.ends_with("fake-path/buildkit/docker (BuildKit built in)"), "{}", client.found);
        let f = host_checks(&config(), &tools(&["podman"]));
        assert!(finding(&f, "container client").found.ends_with("fake-path/podman/podman (podman)"));
    }

    #[test]
    fn a_native_only_target_fails_on_another_host_as_dist_refuses_it() {
        let config = config();
        if Arch::host() == Some(Arch::DarwinArm64) {
            return;
        }
        let f = findings(&config, &tools(&["buildkit"]), &[Arch::DarwinArm64], &args(0), &Binfmt::default(), &no_env);
        let engine = finding(&f, "darwin-arm64: engine");
        assert_eq!(engine.status, Status::Fail, "{engine:?}");
        assert!(engine.found.starts_with("darwin-arm64 builds natively, and this host is"), "{}", engine.found);
        assert!(engine.fix.as_deref().unwrap().contains("Apple Silicon Mac"), "{:?}", engine.fix);
    }

    #[test]
    fn no_engine_says_why_and_the_fix_itself_in_json() {
        let config = config();
        let f = findings(&config, &tools(&["new-docker"]), &[Arch::Armv7l], &args(0), &Binfmt::default(), &no_env);
        let engine = finding(&f, "armv7l: engine");
        assert_eq!(engine.status, Status::Fail);
        assert!(engine.found.contains("is Docker 28 without the buildx plugin"), "{}", engine.found);
        let json = serde_json::to_value(engine).unwrap();
        assert!(json["fix"].as_str().unwrap().starts_with("install Docker with the buildx plugin"), "{json}");
    }

    #[test]
    fn min_free_gb_applies_to_native_targets_too() {
        let Some(host) = Arch::host() else { return };
        let config = config();
        let f = findings(&config, &tools(&[]), &[host], &args(1 << 30), &Binfmt::default(), &no_env);
        let disk = finding(&f, &format!("{host}: disk space"));
        assert_eq!(disk.status, Status::Fail, "{disk:?}");
        assert!(disk.found.ends_with(&format!("below {} GB", 1u64 << 30)), "{}", disk.found);
        let f = findings(&config, &tools(&[]), &[host], &args(0), &Binfmt::default(), &no_env);
        assert_eq!(finding(&f, &format!("{host}: disk space")).status, Status::Ok);
    }

    #[test]
    fn electron_must_be_obtainable_and_the_mirror_variables_count() {
        let config = config();
        let tools = tools(&["buildkit"]);
        let f = electron_check(&config, Arch::Arm64, &tools, &no_env);
        // These machines reach no github.com: without a dist, cache or mirror, it fails.
        if crate::electron_source::download(config.app.electron().unwrap(), "x.zip", &no_env).is_err() {
            assert_eq!(f.status, Status::Fail, "{f:?}");
            assert!(f.fix.as_deref().unwrap().starts_with("point KT_ELECTRON_DIST"), "{f:?}");
        }
        // A file:// ELECTRON_MIRROR that holds the zip under v<version>/.
        let d = tempfile::tempdir().unwrap();
        let zip = crate::electron_source::electron_zip(config.app.electron().unwrap(), Arch::Arm64, &no_env).unwrap();
        let dir = d.path().join(format!("v{}", config.app.electron().unwrap()));
        std::fs::create_dir_all(&dir).unwrap();
        let mirror = format!("file://{}/", d.path().display());
        let env = |n: &str| match n {
            "ELECTRON_MIRROR" => Some(mirror.clone()),
            other => no_env(other),
        };
        let missing = electron_check(&config, Arch::Arm64, &tools, &env);
        assert_eq!(missing.status, Status::Fail, "{missing:?}");
        assert!(missing.found.contains(&format!("{}", dir.join(&zip).display())), "{missing:?}");
        std::fs::write(dir.join(&zip), b"zip").unwrap();
        let ok = electron_check(&config, Arch::Arm64, &tools, &env);
        assert_eq!(ok.status, Status::Ok, "{ok:?}");
        assert!(ok.found.contains("ELECTRON_MIRROR file"), "{ok:?}");
        // A cached zip counts too, under ELECTRON_CACHE.
        let cache = d.path().join("cache/abc");
        std::fs::create_dir_all(&cache).unwrap();
        std::fs::write(cache.join(&zip), b"zip").unwrap();
        let cache_root = d.path().join("cache").display().to_string();
        let env = |n: &str| (n == "ELECTRON_CACHE").then(|| cache_root.clone());
        assert_eq!(electron_check(&config, Arch::Arm64, &tools, &env).status, Status::Ok);
    }
}
