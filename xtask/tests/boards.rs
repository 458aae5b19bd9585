//! End-to-end: `cargo xtask deploy` to emulated arm64 boards (a Debian bookworm rootfs whose
//! own sshd runs under QEMU on 127.0.0.1, see `common::board`). The board's state is checked
//! with the system's ssh and dpkg-query there, not from deploy's report alone. Ignored by a
//! plain `cargo test`: `cargo xtask test --only e2e` sets up QEMU and runs them; the dry-run
//! test contacts nothing and always runs.

mod common;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use common::board::{Board, Client, SELF_TEST_LOG, rootfs_tar, test_deb};
use serde_json::Value;

/// A scratch checkout whose dist.yaml has a `deploy:` section: `group` names `hosts`, and the
/// client's key and known_hosts come in through `ssh_options`.
fn checkout(dir: &Path, client: Option<&Client>, group: &[String]) -> PathBuf {
    let root = dir.join("repo");
    common::copy_repo(&root);
    let options = client.map(|c| c.ssh_options()).unwrap_or_default();
    let quote = |v: &[String]| v.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", ");
    let mut yaml = std::fs::read_to_string(root.join("dist.yaml")).unwrap();
    yaml.push_str(&format!(
        "\ndeploy:\n  hosts:\n    kitchen: [{}]\n  ssh_options: [{}]\n",
        quote(group),
        quote(&options)
    ));
    std::fs::write(root.join("dist.yaml"), yaml).unwrap();
    root
}

/// `cargo xtask --root ROOT deploy ARGS --json`: exit code, the JSON document, stderr.
fn deploy(root: &Path, args: &[&str]) -> (i32, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("--root")
        .arg(root)
        .arg("deploy")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("no JSON from deploy {args:?}: {e}\n{stderr}"));
    (out.status.code().unwrap_or(-1), json, stderr)
}

fn rows(json: &Value) -> &Vec<Value> {
    json["hosts"].as_array().unwrap_or_else(|| panic!("no hosts in {json}"))
}

/// What a refused or failed deploy must not change: dpkg's log and the keep folder.
fn board_state(board: &Board) -> String {
    board.ssh("cat /var/log/dpkg.log; ls -la /var/cache/kitchntabs/deploy /tmp")
}

fn self_test_runs(board: &Board) -> Vec<String> {
    board.ssh(&format!("cat {SELF_TEST_LOG} 2>/dev/null || true")).lines().map(str::to_string).collect()
}

/// One emulated board with its client key, a checkout whose ssh options reach it, and a
/// folder for test packages. The client must outlive the board's sessions.
fn one_board(dir: &Path) -> (Client, PathBuf, Board, PathBuf) {
    let client = Client::new(&dir.join("ssh"));
    let root = checkout(dir, Some(&client), &[]);
    let config = xtask::config::Config::load(&root).unwrap();
    let board = Board::start(&rootfs_tar(&config), &client);
    let debs = dir.join("debs");
    std::fs::create_dir_all(&debs).unwrap();
    (client, root, board, debs)
}

