//! End-to-end: arm64 routed to a second engine endpoint (another dockerd on its own socket, as
//! a native arm64 node would be) builds there. Its own test binary, so `cargo xtask test` runs
//! it beside the per-arch ones instead of after the arm64 cross-build, whose binary is the
//! longest. Ignored by a plain `cargo test`: `cargo xtask test --only e2e` sets up Docker and
//! QEMU and runs it.

mod common;

#[test]
#[ignore = "end-to-end: `cargo xtask test --only e2e` sets up Docker and QEMU, then runs it"]
fn a_target_routed_to_another_engine_endpoint_builds_there() {
    common::cross::routed_to_another_endpoint();
}
