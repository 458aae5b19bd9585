//! An emulated arm64 board for `cargo xtask deploy`: a Debian bookworm arm64 rootfs (cached
//! debootstrap tarball) unpacked into a temp folder, /proc and /dev mounted, and the board's
//! own sshd (arm64, under QEMU through binfmt) chrooted into it on a free 127.0.0.1 port. The
//! client side is a throwaway ed25519 key and a known_hosts file holding the board's host key,
//! given to deploy through dist.yaml's `deploy.ssh_options` as a user would.
//!
//! Also the test packages: small kitchntabs-like .debs whose services are static C programs
//! that print `self-test ok: <name>` (linked against the board's libc) and log each run on the board, so a test can check over
//! ssh that the self-tests really ran there.
#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use xtask::{arch::Arch, config::Config, config::Suite, host::Host, plan};

/// Where each stand-in service appends `<service> <version> --self-test` on the board.
pub const SELF_TEST_LOG: &str = "/var/tmp/kt-self-tests.log";

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The board rootfs tarball: debootstrap bookworm arm64 minbase with openssh-server, cached
/// under the crate's rootfs cache (its lock and stamp), QEMU registered first.
pub fn rootfs_tar(config: &Config) -> PathBuf {
    let tools = Host::probe(config);
    let mut pre = plan::Step::new("preflight", "QEMU for arm64, debootstrap", plan::StepKind::Preflight);
    pre.always = true;
    pre.actions.push(plan::Action::RegisterBinfmt { arches: vec![Arch::Arm64] });
    xtask::steps::base_image::add_preflight(&mut pre);
    let (rootfs, tar) = xtask::steps::base_image::rootfs_step(
        &config.root,
        Arch::Arm64,
        Suite::Bookworm,
        &tools.cache,
        "bookworm-arm64-board",
        &["openssh-server".to_string()],
    )
    .unwrap();
    let header = plan::Header { arch: Some(Arch::Arm64), ..plan::Header::new("test", config) };
    let p = plan::Plan { header, root: config.root.clone(), steps: vec![pre, rootfs] };
    plan::run(&p, &plan::RunOptions { force: plan::Force::None, verbose: false, keep_going: false }).unwrap();
    tar
}

/// A free TCP port on 127.0.0.1 (the kernel's pick; released for sshd to take).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The client's side: a key pair and a known_hosts file, shared by every board of a test.
pub struct Client {
    pub dir: PathBuf,
    pub key: PathBuf,
    pub known_hosts: PathBuf,
}

impl Client {
    pub fn new(dir: &Path) -> Client {
        std::fs::create_dir_all(dir).unwrap();
        let key = dir.join("id_ed25519");
        run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", "kt-test", "-f"]).arg(&key));
        let known_hosts = dir.join("known_hosts");
        std::fs::write(&known_hosts, "").unwrap();
        Client { dir: dir.to_path_buf(), key, known_hosts }
    }

    /// The `-o` options a user would put in dist.yaml's `deploy.ssh_options`.
    pub fn ssh_options(&self) -> Vec<String> {
        vec![
            format!("IdentityFile={}", self.key.display()),
            "IdentitiesOnly=yes".into(),
            format!("UserKnownHostsFile={}", self.known_hosts.display()),
            "StrictHostKeyChecking=yes".into(),
        ]
    }
}

