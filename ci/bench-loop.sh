#!/bin/bash
# The edit -> verified .deb loop on x64, today's xtask against a baseline revision, on the same
# input in one run: a clone of HEAD per side, a stand-in Electron with ~191 MB of code-like
# data (this host's shared-library bytes behind a non-ELF header: they compress as Electron's
# code does), the shared venv. Each side: a cold `dist --arch x64` (untimed set-up), three
# no-op runs, then one real edit of print_service.py and `dist --arch x64`.
#
#   ci/bench-loop.sh e3d3705        # baseline revision; prints seconds per run and step
#
# Needs what `cargo xtask test --setup` installs (venv, node_modules, gcc) and ~2 GB in /tmp.
set -euo pipefail
baseline=${1:?usage: ci/bench-loop.sh BASELINE_REV}
repo=$(git rev-parse --show-toplevel)
work=${BENCH_LOOP_DIR:-/tmp/kitchntabs-bench-loop}
mkdir -p "$work"

# The two binaries: HEAD's, and the baseline's built from a worktree in its own target dir.
(cd "$repo" && cargo build -q -p xtask) && cp "$repo/target/debug/xtask" "$work/xtask-ours"
rm -rf "$work/baseline-src"; git -C "$repo" worktree add -f --detach "$work/baseline-src" "$baseline" > /dev/null
(cd "$work/baseline-src" && CARGO_TARGET_DIR="$work/baseline-target" cargo build -q -p xtask)
cp "$work/baseline-target/debug/xtask" "$work/xtask-baseline"
git -C "$repo" worktree remove --force "$work/baseline-src"

# The stand-in Electron (as xtask/tests/common makes it) plus the code-like payload.
electron=$work/electron-x64
if [ ! -f "$electron/resources.pak" ]; then
    rm -rf "$electron"; mkdir -p "$electron/locales" "$work/cc"
    printf '#include <string.h>\nsize_t kt_ffmpeg(const char *s) { return strlen(s); }\n' > "$work/cc/ffmpeg.c"
    printf '%s\n' '#include <stdio.h>' '#include <string.h>' '#include <stddef.h>' 'size_t kt_ffmpeg(const char *s);' \
        'int main(int argc, char **argv) {' '    for (int i = 1; i < argc; i++)' \
        '        if (strcmp(argv[i], "--version") == 0) { puts("v43.8.11"); return 0; }' \
        '    printf("stand-in Electron 43.8.11 %zu\n", kt_ffmpeg(argv[0]));' '    return 0;' '}' > "$work/cc/electron.c"
    gcc -O2 -s -shared -fPIC -Wl,-z,relro,-z,now -o "$electron/libffmpeg.so" "$work/cc/ffmpeg.c"
    gcc -O2 -s -fPIE -pie -Wl,-z,relro,-z,now -o "$electron/electron" "$work/cc/electron.c" -L"$electron" -lffmpeg '-Wl,-rpath,$ORIGIN'
    cp "$electron/electron" "$electron/chrome-sandbox"
    printf 43.8.11 > "$electron/version"; printf 'stand-in locale' > "$electron/locales/en-US.pak"
    find /usr/lib/x86_64-linux-gnu /usr/lib/gcc /usr/libexec -type f -name '*.so*' -size +100k 2>/dev/null | sort > "$work/libs.txt"
    python3 - "$electron" "$work/libs.txt" <<'PY'
import os, sys
out, listing = sys.argv[1], sys.argv[2]
data = bytearray()
for path in open(listing).read().split():
    try:
        data += open(path, 'rb').read()
    except OSError:
        pass
    if len(data) > 200 << 20:
        break
if len(data) < 191 << 20:
    sys.exit(f"only {len(data)} bytes of shared libraries on this host; need 191 MiB")
big = 150 << 20
open(os.path.join(out, 'resources.pak'), 'wb').write(b'PAK\0' + data[:big])
for i in range(41):
    piece = data[big + (i << 20):big + ((i + 1) << 20)]
    open(os.path.join(out, 'locales', f'l{i:02}.pak'), 'wb').write(b'PAK\0' + piece)
PY
fi
du -sh "$electron"

export KT_ELECTRON_DIST=$electron KT_VENV=$repo/python-service/.venv
seconds() { python3 -c 'import sys, time; t = time.time(); import subprocess; r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); print(f"{time.time() - t:.3f}" if r.returncode == 0 else sys.exit(f"failed: {sys.argv[1:]}"))' "$@"; }
for side in baseline ours; do
    tree=$work/$side
    rm -rf "$tree"; git clone -q "$repo" "$tree"
    bin=$work/xtask-$side
    echo "$side cold dist: $(seconds "$bin" --root "$tree" dist --arch x64) s"
    for i in 1 2 3; do echo "$side no-op dist $i: $(seconds "$bin" --root "$tree" dist --arch x64) s"; done
    echo "_EDITED = $(date +%s%N)" >> "$tree/python-service/src/print_service.py"
    start=$(date +%s.%N)
    "$bin" --root "$tree" dist --arch x64 --json > "$work/$side-edit.json" 2> "$work/$side-edit.log"
    echo "$side edit -> .deb: $(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.3f}')" "$start" "$(date +%s.%N)") s"
    python3 - "$work/$side-edit.json" "$side" <<'PY'
import json, sys
steps = json.load(open(sys.argv[1]))['report']['steps']
print(f"{sys.argv[2]} steps: " + ", ".join(f"{s['id']} {s['seconds']:.1f}" for s in steps if s['seconds'] >= 0.05))
PY
done
