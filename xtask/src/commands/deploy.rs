//! `cargo xtask deploy --host pi@kitchen-1`: install the release's .deb on boards over ssh,
//! check it there, and put the previous version back when anything fails.
//!
//! Per board, in order (every command is built by [`Commands`], so `--dry-run` shows exactly
//! what a run executes):
//! 1. probe (read-only): `dpkg --print-architecture`, `id -u`, the installed version. A package
//!    of another arch is `refused` here, before anything on the board changes.
//! 2. rollback copy: deploy keeps the .debs it installs in `/var/cache/<name>/deploy/`. When
//!    the installed version has no copy there (installed by hand, or before deploy existed),
//!    the run goes on and the row says `no rollback copy`: a failure then leaves the board
//!    `failed`. With nothing installed before, rolling back means purging the package.
//! 3. upload: `scp` to `/tmp/<file>.part`, then copied under a temp name into the keep folder
//!    and renamed: a half-copied file never has the final name.
//! 4. `apt-get install -y --allow-downgrades <kept .deb>` (resolves Depends), non-interactive.
//! 5. each service's `--self-test` on the board, through /usr/bin/<name>'s real path, as
//!    `smoke-test` does in a rootfs.
//! 6. success: the keep folder is pruned to the new .deb and the previous one. Failure after
//!    the install began: the previous .deb is installed again and self-tested (`rolled back`),
//!    or the board is `failed` when that fails too.
//!
//! Privileged commands run through `sudo -n` unless the probe finds uid 0, so a password
//! prompt never waits; ssh always runs with BatchMode=yes, with the user's keys, agent and
//! ~/.ssh/config, plus dist.yaml's `deploy.ssh_options`.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::Mutex,
    time::Instant,
};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::{arch::Arch, config::Config, exit, process::Command};

#[derive(clap::Args)]
pub struct DeployArgs {
    /// A board: `user@host`, `user@host:port`, `host` (user and port from ~/.ssh/config), or
    /// `@group` (a group of dist.yaml's `deploy.hosts`). Repeatable.
    #[arg(long = "host", value_name = "USER@HOST[:PORT]|@GROUP", required = true)]
    hosts: Vec<String>,
    /// The .deb to install (default: release/<version>/<name>_<version>_<debarch>.deb for
    /// each board's arch).
    #[arg(long, value_name = "FILE", conflicts_with = "arch")]
    deb: Option<PathBuf>,
    /// Install the release's .deb of this arch (refused on boards of another arch).
    #[arg(long)]
    arch: Option<Arch>,
    /// Boards deployed at the same time (default 4).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    parallel: u16,
    /// The ssh port of boards given without one (default: ssh's own, or ~/.ssh/config's).
    #[arg(long)]
    port: Option<u16>,
    /// Print each board's ssh and scp commands instead of running them; contacts nothing.
    #[arg(long)]
    dry_run: bool,
    /// The plan (with --dry-run) or the summary rows as JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// One board as given on the command line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Board {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
}

impl Board {
    /// `user@host`, `user@host:port` or `host`; `port` applies when the entry has none. An
    /// IPv6 address stands bare (`pi@fe80::7`) or, with a port, in brackets (`pi@[::1]:2222`).
    pub fn parse(text: &str, port: Option<u16>) -> Result<Board> {
        let bad = |why: &str| {
            anyhow::anyhow!("host `{text}`: {why}; expected user@host or user@host:port (IPv6: user@[addr]:port)")
        };
        let (user, rest) = match text.split_once('@') {
            Some(("", _)) => return Err(bad("empty user before @")),
            Some((u, r)) => (Some(u.to_string()), r),
            None => (None, text),
        };
        let port_of = |p: &str| p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| bad("bad port"));
        let (host, own_port) = if let Some(inner) = rest.strip_prefix('[') {
            let (addr, after) = inner.split_once(']').ok_or_else(|| bad("no `]` after the IPv6 address"))?;
            if addr.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(bad("not an IPv6 address in brackets"));
            }
            match after {
                "" => (addr, None),
                p => (addr, Some(port_of(p.strip_prefix(':').ok_or_else(|| bad("bad port"))?)?)),
            }
        } else if rest.matches(':').count() > 1 {
            // Two colons or more: an IPv6 address, which takes no port unless in brackets.
            if rest.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(bad("not an IPv6 address (with a port, write it as [addr]:port)"));
            }
            (rest, None)
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h, Some(port_of(p)?)),
                None => (rest, None),
            }
        };
        if host.is_empty() || host.starts_with('-') || host.contains(|c: char| c.is_whitespace() || c == '@') {
            return Err(bad("bad host name"));
        }
        Ok(Board { user, host: host.to_string(), port: own_port.or(port) })
    }

    /// ssh's destination: `user@host` or `host` (ssh takes an IPv6 address bare).
    fn destination(&self) -> String {
        match &self.user {
            Some(u) => format!("{u}@{}", self.host),
            None => self.host.clone(),
        }
    }

    /// scp's `[user@]host:path`: an IPv6 address goes in brackets, or its colons would be
    /// taken for the one before the path.
    fn scp_target(&self, path: &str) -> String {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        match &self.user {
            Some(u) => format!("{u}@{host}:{path}"),
            None => format!("{host}:{path}"),
        }
    }
}