/// A running emulated board; everything it started and mounted goes on drop.
pub struct Board {
    pub port: u16,
    pub rootfs: PathBuf,
    sshd: Option<Child>,
    mounts: Vec<PathBuf>,
    ssh_options: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Board {
    pub fn start(tar: &Path, client: &Client) -> Board {
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir_all(&rootfs).unwrap();
        run(Command::new("tar").args(["--numeric-owner", "-xf"]).arg(tar).arg("-C").arg(&rootfs));
        let mut board = Board {
            port: free_port(),
            rootfs: rootfs.clone(),
            sshd: None,
            mounts: Vec::new(),
            ssh_options: client.ssh_options(),
            _dir: dir,
        };
        // Pushed before mounting: a failed mount is unmounted (a no-op) too.
        board.mounts.push(rootfs.join("proc"));
        run(Command::new("mount").args(["-t", "proc", "proc"]).arg(rootfs.join("proc")));
        board.mounts.push(rootfs.join("dev"));
        run(Command::new("mount").args(["--bind", "/dev"]).arg(rootfs.join("dev")));

        // The board's host key, and the client key allowed to log in as root.
        let host_key = rootfs.join("etc/ssh/kt_host_ed25519_key");
        let _ = std::fs::remove_file(&host_key);
        run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&host_key));
        let pubkey = std::fs::read_to_string(host_key.with_extension("pub")).unwrap();
        let mut known = std::fs::read_to_string(&client.known_hosts).unwrap();
        let key = pubkey.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
        known.push_str(&format!("[127.0.0.1]:{} {key}\n", board.port));
        std::fs::write(&client.known_hosts, known).unwrap();
        let ssh_dir = rootfs.join("root/.ssh");
        std::fs::create_dir_all(&ssh_dir).unwrap();
        std::fs::copy(client.key.with_extension("pub"), ssh_dir.join("authorized_keys")).unwrap();
        std::fs::create_dir_all(rootfs.join("run/sshd")).unwrap();
        std::fs::write(
            rootfs.join("etc/ssh/sshd_config.kt"),
            format!(
                "Port {}\nListenAddress 127.0.0.1\nHostKey /etc/ssh/kt_host_ed25519_key\nUsePAM no\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n\
                 AuthorizedKeysFile .ssh/authorized_keys\nPidFile /run/sshd.kt.pid\n\
                 Subsystem sftp /usr/lib/openssh/sftp-server\nStrictModes no\nLogLevel ERROR\n",
                board.port
            ),
        )
        .unwrap();
        // -D: sshd stays this child (killed on drop); -e: its log goes to the test's stderr.
        board.sshd = Some(
            Command::new("chroot")
                .arg(&rootfs)
                .args(["/usr/sbin/sshd", "-D", "-e", "-f", "/etc/ssh/sshd_config.kt"])
                .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
                .stdin(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let started = Instant::now();
        loop {
            let out = board.ssh_command("true").output().unwrap();
            if out.status.success() {
                break;
            }
            if let Some(status) = board.sshd.as_mut().unwrap().try_wait().unwrap() {
                panic!("the board's sshd exited ({status})");
            }
            assert!(
                started.elapsed() < Duration::from_secs(90),
                "the board's sshd does not answer: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        eprintln!("board on 127.0.0.1:{} up in {:.1} s", board.port, started.elapsed().as_secs_f64());
        board
    }

    /// How deploy names it: `root@127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("root@127.0.0.1:{}", self.port)
    }

    fn ssh_command(&self, remote: &str) -> Command {
        let mut c = Command::new("ssh");
        c.args(["-o", "BatchMode=yes"]);
        for o in &self.ssh_options {
            c.args(["-o", o]);
        }
        c.args(["-p", &self.port.to_string(), "root@127.0.0.1", remote]);
        c.stdin(Stdio::null());
        c
    }

    /// Run `remote` on the board with the system's own ssh: its stdout, or a panic.
    pub fn ssh(&self, remote: &str) -> String {
        run(&mut self.ssh_command(remote))
    }

    /// `dpkg-query` on the board: the installed version of `package`, if it is installed.
    pub fn installed(&self, package: &str) -> Option<String> {
        let out =
            self.ssh(&format!("dpkg-query -W -f '${{db:Status-Status}} ${{Version}}' {package} 2>/dev/null || true"));
        out.trim().strip_prefix("installed ").map(str::to_string)
    }
}

impl Drop for Board {
    fn drop(&mut self) {
        if let Some(mut sshd) = self.sshd.take() {
            let _ = sshd.kill();
            let _ = sshd.wait();
        }
        // Whatever still runs inside the rootfs (a session sshd forked): its root is the rootfs.
        if let Ok(procs) = std::fs::read_dir("/proc") {
            for p in procs.flatten() {
                if std::fs::read_link(p.path().join("root")).is_ok_and(|r| r == self.rootfs)
                    && let Ok(pid) = p.file_name().to_string_lossy().parse::<i32>()
                {
                    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
                }
            }
        }
        for m in self.mounts.iter().rev() {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
    }
}

/// The stand-in service: prints `self-test ok: <its file name>` on --self-test and logs the
/// run; with BROKEN, print_service's self-test fails.
const SERVICE_C: &str = r#"#include <stdio.h>
#include <string.h>
int main(int argc, char **argv) {
    const char *name = strrchr(argv[0], '/');
    name = name ? name + 1 : argv[0];
    if (argc > 1 && strcmp(argv[1], "--self-test") == 0) {
        FILE *log = fopen("/var/tmp/kt-self-tests.log", "a");
        if (log) { fprintf(log, "%s %s --self-test\n", name, VERSION); fclose(log); }
#ifdef BROKEN
        if (strcmp(name, "print_service") == 0) { fprintf(stderr, "printer driver missing\n"); return 1; }
#endif
        printf("self-test ok: %s\n", name);
        return 0;
    }
    printf("%s %s\n", name, VERSION);
    return 0;
}
"#;

/// A kitchntabs-like .deb: /opt/KitchnTabs/kitchntabs, /usr/bin/kitchntabs → it, and the three
/// services under resources/python-service/, built for `debarch` (arm64 or amd64).
pub fn test_deb(dir: &Path, version: &str, debarch: &str, broken: bool) -> PathBuf {
    let cc = match debarch {
        "arm64" => "aarch64-linux-gnu-gcc",
        "amd64" => "gcc",
        other => panic!("no compiler for {other}"),
    };
    let tree = dir.join(format!("tree-{version}-{debarch}"));
    let app = tree.join("opt/KitchnTabs");
    let services = app.join("resources/python-service");
    std::fs::create_dir_all(&services).unwrap();
    std::fs::create_dir_all(tree.join("usr/bin")).unwrap();
    std::fs::create_dir_all(tree.join("DEBIAN")).unwrap();
    let src = dir.join("service.c");
    std::fs::write(&src, SERVICE_C).unwrap();
    let bin = dir.join(format!("service-{version}-{debarch}"));
    let mut cmd = Command::new(cc);
    cmd.args(["-O2", "-s", &format!("-DVERSION=\"{version}\"")]);
    if broken {
        cmd.arg("-DBROKEN");
    }
    run(cmd.arg("-o").arg(&bin).arg(&src));
    for s in super::SERVICES {
        std::fs::copy(&bin, services.join(s)).unwrap();
    }
    std::fs::copy(&bin, app.join("kitchntabs")).unwrap();
    std::os::unix::fs::symlink("/opt/KitchnTabs/kitchntabs", tree.join("usr/bin/kitchntabs")).unwrap();
    std::fs::write(
        tree.join("DEBIAN/control"),
        format!(
            "Package: kitchntabs\nVersion: {version}\nArchitecture: {debarch}\nMaintainer: KitchnTabs <dev@kitchntabs.com>\n\
             Section: utils\nPriority: optional\nDescription: KitchnTabs stand-in for deploy tests\n"
        ),
    )
    .unwrap();
    let deb = dir.join(format!("kitchntabs_{version}_{debarch}.deb"));
    run(Command::new("dpkg-deb").args(["--root-owner-group", "-Zgzip", "--build"]).arg(&tree).arg(&deb));
    deb
}
