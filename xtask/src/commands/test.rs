//! `cargo xtask test`: every test of the repository in one command, setting up what the
//! suites need and saying what it runs. The README and `.ci/run` call it.
//!
//! Each suite first probes what it uses from the host by using it (the cross compilers link a
//! program, espeak-ng speaks, lintian runs) and installs the Debian packages of whatever fails
//! (as root), so no suite depends on what an earlier one or an earlier run happened to install.

use anyhow::Result;
use clap::Args;

use crate::plan::Header;
use crate::{
    arch::Arch,
    config::Config,
    host::Host,
    layout::Layout,
    plan::{self, Action, Force, Plan, RunOptions, Step, StepKind},
    prereq::Prereq,
    process::Command,
    steps::services,
};

#[derive(Args)]
pub struct TestArgs {
    /// Run only these suites (repeatable). Default: all.
    #[arg(long = "only", value_enum)]
    only: Vec<TestSuite>,
    /// Only set up what the chosen suites need (probe and install the prerequisites, the venv,
    /// node_modules, dockerd, QEMU), run no test: CI's install step.
    #[arg(long)]
    setup: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TestSuite {
    /// pytest for the three services.
    Python,
    /// `cargo test --workspace`: unit tests, plan snapshots and the real native builds.
    Rust,
    /// `node --test` for the Electron main-process logic (no Electron binary needed).
    Node,
    /// End-to-end: real cross-builds for armv7l and arm64 under QEMU through Docker, run on
    /// their platform; a second engine endpoint. Installs and starts what it needs.
    E2e,
}

/// The end-to-end test binaries (`xtask/tests/<name>.rs`): one per arch, `deploy` to emulated
/// boards, and the upgrade through a signed repository in an arm64 rootfs.
const E2E_TESTS: [&str; 5] = ["cross_armv7l", "cross_arm64", "routed", "boards", "upgrade"];

/// tts_service's tests speak through a real espeak-ng.
fn python_needs() -> Vec<Prereq> {
    vec![Prereq::espeak_ng()]
}

/// verify's fixtures and the stand-in Electron are real binaries built with the host and
/// cross compilers (static ones too) and objcopy; the .debs are read by dpkg-deb, xz and
/// lintian; the native-build test runs `dist` (git, Node.js, tar) end to end.
fn rust_needs() -> Vec<Prereq> {
    vec![
        Prereq::host_cc(),
        Prereq::cross_for(Arch::Armv7l, true),
        Prereq::cross_cc("arm-linux-gnueabi", "armel", false),
        Prereq::cross_for(Arch::Arm64, true),
        Prereq::runs("objcopy", &["--version"], &["binutils"]),
        Prereq::runs("dpkg-deb", &["--version"], &["dpkg"]),
        Prereq::runs("xz", &["--version"], &["xz-utils"]),
        // The .deb writer's zstd members come from Debian's zstd tool.
        Prereq::runs("zstd", &["--version"], &["zstd"]),
        Prereq::runs("lintian", &["--version"], &["lintian"]),
        Prereq::runs("git", &["--version"], &["git"]),
        Prereq::runs("tar", &["--version"], &["tar"]),
        Prereq::runs("sha256sum", &["--version"], &["coreutils"]),
        // tests/apt_repo.rs checks the repository with Debian's own tools.
        Prereq::runs("apt-ftparchive", &["--version"], &["apt-utils"]),
        Prereq::runs("gpg", &["--version"], &["gpg"]),
        Prereq::runs("gpgv", &["--version"], &["gpgv"]),
        Prereq::runs("gpg-agent", &["--version"], &["gpg-agent"]),
        Prereq::node(),
    ]
}

/// The cross-builds run Docker (client and daemon) with QEMU, debootstrap their base images and
/// smoke-test rootfs, compile the stand-in Electron of each arch and repack an edited service.
fn e2e_needs() -> Vec<Prereq> {
    vec![
        Prereq::runs("dockerd", &["--version"], &["docker.io"]),
        Prereq::runs("docker", &["--version"], &["docker.io"]),
        Prereq::runs("qemu-arm-static", &["--version"], &["qemu-user-static"]),
        Prereq::runs("qemu-aarch64-static", &["--version"], &["qemu-user-static"]),
        Prereq::runs("debootstrap", &["--version"], &["debootstrap"]),
        Prereq::cross_for(Arch::Armv7l, false),
        Prereq::cross_for(Arch::Arm64, false),
        // A service edit is repacked: the cross objcopy swaps the archive section.
        Prereq::runs("arm-linux-gnueabihf-objcopy", &["--version"], &["binutils-arm-linux-gnueabihf"]),
        Prereq::runs("aarch64-linux-gnu-objcopy", &["--version"], &["binutils-aarch64-linux-gnu"]),
        Prereq::runs("dpkg-deb", &["--version"], &["dpkg"]),
        Prereq::runs("tar", &["--version"], &["tar"]),
        Prereq::node(),
        // `deploy` reaches the emulated boards with the system's ssh and scp.
        Prereq::runs("ssh", &["-V"], &["openssh-client"]),
        // The upgrade test signs its repository (and builds one with apt-ftparchive to serve).
        Prereq::runs("apt-ftparchive", &["--version"], &["apt-utils"]),
        Prereq::runs("gpg", &["--version"], &["gpg"]),
        Prereq::runs("gpg-agent", &["--version"], &["gpg-agent"]),
    ]
}

pub fn run(config: &Config, args: &TestArgs) -> Result<()> {
    let root = config.root.as_path();
    let host = Arch::host().ok_or_else(|| anyhow::anyhow!("tests run on a Linux or macOS host of a known arch"))?;
    let wants = |s: TestSuite| args.only.is_empty() || args.only.contains(&s);
    let tools = Host::probe(config);
    let layout = Layout::new(config, host, "default", &tools);

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // The venv serves pytest and the native-build test in the Rust suite.
    let mut steps = Vec::new();
    if wants(TestSuite::Python) || wants(TestSuite::Rust) {
        let mut venv = services::venv_step(config, &layout, &tools);
        // The interpreter must create venvs with pip (Debian keeps ensurepip in python3-venv).
        venv.actions
            .insert(0, Action::Prerequisites { needs: vec![Prereq::python_venv(&config.dist.python.interpreter)] });
        steps.push(venv);
    }
    if wants(TestSuite::Python) {
        let mut s = Step::new("pytest", "Python service tests (pytest)", StepKind::Preflight);
        s.always = true;
        s.actions.push(Action::Prerequisites { needs: python_needs() });
        s.actions.push(Action::Run(
            Command::new(layout.venv_python().to_string_lossy(), &config.python_dir()).args(["-m", "pytest", "-q"]),
        ));
        steps.push(s);
    }
    if wants(TestSuite::Node) {
        steps.push(crate::steps::electron::node_modules_step(config, crate::host::tool_version("node").as_deref())?);
        let mut s = Step::new("node-test", "Electron app tests (node --test)", StepKind::Preflight);
        s.always = true;
        s.actions.push(Action::Prerequisites { needs: vec![Prereq::node()] });
        s.actions.push(Action::Run(Command::new("node", &root.join("electron-app")).args(["--test", "test/"])));
        steps.push(s);
    }
    if wants(TestSuite::E2e) {
        let mut s = Step::new("e2e", "end-to-end set-up: Docker, QEMU, the test binaries", StepKind::Preflight);
        s.always = true;
        s.actions.push(Action::Prerequisites { needs: e2e_needs() });
        s.actions.push(Action::StartDockerd { log: root.join("target/xtask/dockerd.log") });
        s.actions.push(Action::RegisterBinfmt { arches: vec![Arch::Armv7l, Arch::Arm64] });
        // Every test binary the parallel steps below run is built here, so none of them
        // compiles (and waits on cargo's lock) while another one runs.
        let mut build = Command::new(cargo.clone(), root).args(["test", "--no-run"]);
        if wants(TestSuite::Rust) {
            build = build.args(["--workspace"]);
        } else {
            build = build.args(["-p", "xtask"]);
            for t in E2E_TESTS {
                build = build.args(["--test", t]);
            }
        }
        s.actions.push(Action::Run(build));
        steps.push(s);
    }
    if wants(TestSuite::Rust) {
        let mut s = Step::new("cargo-test", "Rust tests (cargo test --workspace)", StepKind::Preflight);
        s.always = true;
        // Beside the end-to-end binaries, not before them: those spend their first minutes
        // downloading Debian packages for debootstrap, time the Rust suite's own builds use.
        s.parallel = wants(TestSuite::E2e);
        s.actions.push(Action::Prerequisites { needs: rust_needs() });
        // The native-build integration test reuses the venv synced above instead of
        // downloading its own.
        s.actions.push(Action::Run(
            Command::new(cargo.clone(), root)
                .args(["test", "--workspace", "--no-fail-fast"])
                .env("KT_VENV", layout.venv.to_string_lossy()),
        ));
        steps.push(s);
    }
    if wants(TestSuite::E2e) {
        // One test binary per arch, at the same time: each spends most of its time in one
        // emulated process, so two keep both cores busy.
        for t in E2E_TESTS {
            let (id, title) = match t.strip_prefix("cross_") {
                Some(arch) => {
                    (arch, format!("end-to-end {arch}: cross-build, .deb, smoke-test (Docker BuildKit under QEMU)"))
                }
                None if t == "boards" => {
                    (t, format!("end-to-end {t}: deploy to emulated arm64 boards over ssh (QEMU)"))
                }
                None if t == "routed" => (t, format!("end-to-end {t}: arm64 built on a second engine endpoint (QEMU)")),
                None => (t, format!("end-to-end {t}: smoke-test --upgrade-from in an arm64 rootfs (QEMU)")),
            };
            let mut s = Step::new(format!("e2e-{id}"), title, StepKind::Preflight);
            s.always = true;
            s.parallel = true;
            s.after.push("e2e".into());
            s.actions.push(Action::Run(Command::new(cargo.clone(), root).args([
                "test",
                "-p",
                "xtask",
                "--test",
                t,
                "--",
                "--ignored",
                "--test-threads=1",
                "--nocapture",
            ])));
            steps.push(s);
        }
    }
    if args.setup {
        for s in &mut steps {
            s.actions.retain(|a| !(s.always && matches!(a, Action::Run(_))));
        }
        // A suite with nothing left to set up is not shown: "ok" would claim it ran.
        steps.retain(|s| !(s.always && s.actions.is_empty()));
    }
    let names: Vec<_> = steps.iter().filter(|s| s.always).map(|s| s.title.as_str()).collect();
    eprintln!("cargo xtask test: {}", names.join("; "));
    // The host arch: the venv step shares its stamp with native `dist` runs.
    let header = Header { arch: Some(host), ..Header::new("test", config) };
    let plan = Plan { header, root: root.to_path_buf(), steps };
    // Stream the suites' own output: their summary lines are the result.
    plan::run(&plan, &RunOptions { force: Force::None, verbose: true, keep_going: true })?;
    Ok(())
}
