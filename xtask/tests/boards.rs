//! End-to-end: `cargo xtask deploy` to emulated arm64 boards (a Debian bookworm rootfs whose
//! own sshd runs under QEMU on 127.0.0.1). Ignored by a plain `cargo test`: `cargo xtask test
//! --only e2e` sets up QEMU and runs them.

mod common;

use common::board::{Board, Client, rootfs_tar};

#[test]
#[ignore = "end-to-end: `cargo xtask test --only e2e` sets up QEMU, then runs it"]
fn an_emulated_board_answers_ssh() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("repo");
    common::copy_repo(&root);
    let config = xtask::config::Config::load(&root).unwrap();
    let tar = rootfs_tar(&config);
    let client = Client::new(&tmp.path().join("ssh"));
    let board = Board::start(&tar, &client);
    assert_eq!(board.ssh("dpkg --print-architecture").trim(), "arm64");
}
