#!/usr/bin/env bash
# Benchmark: median time to run the hello image to completion in scratchpack's
# sandbox, side by side with bwrap and `crun run` on the same unpacked rootfs.
# All three with a cgroup (memory, pids, CPU) and the same seccomp deny-list.
# Prints times and ratios; asserts nothing. Needs bubblewrap and crun.
#
#   scripts/bench-sandbox.sh [RUNS]
set -euo pipefail
runs=${1:-100}
cd "$(dirname "$0")/.."
cargo xtask images -q hello >/dev/null
cargo build -q --release -p scratchpack-sandbox --example bench
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
# The amd64 image's layer, found through the layout's index.
layout=target/images/hello
layer=$(python3 - "$layout" <<'PY'
import json, sys
layout = sys.argv[1]
blob = lambda d: json.load(open(f"{layout}/blobs/sha256/{d.split(':')[1]}"))
top = json.load(open(f"{layout}/index.json"))["manifests"][0]
index = blob(top["digest"])
manifests = index.get("manifests", [top])
m = next(m for m in manifests if m.get("platform", {}).get("architecture", "amd64") == "amd64")
print(blob(m["digest"])["layers"][0]["digest"].split(":")[1])
PY
)
tar -xzf "$layout/blobs/sha256/$layer" -C "$root"
chmod 755 "$root"
# crun refuses hosts whose cgroup v2 hierarchy sits beside v1 controllers;
# hide that hierarchy in a private mount namespace for the run. Not `exec`:
# the trap above removes the unpacked root afterwards.
unshare -m --propagation private sh -c \
  'umount /sys/fs/cgroup/unified 2>/dev/null; exec target/release/examples/bench --runs "$0" "$1" /hello world' \
  "$runs" "$root"
