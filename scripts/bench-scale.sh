#!/usr/bin/env bash
# Benchmark: a 40-image workspace built cold on one runner, against three
# partitioned runners (`--partition hash:I/3`, one after the other here, each
# a fresh clone with its own target directory) sharing a registry cache, and
# a last fresh clone that assembles every image from that cache. The cache is
# a local docker-registry on loopback. Prints wall times; asserts nothing.
#
#   scripts/bench-scale.sh [IMAGES]
set -euo pipefail
count=${1:-40}
src=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
registry_pid=
cleanup() {
  if [ -n "$registry_pid" ]; then kill "$registry_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

# The command line every workspace's xtask runs, built once.
(cd "$src" && cargo build -q -p scratchpack-tests --bin scratchpack)
xtask="$src/target/debug/scratchpack"

# The workspace: one binary crate per image, committed with its lock file.
origin="$work/origin"
mkdir -p "$origin/crates"
members=()
{
  echo '[defaults]'
  echo 'platforms = ["linux/amd64"]'
} >"$origin/images.toml"
for i in $(seq -w 1 "$count"); do
  name="svc$i"
  members+=("\"crates/$name\"")
  mkdir -p "$origin/crates/$name/src"
  printf '[package]\nname = "%s"\nversion = "0.1.0"\nedition = "2024"\n' "$name" \
    >"$origin/crates/$name/Cargo.toml"
  printf 'fn main() {\n    let n: u64 = std::env::args().count() as u64;\n    println!("%s {}", n * %d);\n}\n' \
    "$name" "$((10#$i))" >"$origin/crates/$name/src/main.rs"
  printf '\n[images.%s]\npackage = "%s"\n' "$name" "$name" >>"$origin/images.toml"
done
(IFS=,; printf '[workspace]\nresolver = "3"\nmembers = [%s]\n\n[profile.release]\nstrip = true\n' \
  "${members[*]}") >"$origin/Cargo.toml"
(cd "$origin" && cargo generate-lockfile -q --offline && git init -q && git add -A \
  && git -c user.name=b -c user.email=b@b commit -q -m workspace)

# The cache: a CNCF distribution registry on a free loopback port.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/registry.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: 127.0.0.1:$port
EOF
docker-registry serve "$work/registry.yml" >/dev/null 2>&1 &
registry_pid=$!
until curl -sf "http://127.0.0.1:$port/v2/" >/dev/null 2>&1; do sleep 0.1; done
cache="127.0.0.1:$port/build-cache"

runner() { # NAME ARGS...: a fresh clone with its own target dir, timed
  local name=$1; shift
  git clone -q "$origin" "$work/$name"
  local t0 t1
  t0=$(now)
  (cd "$work/$name" && env -u CARGO_TARGET_DIR "$xtask" images -q --message-format json "$@" \
    >"$work/$name.json")
  t1=$(now)
  elapsed "$t0" "$t1"
}

echo "== $count images, amd64, $(nproc) cores =="
single=$(runner single)
printf 'one runner, cold, no cache                 %8.2f s  (%s images)\n' "$single" \
  "$(wc -l <"$work/single.json")"
total=0
for i in 1 2 3; do
  t=$(runner "part$i" --partition "hash:$i/3" --cache-to "$cache")
  total=$(awk -v a="$total" -v b="$t" 'BEGIN { printf "%.2f", a + b }')
  printf 'runner %s of 3, cold, --partition hash:%s/3  %8.2f s  (%s images)\n' "$i" "$i" "$t" \
    "$(wc -l <"$work/part$i.json")"
done
printf 'three runners together (sum)               %8.2f s\n' "$total"
last=$(runner last --cache-from "$cache")
printf 'fresh clone, every image from the cache    %8.2f s  (%s images)\n' "$last" \
  "$(wc -l <"$work/last.json")"
digests() { python3 -c 'import json,sys; print("\n".join(sorted(json.loads(l)["name"]+" "+json.loads(l)["digest"] for l in open(sys.argv[1]))))' "$1"; }
if [ "$(digests "$work/single.json")" = "$(digests "$work/last.json")" ]; then
  echo "the cached images have the digests of the single runner's"
else
  echo "the cached images' digests differ from the single runner's"
fi