#[test]
#[ignore = "end-to-end: `cargo xtask test --only e2e` sets up QEMU, then runs it"]
fn one_board_upgrades_rolls_back_a_broken_release_and_refuses_another_arch() {
    let tmp = tempfile::tempdir().unwrap();
    let (_client, root, board, debs) = one_board(tmp.path());
    let v100 = test_deb(&debs, "1.0.0", "arm64", false);
    let v101 = test_deb(&debs, "1.0.1", "arm64", false);
    let v102 = test_deb(&debs, "1.0.2", "arm64", true);
    let amd64 = test_deb(&debs, "1.0.1", "amd64", false);
    let host = board.host();

    let (code, json, err) = deploy(&root, &["--host", &host, "--deb", v100.to_str().unwrap()]);
    assert_eq!(code, 0, "{json}\n{err}");
    assert_eq!(rows(&json)[0]["result"], "deployed", "{json}");
    assert_eq!(board.installed("kitchntabs").as_deref(), Some("1.0.0"));

    let started = Instant::now();
    let (code, json, err) = deploy(&root, &["--host", &host, "--deb", v101.to_str().unwrap()]);
    let one_board = started.elapsed().as_secs_f64();
    assert_eq!(code, 0, "{json}\n{err}");
    let row = &rows(&json)[0];
    assert_eq!((row["result"].as_str(), row["arch"].as_str()), (Some("deployed"), Some("arm64")), "{json}");
    assert_eq!((row["before"].as_str(), row["after"].as_str()), (Some("1.0.0"), Some("1.0.1")), "{json}");
    assert_eq!(board.installed("kitchntabs").as_deref(), Some("1.0.1"));
    let runs = self_test_runs(&board);
    for s in common::SERVICES {
        assert!(runs.contains(&format!("{s} 1.0.1 --self-test")), "{s} 1.0.1 did not self-test on the board: {runs:?}");
    }
    // The keep folder holds the new .deb and the previous one, nothing half-copied.
    let kept = board.ssh("ls -A /var/cache/kitchntabs/deploy");
    assert_eq!(
        kept.split_whitespace().collect::<Vec<_>>(),
        ["kitchntabs_1.0.0_arm64.deb", "kitchntabs_1.0.1_arm64.deb"]
    );
    eprintln!("deploy to one board (upgrade 1.0.0 -> 1.0.1): {one_board:.1} s, board row {} s", row["seconds"]);

    // print_service's self-test fails in 1.0.2: the board goes back to 1.0.1, self-tested.
    let (code, json, err) = deploy(&root, &["--host", &host, "--deb", v102.to_str().unwrap()]);
    assert_eq!(code, 1, "{json}\n{err}");
    let row = &rows(&json)[0];
    assert_eq!(row["result"], "rolled_back", "{json}");
    assert_eq!((row["before"].as_str(), row["after"].as_str()), (Some("1.0.1"), Some("1.0.1")), "{json}");
    assert!(row["detail"].to_string().contains("print_service --self-test failed"), "{json}");
    assert_eq!(board.installed("kitchntabs").as_deref(), Some("1.0.1"));
    let runs = self_test_runs(&board);
    let broken = runs.iter().position(|r| r == "print_service 1.0.2 --self-test").expect("1.0.2 self-tested");
    assert!(
        runs[broken..].contains(&"print_service 1.0.1 --self-test".to_string()),
        "rollback not self-tested: {runs:?}"
    );

    // An amd64 package on the arm64 board: refused before anything on the board changes.
    let before = board_state(&board);
    let (code, json, err) = deploy(&root, &["--host", &host, "--deb", amd64.to_str().unwrap()]);
    assert_eq!(code, 1, "{json}\n{err}");
    let row = &rows(&json)[0];
    assert_eq!(row["result"], "refused", "{json}");
    assert!(row["detail"].to_string().contains("is for amd64, the board is arm64"), "{json}");
    assert_eq!(board_state(&board), before, "a refused deploy changed the board");
    assert_eq!(board.installed("kitchntabs").as_deref(), Some("1.0.1"));
}

#[test]
#[ignore = "end-to-end: `cargo xtask test --only e2e` sets up QEMU, then runs it"]
fn two_boards_of_a_group_deploy_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let client = Client::new(&tmp.path().join("ssh"));
    let scratch = tempfile::tempdir().unwrap();
    let config = xtask::config::Config::load(&checkout(scratch.path(), None, &[])).unwrap();
    let tar = rootfs_tar(&config);
    let (a, b) = (Board::start(&tar, &client), Board::start(&tar, &client));
    let root = checkout(tmp.path(), Some(&client), &[a.host(), b.host()]);
    let debs = tmp.path().join("debs");
    std::fs::create_dir_all(&debs).unwrap();
    let v100 = test_deb(&debs, "1.0.0", "arm64", false);
    let v101 = test_deb(&debs, "1.0.1", "arm64", false);

    // Board a starts on 1.0.0, board b on nothing.
    let (code, json, err) = deploy(&root, &["--host", &a.host(), "--deb", v100.to_str().unwrap()]);
    assert_eq!(code, 0, "{json}\n{err}");
    let started = Instant::now();
    let (code, json, err) = deploy(&root, &["--host", "@kitchen", "--parallel", "2", "--deb", v101.to_str().unwrap()]);
    let two_boards = started.elapsed().as_secs_f64();
    assert_eq!(code, 0, "{json}\n{err}");
    let rows = rows(&json);
    assert_eq!(rows.len(), 2, "{json}");
    assert_eq!(rows[0]["host"].as_str(), Some(a.host().as_str()));
    assert_eq!(rows[1]["host"].as_str(), Some(b.host().as_str()));
    assert_eq!(rows[0]["before"].as_str(), Some("1.0.0"), "{json}");
    assert!(rows[1]["before"].is_null(), "{json}");
    for (board, row) in [(&a, &rows[0]), (&b, &rows[1])] {
        assert_eq!(row["result"], "deployed", "{json}");
        assert_eq!(board.installed("kitchntabs").as_deref(), Some("1.0.1"), "{}", board.host());
        assert!(self_test_runs(board).contains(&"tts_service 1.0.1 --self-test".to_string()));
    }
    // Each board is its own rootfs: a's keep folder has its 1.0.0, b's only 1.0.1.
    assert_eq!(b.ssh("ls -A /var/cache/kitchntabs/deploy").trim(), "kitchntabs_1.0.1_arm64.deb");
    assert_eq!(a.ssh("ls -A /var/cache/kitchntabs/deploy").split_whitespace().count(), 2);
    eprintln!(
        "deploy to two boards at once (--parallel 2): {two_boards:.1} s (rows {} s and {} s)",
        rows[0]["seconds"], rows[1]["seconds"]
    );
}

