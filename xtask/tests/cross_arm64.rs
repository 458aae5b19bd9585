//! End-to-end: arm64 from sources to a .deb used in an arm64 rootfs under QEMU, and a fourth
//! service. Ignored by a plain `cargo test`: `cargo xtask test --only e2e` sets up Docker and
//! QEMU and runs them, one after the other (both use the arm64 build-base rootfs; the first one
//! builds it).

mod common;

#[test]
#[ignore = "end-to-end: `cargo xtask test --only e2e` sets up Docker and QEMU, then runs it"]
fn arm64_services_cross_build_run_on_their_platform_and_rebuild_alone() {
    common::cross::cross_build("arm64", "linux/arm64", 2, 183, common::cross::Upgrade::Skip);
}

#[test]
#[ignore = "end-to-end: `cargo xtask test --only e2e` sets up Docker and QEMU, then runs it"]
fn a_fourth_service_and_a_moved_entry_cross_build() {
    common::cross::fourth_service_cross("arm64", "linux/arm64", 2, 183);
}
