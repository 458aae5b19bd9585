#!/usr/bin/env bash
# One arch of a release: `cargo xtask dist --arch ARCH --env prod`, then hand the release
# folder (release/<version>/) to the upload step through $GITHUB_OUTPUT.
set -euo pipefail
arch="$1"
cd "$(dirname "$0")/.."
version="$(node -p "require('./electron-app/package.json').version")"
if [ "$(uname -s)" = Linux ]; then
    # Container builds on a debootstrap base need root (debootstrap, binfmt).
    ci/as-root.sh cargo xtask dist --arch "$arch" --env prod
    sudo chown -R "$(id -u):$(id -g)" "release/$version"
else
    cargo xtask dist --arch "$arch" --env prod
fi
echo "dir=release/$version" >> "${GITHUB_OUTPUT:-/dev/stdout}"