impl fmt::Display for Board {
    /// As it parses back: `user@host:port`, `user@[v6]:port`, `user@v6`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(u) = &self.user {
            write!(f, "{u}@")?;
        }
        match (self.port, self.host.contains(':')) {
            (Some(p), true) => write!(f, "[{}]:{p}", self.host),
            (Some(p), false) => write!(f, "{}:{p}", self.host),
            (None, _) => f.write_str(&self.host),
        }
    }
}

/// The boards of the `--host` flags, groups expanded, each once, in the order given.
pub fn boards(flags: &[String], config: &Config, port: Option<u16>) -> Result<Vec<Board>> {
    let groups = &config.dist.deploy.hosts;
    let mut out: Vec<Board> = Vec::new();
    for flag in flags {
        let entries: Vec<&String> = match flag.strip_prefix('@') {
            Some(group) => {
                let known = if groups.is_empty() {
                    "it has none".to_string()
                } else {
                    format!("it has {}", groups.keys().map(|g| format!("@{g}")).collect::<Vec<_>>().join(", "))
                };
                groups
                    .get(group)
                    .with_context(|| {
                        format!("unknown host group `@{group}`: add it to dist.yaml's deploy.hosts ({known})")
                    })?
                    .iter()
                    .collect()
            }
            None => vec![flag],
        };
        for e in entries {
            let b = Board::parse(e, port).with_context(|| match flag.strip_prefix('@') {
                Some(g) => format!("in dist.yaml's deploy.hosts.{g}"),
                None => "in --host".to_string(),
            })?;
            if !out.contains(&b) {
                out.push(b);
            }
        }
    }
    Ok(out)
}

/// What is installed: one .deb, or the release's .deb of each board's arch.
#[derive(Clone, Debug)]
pub enum Package {
    File {
        path: PathBuf,
        name: String,
        version: String,
        arch: String,
    },
    /// `release/<version>/<name>_<version>_<debarch>.deb`, debarch from the board.
    Release {
        dir: PathBuf,
        name: String,
        version: String,
    },
}

impl Package {
    /// `--deb FILE` (its control fields, read with the project's .deb reader), `--arch A`, or
    /// the release of each board's arch.
    pub fn choose(config: &Config, deb: Option<&Path>, arch: Option<Arch>) -> Result<Package> {
        let name = config.dist.product.name.clone();
        let dir = crate::layout::release_dir(config);
        let path = match (deb, arch) {
            (Some(d), _) => d.to_path_buf(),
            (None, Some(a)) => {
                let debarch = a.debian_arch().with_context(|| format!("{a} has no .deb to deploy"))?;
                let path = dir.join(format!("{name}_{}_{debarch}.deb", config.version));
                if !path.is_file() {
                    bail!("{} does not exist: build it with `cargo xtask dist --arch {a}`", path.display());
                }
                path
            }
            (None, None) => return Ok(Package::Release { dir, name, version: config.version.clone() }),
        };
        let fields =
            crate::verify::deb::control_fields(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let field = |k: &str| {
            fields.get(k).cloned().with_context(|| format!("{}: its control file has no {k} field", path.display()))
        };
        let (package, version, arch) = (field("Package")?, field("Version")?, field("Architecture")?);
        if package != name {
            bail!("{} is the package `{package}`, not dist.yaml's product.name `{name}`", path.display());
        }
        Ok(Package::File { path, name, version, arch })
    }

    fn name(&self) -> &str {
        match self {
            Package::File { name, .. } | Package::Release { name, .. } => name,
        }
    }

    /// The .deb for a board of Debian arch `board_arch`, or why it is refused there.
    pub fn for_arch(&self, board_arch: &str) -> std::result::Result<Deb, String> {
        match self {
            Package::File { path, name, version, arch } => {
                if arch != board_arch && arch != "all" {
                    return Err(format!(
                        "{} is for {arch}, the board is {board_arch}: pass the {board_arch} .deb (or --arch)",
                        path.display()
                    ));
                }
                Ok(Deb { path: path.clone(), name: name.clone(), version: version.clone(), arch: arch.clone() })
            }
            Package::Release { dir, name, version } => {
                let path = dir.join(format!("{name}_{version}_{board_arch}.deb"));
                if !path.is_file() {
                    let a = Arch::ALL.iter().find(|a| a.debian_arch() == Some(board_arch));
                    let how = a.map(|a| format!("cargo xtask dist --arch {a}")).unwrap_or("no target builds it".into());
                    return Err(format!("the board is {board_arch} and {} does not exist ({how})", path.display()));
                }
                Ok(Deb { path, name: name.clone(), version: version.clone(), arch: board_arch.to_string() })
            }
        }
    }
}

/// The package file one board gets.
#[derive(Clone, Debug, Serialize)]
pub struct Deb {
    pub path: PathBuf,
    pub name: String,
    pub version: String,
    pub arch: String,
}

/// Debian's file name of a package: `name_version_arch.deb`, an epoch's colon as `%3a`.
fn deb_file_name(name: &str, version: &str, arch: &str) -> String {
    format!("{name}_{}_{arch}.deb", version.replace(':', "%3a"))
}

/// What the probe found on a board; the placeholders of a dry run otherwise.
#[derive(Clone, Debug)]
pub struct Facts {
    pub arch: String,
    pub root: bool,
    pub before: Option<String>,
}

/// ssh and scp as every command of a deploy runs them.
#[derive(Clone, Debug)]
pub struct Ssh {
    options: Vec<String>,
}

impl Ssh {
    /// `control`: the run's private folder for shared connections (`ControlPath`): one ssh
    /// handshake per board instead of one per command. Where no master runs, ssh connects
    /// directly, so a failed master costs only speed.
    pub fn new(config: &Config, control: &str) -> Ssh {
        // BatchMode first: ssh keeps the first value of an option, so no configured value can
        // let a password prompt through. ConnectTimeout last: a default a user may override.
        let mut options = vec!["BatchMode=yes".to_string()];
        options.extend(config.dist.deploy.ssh_options.iter().cloned());
        options.push("ConnectTimeout=20".into());
        options.push(format!("ControlPath={control}/%C"));
        Ssh { options }
    }