/// The two rollbacks that have no previous .deb to install: a board that had nothing
/// installed is purged back to nothing; a board whose kept copy is gone is left `failed` on
/// the broken version, and the row says why.
#[test]
#[ignore = "end-to-end: `cargo xtask test --only e2e` sets up QEMU, then runs it"]
fn a_fresh_board_is_purged_and_a_board_without_its_copy_is_failed() {
    let tmp = tempfile::tempdir().unwrap();
    let (_client, root, board, debs) = one_board(tmp.path());
    let v100 = test_deb(&debs, "1.0.0", "arm64", false);
    let v102 = test_deb(&debs, "1.0.2", "arm64", true);
    let host = board.host();

    let (code, json, err) = deploy(&root, &["--host", &host, "--deb", v102.to_str().unwrap()]);
    assert_eq!(code, 1, "{json}\n{err}");
    let row = &rows(&json)[0];
    assert_eq!(row["result"], "rolled_back", "{json}");
    assert!(row["before"].is_null() && row["after"].is_null(), "{json}");
    assert_eq!(board.installed("kitchntabs"), None);
    // Purged, not removed: dpkg keeps no record of it, and none of its files are left.
    let left =
        board.ssh("dpkg-query -W -f '${db:Status-Abbrev}' kitchntabs 2>&1; ls -A /opt /usr/bin/kitchntabs 2>&1; true");
    assert!(!left.contains("KitchnTabs") && left.contains("No such file"), "{left}");
    assert!(!left.starts_with("rc"), "only removed, its conffiles kept: {left}");

    let (code, json, err) = deploy(&root, &["--host", &host, "--deb", v100.to_str().unwrap()]);
    assert_eq!(code, 0, "{json}\n{err}");
    board.ssh("rm /var/cache/kitchntabs/deploy/kitchntabs_1.0.0_arm64.deb");
    let (code, json, err) = deploy(&root, &["--host", &host, "--deb", v102.to_str().unwrap()]);
    assert_eq!(code, 1, "{json}\n{err}");
    let row = &rows(&json)[0];
    assert_eq!(row["result"], "failed", "{json}");
    assert_eq!((row["before"].as_str(), row["after"].as_str()), (Some("1.0.0"), Some("1.0.2")), "{json}");
    let detail = row["detail"].to_string();
    assert!(detail.contains("print_service --self-test failed"), "{json}");
    assert!(detail.contains("cannot roll back: no kept .deb of the previous version"), "{json}");
    assert_eq!(board.installed("kitchntabs").as_deref(), Some("1.0.2"));
}

/// The dry run prints every board's ssh and scp lines and contacts nothing: a listener on the
/// port it names sees no connection.
#[test]
fn a_dry_run_prints_the_commands_and_contacts_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let host = format!("pi@127.0.0.1:{port}");
    let root = checkout(tmp.path(), None, &[host.clone(), "root@127.0.0.1:9".into()]);

    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("--root")
        .arg(&root)
        .args(["deploy", "--host", "@kitchen", "--dry-run"])
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(!stderr.contains("onnect"), "a dry run connected: {stderr}");
    let lines: Vec<&str> =
        stdout.lines().map(str::trim).filter(|l| l.starts_with("ssh ") || l.starts_with("scp ")).collect();
    // connect, probe, rollback copy, upload, place, install, installed, 3 self-tests, prune,
    // rollback, close.
    assert_eq!(lines.len(), 2 * 13, "{stdout}");
    for l in &lines {
        let words = shlex::split(l).unwrap_or_else(|| panic!("not a shell line: {l}"));
        assert_eq!(words[1..3], ["-o", "BatchMode=yes"], "{l}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("-p {port} pi@127.0.0.1 ")) && l.contains("dpkg --print-architecture"))
    );
    assert!(lines.iter().any(|l| l.starts_with("scp ") && l.contains("-P 9 ") && l.contains("root@127.0.0.1:/tmp/")));
    assert!(lines.iter().any(|l| l.contains("sudo -n env") && l.contains("apt-get install -y --allow-downgrades")));

    let (code, json, err) = deploy(&root, &["--host", "@kitchen", "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    let hosts = json["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 2);
    assert_eq!(hosts[0]["steps"].as_array().unwrap().len(), 13, "{json}");
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the dry run connected to the board"
    );
}
