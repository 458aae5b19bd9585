#!/usr/bin/env bash
# The Debian packages `cargo xtask test` and `dist` would install themselves as root; CI runs
# as a sudo-capable user, so install them up front.
set -euo pipefail
sudo apt-get update -qq
sudo apt-get install -y -qq --no-install-recommends \
    espeak-ng gcc-arm-linux-gnueabihf gcc-arm-linux-gnueabi gcc-aarch64-linux-gnu binutils dpkg \
    qemu-user-static debootstrap lintian
