//! End-to-end: armv7l (32-bit Raspberry Pi OS) from sources to a .deb used in an armhf
//! rootfs under QEMU. Ignored by a plain `cargo test`: `cargo xtask test --only e2e` (and so
//! `.ci/run`) installs docker.io, qemu-user-static and debootstrap, starts dockerd, registers
//! QEMU and runs it. Where Docker cannot start, that command fails; nothing is skipped.

mod common;

#[test]
#[ignore = "end-to-end: `cargo xtask test --only e2e` sets up Docker and QEMU, then runs it"]
fn armv7l_services_cross_build_run_on_their_platform_and_rebuild_alone() {
    common::cross::cross_build("armv7l", "linux/arm/v7", 1, 40, common::cross::Upgrade::Test);
}
