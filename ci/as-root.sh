#!/usr/bin/env bash
# Run a command as root with this user's PATH (rustup's cargo, node, pnpm): debootstrap and
# the engine set-up in the e2e suite need root. Already root: run it as is.
set -euo pipefail
if [ "$(id -u)" = 0 ]; then exec "$@"; fi
exec sudo --preserve-env env "PATH=$PATH" "$@"