    /// `ssh -M -N -f`: the shared connection, in the background once authenticated.
    fn master(&self, board: &Board) -> Command {
        let mut c = self.base("ssh").args(["-M", "-N", "-f"]);
        if let Some(p) = board.port {
            c = c.args(["-p", &p.to_string()]);
        }
        c.arg(board.destination())
    }

    /// `ssh -O exit`: end the shared connection.
    fn close(&self, board: &Board) -> Command {
        let mut c = self.base("ssh").args(["-O", "exit"]);
        if let Some(p) = board.port {
            c = c.args(["-p", &p.to_string()]);
        }
        c.arg(board.destination())
    }

    fn base(&self, program: &str) -> Command {
        let mut c = Command::new(program, Path::new("/"));
        for o in &self.options {
            c = c.args(["-o", o]);
        }
        c
    }

    /// `ssh [-p P] user@host 'remote shell line'`.
    fn ssh(&self, board: &Board, remote: &str) -> Command {
        let mut c = self.base("ssh");
        if let Some(p) = board.port {
            c = c.args(["-p", &p.to_string()]);
        }
        c.arg(board.destination()).arg(remote)
    }

    fn scp(&self, board: &Board, local: &Path, remote: &str) -> Command {
        let mut c = self.base("scp").arg("-q");
        if let Some(p) = board.port {
            c = c.args(["-P", &p.to_string()]);
        }
        c.arg(local).arg(board.scp_target(remote))
    }
}

/// A remote command's words as one shell line.
fn line<S: AsRef<str>>(words: &[S]) -> String {
    let cmd = Command::new(words[0].as_ref(), Path::new("/")).args(words[1..].iter().map(AsRef::as_ref));
    cmd.shell_line_here()
}

/// Every command of one board's deploy, from the package and the probe's facts.
#[derive(Clone, Debug, Serialize)]
pub struct Commands {
    pub connect: Command,
    pub probe: Command,
    pub has_copy: Option<Command>,
    pub upload: Command,
    pub place: Command,
    pub install: Command,
    pub installed: Command,
    pub self_tests: Vec<(String, Command)>,
    pub prune: Command,
    /// Put the previous version back: its kept .deb, or purge when nothing was installed.
    pub rollback: Command,
    pub close: Command,
}

/// The folder on the board that keeps the deployed .debs.
fn keep_dir(name: &str) -> String {
    format!("/var/cache/{name}/deploy")
}

impl Commands {
    pub fn new(ssh: &Ssh, board: &Board, deb: &Deb, services: &[String], facts: &Facts) -> Commands {
        let name = &deb.name;
        let keep = keep_dir(name);
        // Kept copies are named by the board's arch (also for an `all` package), so that the
        // next deploy finds the previous version's copy by the probe's answers alone.
        let file = deb_file_name(name, &deb.version, &facts.arch);
        let kept = format!("{keep}/{file}");
        let part = format!("/tmp/{file}.part");
        let sudo = |words: &[&str]| -> String {
            let mut all: Vec<&str> = if facts.root { Vec::new() } else { vec!["sudo", "-n"] };
            all.extend_from_slice(words);
            line(&all)
        };
        let hidden = format!("{keep}/.{file}.part");
        let place = [
            sudo(&["mkdir", "-p", &keep]),
            sudo(&["cp", &part, &hidden]),
            sudo(&["mv", &hidden, &kept]),
            line(&["rm", "-f", &part]),
        ]
        .join(" && ");
        let apt = |deb: &str| {
            sudo(&["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "--allow-downgrades", deb])
        };
        let prev = facts.before.as_ref().map(|v| format!("{keep}/{}", deb_file_name(name, v, &facts.arch)));
        let self_tests = services
            .iter()
            .map(|s| {
                // The app's real folder, as smoke-test finds it: /usr/bin/<name> is a link into it.
                let remote = format!(
                    "app=$(readlink -f {}) && \"${{app%/*}}\"/resources/python-service/{} --self-test",
                    line(&[format!("/usr/bin/{name}")]),
                    line(&[s.as_str()])
                );
                (s.clone(), ssh.ssh(board, &remote))
            })
            .collect();
        let mut prune = vec!["find".to_string(), keep.clone(), "-maxdepth".into(), "1".into(), "-name".into()];
        prune.extend(["*.deb".into(), "!".into(), "-name".into(), file.clone()]);
        if let Some(p) = &prev {
            prune.extend(["!".into(), "-name".into(), p.rsplit('/').next().unwrap_or(p).to_string()]);
        }
        prune.push("-delete".into());
        let prune: Vec<&str> = prune.iter().map(String::as_str).collect();
        Commands {
            connect: ssh.master(board),
            probe: ssh.ssh(
                board,
                &format!(
                    "dpkg --print-architecture && id -u && {{ {} 2>/dev/null || true; }}",
                    line(&["dpkg-query", "-W", "-f", "${db:Status-Status} ${Version}", name])
                ),
            ),
            has_copy: prev.as_ref().map(|p| ssh.ssh(board, &line(&["test", "-f", p]))),
            upload: ssh.scp(board, &deb.path, &part),
            place: ssh.ssh(board, &place),
            install: ssh.ssh(board, &apt(&kept)),
            installed: ssh.ssh(board, &line(&["dpkg-query", "-W", "-f", "${db:Status-Status} ${Version}", name])),
            self_tests,
            prune: ssh.ssh(board, &sudo(&prune)),
            rollback: match &prev {
                Some(p) => ssh.ssh(board, &apt(p)),
                None => ssh.ssh(
                    board,
                    &sudo(&["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "purge", "-y", name.as_str()]),
                ),
            },
            close: ssh.close(board),
        }
    }

    /// The steps a run takes, in order, as (id, what, command): what `--dry-run` shows.
    pub fn steps(&self) -> Vec<(String, &'static str, &Command)> {
        let mut out = vec![
            ("connect".to_string(), "one shared connection for the commands below", &self.connect),
            ("probe".to_string(), "arch, uid, installed version (read-only)", &self.probe),
        ];
        if let Some(c) = &self.has_copy {
            out.push(("rollback-copy".into(), "is the installed version's .deb kept on the board?", c));
        }
        out.push(("upload".into(), "copy the .deb to a temp name", &self.upload));
        out.push(("place".into(), "move it into the keep folder (temp name, then rename)", &self.place));
        out.push(("install".into(), "apt-get install (resolves Depends)", &self.install));
        out.push(("installed".into(), "the version dpkg now has", &self.installed));
        for (s, c) in &self.self_tests {
            out.push((format!("self-test-{s}"), "must print `self-test ok: <service>`", c));
        }
        out.push(("prune".into(), "keep the new .deb and the previous one", &self.prune));
        out.push(("rollback".into(), "only on failure after the install began", &self.rollback));
        out.push(("close".into(), "end the shared connection", &self.close));
        out
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Deployed,
    RolledBack,
    Failed,
    Refused,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Deployed => "deployed",
            Outcome::RolledBack => "rolled back",
            Outcome::Failed => "failed",
            Outcome::Refused => "refused",
        })
    }
}

/// One row of the summary.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub host: String,
    pub arch: Option<String>,
    pub before: Option<String>,
    pub after: Option<String>,
    pub result: Outcome,
    pub seconds: f64,
    /// Why it is not deployed, and notes such as `no rollback copy`.
    pub detail: Vec<String>,
}

pub fn run(config: &Config, args: &DeployArgs) -> Result<i32> {
    let boards = boards(&args.hosts, config, args.port)?;
    let package = Package::choose(config, args.deb.as_deref(), args.arch)?;
    let services: Vec<String> = config.dist.services.keys().cloned().collect();
    if args.dry_run {
        let ssh = Ssh::new(config, "<run-temp-dir>");
        return dry_run(&boards, &package, &ssh, &services, args.json).map(|()| exit::OK);
    }
    let control = ControlDir::new()?;
    let ssh = Ssh::new(config, &control.0.to_string_lossy());
    let queue = Mutex::new(boards.iter().enumerate());
    let rows = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..usize::from(args.parallel).min(boards.len()) {
            scope.spawn(|| {
                loop {
                    let Some((i, board)) = queue.lock().unwrap().next() else { break };
                    let row = deploy_one(board, &package, &ssh, &services);
                    eprintln!("{}: {}{}", row.host, row.result, note(&row));
                    rows.lock().unwrap().push((i, row));
                }
            });
        }
    });
    let mut rows = rows.into_inner().unwrap();
    rows.sort_by_key(|(i, _)| *i);
    let rows: Vec<Row> = rows.into_iter().map(|(_, r)| r).collect();
    let code = if rows.iter().all(|r| r.result == Outcome::Deployed) { exit::OK } else { exit::FAILED };
    if args.json {
        exit::print_json(serde_json::json!({ "command": "deploy", "hosts": rows }), code)?;
    } else {
        print!("{}", table(&rows));
    }
    Ok(code)
}

