#!/usr/bin/env bash
# What `cargo xtask test` would set up itself as root (Debian packages of every failed probe,
# the venv, node_modules, dockerd, QEMU): CI runs as a sudo-capable user, so set it up first,
# as root. The package list lives in the xtask (xtask/src/test.rs), not here.
set -euo pipefail
"$(dirname "$0")/as-root.sh" cargo xtask test --setup
