#!/usr/bin/env bash
# The release job's last step: merge every arch's manifest into one SHA256SUMS and one
# dist-manifest.json (checking each artifact's size and hash), sign SHA256SUMS when a key is
# configured, and publish the lot as the tag's GitHub release.
set -euo pipefail
tag="$1"
dir="$2"
cd "$(dirname "$0")/.."
if [ -n "${GPG_PRIVATE_KEY:-}" ]; then
    printf '%s\n' "$GPG_PRIVATE_KEY" | gpg --batch --import
fi
cargo xtask release --tag "$tag" --merge "$dir"
gh release create "$tag" --title "KitchnTabs ${tag#v}" --generate-notes --verify-tag "$dir"/*