/// The run's private folder (0700) for ssh's connection sockets, removed at the end.
struct ControlDir(PathBuf);

impl ControlDir {
    fn new() -> Result<ControlDir> {
        use std::os::unix::fs::DirBuilderExt;
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        // In /tmp, short: a socket path has at most 107 bytes and %C adds 40.
        let dir = std::env::temp_dir().join(format!("kt-deploy-{}-{nanos}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("cannot create {} for ssh's shared connections", dir.display()))?;
        Ok(ControlDir(dir))
    }
}

impl Drop for ControlDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Run a command for its effect alone, every stream closed: `ssh -f` keeps the streams it
/// was given open in the background, which would hold a reader of its output forever.
fn quietly(cmd: &Command) -> bool {
    let mut c = cmd.to_std();
    c.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    c.status().is_ok_and(|s| s.success())
}

fn note(row: &Row) -> String {
    if row.detail.is_empty() { String::new() } else { format!(" ({})", row.detail.join("; ")) }
}

fn dry_run(boards: &[Board], package: &Package, ssh: &Ssh, services: &[String], json: bool) -> Result<()> {
    let mut hosts = Vec::new();
    for board in boards {
        // The probe's answers are not known without contacting the board: shown as
        // placeholders, sudo shown as for a non-root user.
        let deb = match package {
            Package::File { arch, .. } => package.for_arch(arch).map_err(anyhow::Error::msg)?,
            Package::Release { dir, name, version } => {
                let arch = "<board-arch>".to_string();
                Deb {
                    path: dir.join(deb_file_name(name, version, &arch)),
                    name: name.clone(),
                    version: version.clone(),
                    arch,
                }
            }
        };
        let arch = if deb.arch == "all" { "<board-arch>".to_string() } else { deb.arch.clone() };
        let facts = Facts { arch, root: false, before: Some("<version-before>".into()) };
        let cmds = Commands::new(ssh, board, &deb, services, &facts);
        let steps: Vec<serde_json::Value> = cmds
            .steps()
            .iter()
            .map(|(id, what, c)| serde_json::json!({ "id": id, "what": what, "command": c.shell_line_here() }))
            .collect();
        hosts.push(serde_json::json!({ "host": board.to_string(), "deb": deb, "steps": steps }));
    }
    if json {
        return exit::print_json(serde_json::json!({ "command": "deploy", "dry_run": true, "hosts": hosts }), exit::OK);
    }
    println!(
        "deploy {} to {} board(s); sudo -n is left out where the probe finds uid 0, and \
         <...> is what the probe reads on the board",
        package.name(),
        boards.len()
    );
    for h in &hosts {
        println!("\n{} ({})", h["host"].as_str().unwrap_or_default(), h["deb"]["path"].as_str().unwrap_or_default());
        for s in h["steps"].as_array().into_iter().flatten() {
            println!("  {}: {}", s["id"].as_str().unwrap_or_default(), s["what"].as_str().unwrap_or_default());
            println!("    {}", s["command"].as_str().unwrap_or_default());
        }
    }
    Ok(())
}

/// Run a remote command: its stdout, or its stderr's last lines as the error.
fn remote(cmd: &Command) -> std::result::Result<String, String> {
    match crate::process::exec(cmd) {
        Ok(o) if o.success => Ok(o.stdout),
        Ok(o) => {
            let text = format!("{}{}", o.stdout, o.stderr);
            let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            Err(lines[lines.len().saturating_sub(3)..].join(" / "))
        }
        Err(e) => Err(format!("{e:#}")),
    }
}

/// `installed 1.0.1` → Some("1.0.1"); anything else (not installed, config files only) → None.
fn installed_version(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("installed ").map(|v| v.trim().to_string()))
        .filter(|v| !v.is_empty())
}

/// The probe's answer: arch, uid, then the dpkg-query line (absent when not installed).
fn parse_probe(text: &str) -> std::result::Result<Facts, String> {
    let mut lines = text.lines();
    let arch = lines.next().map(str::trim).filter(|a| !a.is_empty()).ok_or("dpkg printed no architecture")?;
    let uid = lines.next().map(str::trim).ok_or("id -u printed nothing")?;
    let root = uid == "0";
    Ok(Facts { arch: arch.to_string(), root, before: installed_version(&lines.collect::<Vec<_>>().join("\n")) })
}

fn self_tests(cmds: &Commands) -> std::result::Result<(), String> {
    for (s, c) in &cmds.self_tests {
        let out = remote(c).map_err(|e| format!("{s} --self-test failed: {e}"))?;
        if !out.contains(&format!("self-test ok: {s}")) {
            return Err(format!("{s} --self-test printed {:?}", out.trim()));
        }
    }
    Ok(())
}

fn deploy_one(board: &Board, package: &Package, ssh: &Ssh, services: &[String]) -> Row {
    // connect, probe and close need no facts: built with placeholders.
    let placeholder =
        Deb { path: PathBuf::new(), name: package.name().to_string(), version: String::new(), arch: String::new() };
    let nothing = Facts { arch: String::new(), root: true, before: None };
    let first = Commands::new(ssh, board, &placeholder, services, &nothing);
    // A master that fails leaves every command to connect on its own, and the probe to
    // report why it cannot.
    quietly(&first.connect);
    let row = deploy_steps(board, package, ssh, services, &first.probe);
    quietly(&first.close);
    row
}

fn deploy_steps(board: &Board, package: &Package, ssh: &Ssh, services: &[String], probe: &Command) -> Row {
    let started = Instant::now();
    let mut row = Row {
        host: board.to_string(),
        arch: None,
        before: None,
        after: None,
        result: Outcome::Failed,
        seconds: 0.0,
        detail: Vec::new(),
    };
    let end = |mut row: Row, result: Outcome, why: Option<String>| {
        row.result = result;
        row.detail.extend(why);
        row.seconds = (started.elapsed().as_secs_f64() * 10.0).round() / 10.0;
        row
    };
    let facts = match remote(probe).and_then(|o| parse_probe(&o)) {
        Ok(f) => f,
        Err(e) => return end(row, Outcome::Failed, Some(format!("probe: {e}"))),
    };
    row.arch = Some(facts.arch.clone());
    row.before = facts.before.clone();
    row.after = facts.before.clone();
    let deb = match package.for_arch(&facts.arch) {
        Ok(d) => d,
        Err(e) => return end(row, Outcome::Refused, Some(e)),
    };
    let mut cmds = Commands::new(ssh, board, &deb, services, &facts);
    if let Some(c) = &cmds.has_copy
        && remote(c).is_err()
    {
        row.detail.push(format!("no rollback copy of {}", facts.before.as_deref().unwrap_or_default()));
        cmds.has_copy = None;
    }
    let can_roll_back = facts.before.is_none() || cmds.has_copy.is_some();
    // Progress on stderr: a board takes seconds to minutes, and several run at once.
    let say = |what: String| eprintln!("    {board}: {what}");
    say(format!("{} ({}) -> {}: upload", facts.before.as_deref().unwrap_or("nothing"), facts.arch, deb.version));
    if let Err(e) = remote(&cmds.upload) {
        return end(row, Outcome::Failed, Some(format!("upload (nothing installed): {e}")));
    }
    if let Err(e) = remote(&cmds.place) {
        return end(row, Outcome::Failed, Some(format!("place (nothing installed): {e}")));
    }
    say("apt-get install, self-tests".into());
    let attempt = remote(&cmds.install)
        .map_err(|e| format!("apt-get install: {e}"))
        .and_then(|_| {
            let now = remote(&cmds.installed).ok().as_deref().and_then(installed_version);
            if now.as_deref() == Some(deb.version.as_str()) {
                Ok(())
            } else {
                Err(format!(
                    "after apt-get install dpkg has {}, not {}",
                    now.as_deref().unwrap_or("nothing"),
                    deb.version
                ))
            }
        })
        .and_then(|()| self_tests(&cmds));
    let failure = match attempt {
        Ok(()) => {
            row.after = Some(deb.version.clone());
            if let Err(e) = remote(&cmds.prune) {
                row.detail.push(format!("could not prune {}: {e}", keep_dir(&deb.name)));
            }
            return end(row, Outcome::Deployed, None);
        }
        Err(e) => e,
    };
    say(format!("{failure}; rolling back"));
    row.detail.push(failure);
    let now = || remote(&cmds.installed).ok().as_deref().and_then(installed_version);
    if !can_roll_back {
        row.after = now();
        return end(row, Outcome::Failed, Some("cannot roll back: no kept .deb of the previous version".into()));
    }
    let rolled = remote(&cmds.rollback).map_err(|e| format!("rollback: {e}")).and_then(|_| {
        let back = now();
        if back != facts.before {
            return Err(format!("after the rollback dpkg has {}", back.as_deref().unwrap_or("nothing")));
        }
        if facts.before.is_some() { self_tests(&cmds).map_err(|e| format!("after the rollback: {e}")) } else { Ok(()) }
    });
    row.after = now();
    match rolled {
        Ok(()) => end(row, Outcome::RolledBack, None),
        Err(e) => end(row, Outcome::Failed, Some(e)),
    }
}

/// The summary: host, arch, version before and after, result, seconds.
pub fn table(rows: &[Row]) -> String {
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                r.host.clone(),
                dash(&r.arch),
                dash(&r.before),
                dash(&r.after),
                format!("{}{}", r.result, note(r)),
                format!("{:.1}", r.seconds),
            ]
        })
        .collect();
    let head = ["host", "arch", "before", "after", "result", "seconds"];
    let mut width = head.map(str::len);
    for c in &cells {
        for (w, v) in width.iter_mut().zip(c) {
            *w = (*w).max(v.len());
        }
    }
    let fmt_row = |c: &[String]| {
        let mut s = String::new();
        for (i, v) in c.iter().enumerate() {
            if i == 5 {
                s.push_str(&format!("{v:>w$}", w = width[i]));
            } else {
                s.push_str(&format!("{v:<w$}  ", w = width[i]));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = fmt_row(&head.map(String::from));
    for c in &cells {
        out.push_str(&fmt_row(c));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let mut c = Config::load(Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()).unwrap();
        c.dist.deploy.hosts.insert("kitchen".into(), vec!["pi@kitchen-1".into(), "pi@kitchen-2:2222".into()]);
        c.dist.deploy.ssh_options = vec!["IdentityFile=/k/id".into()];
        c
    }

    #[test]
    fn hosts_parse_with_and_without_user_and_port() {
        assert_eq!(
            Board::parse("pi@kitchen-1", None).unwrap(),
            Board { user: Some("pi".into()), host: "kitchen-1".into(), port: None }
        );
        assert_eq!(Board::parse("pi@10.0.0.7:2222", Some(22)).unwrap().port, Some(2222));
        assert_eq!(
            Board::parse("kitchen-1", Some(2200)).unwrap(),
            Board { user: None, host: "kitchen-1".into(), port: Some(2200) }
        );
        // IPv6: bare without a port, in brackets with one; each prints as it parses.
        for (text, host, port) in [
            ("pi@fe80::7", "fe80::7", None),
            ("pi@[::1]:2222", "::1", Some(2222)),
            ("[2001:db8::2]", "2001:db8::2", None),
        ] {
            let b = Board::parse(text, None).unwrap();
            assert_eq!((b.host.as_str(), b.port), (host, port), "{text}");
            assert_eq!(Board::parse(&b.to_string(), None).unwrap(), b, "{text} -> {b}");
        }
        let b = Board::parse("pi@[::1]:2222", None).unwrap();
        assert_eq!(b.destination(), "pi@::1");
        assert_eq!(b.scp_target("/tmp/x.deb"), "pi@[::1]:/tmp/x.deb");
        assert_eq!(b.to_string(), "pi@[::1]:2222");
        assert_eq!(Board::parse("fe80::7", Some(22)).unwrap().to_string(), "[fe80::7]:22");
        for bad in [
            "pi@",
            "@kitchen",
            "pi@k:0",
            "pi@k:x",
            "-oProxyCommand=x",
            "a b",
            "pi@[::1",
            "pi@[k]:22",
            "pi@[::1]x",
            "pi@a:b:c",
        ] {
            let err = Board::parse(bad, None).unwrap_err().to_string();
            assert!(err.contains(&format!("host `{bad}`")) && err.contains("user@host:port"), "{err}");
        }
    }

    #[test]
    fn groups_expand_once_and_an_unknown_group_names_deploy_hosts() {
        let c = config();
        let b = boards(&["@kitchen".into(), "pi@kitchen-1".into(), "root@bar:23".into()], &c, None).unwrap();
        let names: Vec<String> = b.iter().map(|b| b.to_string()).collect();
        assert_eq!(names, ["pi@kitchen-1", "pi@kitchen-2:2222", "root@bar:23"]);
        let err = format!("{:#}", boards(&["@bar".into()], &c, None).unwrap_err());
        assert!(
            err.contains("unknown host group `@bar`")
                && err.contains("dist.yaml's deploy.hosts")
                && err.contains("@kitchen"),
            "{err}"
        );
    }

    fn deb(arch: &str) -> Package {
        Package::File {
            path: "/r/kitchntabs_1.0.1_amd64.deb".into(),
            name: "kitchntabs".into(),
            version: "1.0.1".into(),
            arch: arch.into(),
        }
    }

    #[test]
    fn a_package_of_another_arch_is_refused() {
        let err = deb("amd64").for_arch("arm64").unwrap_err();
        assert!(err.contains("is for amd64, the board is arm64"), "{err}");
        assert_eq!(deb("all").for_arch("arm64").unwrap().arch, "all");
        let release = Package::Release {
            dir: "/nonexistent/release/1.0.1".into(),
            name: "kitchntabs".into(),
            version: "1.0.1".into(),
        };
        let err = release.for_arch("armhf").unwrap_err();
        assert!(err.contains("kitchntabs_1.0.1_armhf.deb does not exist") && err.contains("--arch armv7l"), "{err}");
    }

    #[test]
    fn the_plan_uses_batch_mode_sudo_for_non_root_and_the_kept_copies() {
        let c = config();
        let ssh = Ssh::new(&c, "/tmp/kt");
        let board = Board::parse("pi@kitchen-2:2222", None).unwrap();
        let d = deb("arm64").for_arch("arm64").unwrap();
        let services = vec!["kt_service".to_string()];
        let facts = Facts { arch: "arm64".into(), root: false, before: Some("1:1.0.0".into()) };
        let cmds = Commands::new(&ssh, &board, &d, &services, &facts);
        let probe = &cmds.probe;
        assert_eq!(
            probe.args[..11],
            [
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentityFile=/k/id",
                "-o",
                "ConnectTimeout=20",
                "-o",
                "ControlPath=/tmp/kt/%C",
                "-p",
                "2222",
                "pi@kitchen-2"
            ]
        );
        assert_eq!(
            probe.args[11],
            "dpkg --print-architecture && id -u && { dpkg-query -W -f '${db:Status-Status} ${Version}' kitchntabs 2>/dev/null || true; }"
        );
        // The dry run's line is what runs: a POSIX shell splits it back into the same words.
        for c in [&cmds.probe, &cmds.place, &cmds.self_tests[0].1, &cmds.prune] {
            let words = shlex::split(&c.shell_line_here()).unwrap();
            assert_eq!(words[0], c.program);
            assert_eq!(words[1..], c.args[..]);
        }
        assert_eq!(
            cmds.upload.args[8..],
            ["-q", "-P", "2222", "/r/kitchntabs_1.0.1_amd64.deb", "pi@kitchen-2:/tmp/kitchntabs_1.0.1_arm64.deb.part"]
        );
        let place = cmds.place.args.last().unwrap();
        assert_eq!(
            place,
            "sudo -n mkdir -p /var/cache/kitchntabs/deploy && sudo -n cp /tmp/kitchntabs_1.0.1_arm64.deb.part /var/cache/kitchntabs/deploy/.kitchntabs_1.0.1_arm64.deb.part && sudo -n mv /var/cache/kitchntabs/deploy/.kitchntabs_1.0.1_arm64.deb.part /var/cache/kitchntabs/deploy/kitchntabs_1.0.1_arm64.deb && rm -f /tmp/kitchntabs_1.0.1_arm64.deb.part"
        );
        assert_eq!(
            cmds.install.args.last().unwrap(),
            "sudo -n env 'DEBIAN_FRONTEND=noninteractive' apt-get install -y --allow-downgrades /var/cache/kitchntabs/deploy/kitchntabs_1.0.1_arm64.deb"
        );
        // The rollback installs the kept previous version (an epoch's colon as dpkg names files).
        assert_eq!(
            cmds.rollback.args.last().unwrap(),
            "sudo -n env 'DEBIAN_FRONTEND=noninteractive' apt-get install -y --allow-downgrades '/var/cache/kitchntabs/deploy/kitchntabs_1%3a1.0.0_arm64.deb'"
        );
        assert_eq!(
            cmds.has_copy.as_ref().unwrap().args.last().unwrap(),
            "test -f '/var/cache/kitchntabs/deploy/kitchntabs_1%3a1.0.0_arm64.deb'"
        );
        assert_eq!(
            cmds.prune.args.last().unwrap(),
            "sudo -n find /var/cache/kitchntabs/deploy -maxdepth 1 -name '*.deb' '!' -name kitchntabs_1.0.1_arm64.deb '!' -name 'kitchntabs_1%3a1.0.0_arm64.deb' -delete"
        );
        assert_eq!(
            cmds.self_tests[0].1.args.last().unwrap(),
            "app=$(readlink -f /usr/bin/kitchntabs) && \"${app%/*}\"/resources/python-service/kt_service --self-test"
        );
        let ids: Vec<String> = cmds.steps().into_iter().map(|(id, _, _)| id).collect();
        assert_eq!(
            ids,
            [
                "connect",
                "probe",
                "rollback-copy",
                "upload",
                "place",
                "install",
                "installed",
                "self-test-kt_service",
                "prune",
                "rollback",
                "close"
            ]
        );
        // The shared connection: a master in the background, ended with -O exit.
        assert_eq!(cmds.connect.args[8..], ["-M", "-N", "-f", "-p", "2222", "pi@kitchen-2"]);
        assert_eq!(cmds.close.args[8..], ["-O", "exit", "-p", "2222", "pi@kitchen-2"]);

        // As root: no sudo; nothing installed before: the rollback purges.
        let root = Facts { arch: "arm64".into(), root: true, before: None };
        let cmds = Commands::new(&ssh, &board, &d, &services, &root);
        assert!(cmds.has_copy.is_none());
        assert_eq!(
            cmds.rollback.args.last().unwrap(),
            "env 'DEBIAN_FRONTEND=noninteractive' apt-get purge -y kitchntabs"
        );
        assert!(!cmds.install.args.last().unwrap().contains("sudo"));
    }

    #[test]
    fn the_probe_reads_arch_uid_and_only_an_installed_version() {
        let f = parse_probe("arm64\n1000\ninstalled 1.0.1\n").unwrap();
        assert_eq!((f.arch.as_str(), f.root, f.before.as_deref()), ("arm64", false, Some("1.0.1")));
        let f = parse_probe("armhf\n0\n").unwrap();
        assert_eq!((f.root, f.before), (true, None));
        assert_eq!(parse_probe("arm64\n0\nconfig-files 1.0.0\n").unwrap().before, None);
        assert!(parse_probe("").is_err());
    }

    #[test]
    fn dist_yaml_deploy_takes_groups_and_options_and_refuses_unknown_keys() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let text = std::fs::read_to_string(root.join("dist.yaml")).unwrap();
        let with = |deploy: &str| Config::parse(root, &format!("{text}\ndeploy:\n{deploy}"));
        let c = with("  hosts:\n    kitchen: [pi@k1, pi@k2:2222]\n  ssh_options: [IdentityFile=/k]\n").unwrap();
        assert_eq!(c.dist.deploy.hosts["kitchen"], ["pi@k1", "pi@k2:2222"]);
        assert_eq!(c.dist.deploy.ssh_options, ["IdentityFile=/k"]);
        let err = format!("{:#}", with("  host: {}\n").unwrap_err());
        assert!(err.contains("unknown field `host`"), "{err}");
        let err = format!("{:#}", with("  hosts:\n    a: [x]\n    a: [y]\n").unwrap_err());
        assert!(err.contains("duplicate key `a`"), "{err}");
    }

    #[test]
    fn the_summary_has_one_row_per_host() {
        let row = |h: &str, r| Row {
            host: h.into(),
            arch: Some("arm64".into()),
            before: None,
            after: Some("1.0.1".into()),
            result: r,
            seconds: 12.34,
            detail: vec![],
        };
        let t = table(&[row("root@a:1", Outcome::Deployed), row("root@b:2", Outcome::RolledBack)]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(lines[0].starts_with("host") && lines[0].ends_with("seconds"), "{t}");
        assert!(lines[2].contains("rolled back") && lines[2].ends_with("12.3"), "{t}");
    }
}
