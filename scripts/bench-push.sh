#!/usr/bin/env bash
# Benchmark: `cargo xtask push` of 40 new two-platform images to a local
# registry, against `skopeo copy --all` of the same 40 layouts one after the
# other, each run into a fresh, empty docker-registry. Prints times and the
# ratio; asserts nothing.
#
#   scripts/bench-push.sh [RUNS] [IMAGES]
set -euo pipefail
runs=${1:-3}
images=${2:-40}
src=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
registry_pid=
stop_registry() {
  if [ -n "$registry_pid" ]; then
    kill "$registry_pid" 2>/dev/null || true
    wait "$registry_pid" 2>/dev/null || true
    registry_pid=
  fi
}
trap 'stop_registry; rm -rf "$work"' EXIT
git clone -q "$src" "$work/ws"
cd "$work/ws"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=rust-lld

# Each image ships the same binary and a data file of its own (256 KiB that
# do not compress), so every push has new blobs to send.
mkdir -p bench-data
for i in $(seq "$images"); do
  head -c 262144 /dev/urandom >"bench-data/svc$i.bin"
  cat >>images.toml <<TOML

[images.svc$i]
package = "hello"
env = { SERVICE = "svc$i" }
files = [{ src = "bench-data/svc$i.bin", dst = "/data/svc$i.bin" }]
TOML
done
echo "building $images images (and the examples) once..."
cargo xtask images -q >/dev/null

# A fresh registry on a free port, storage in its own directory.
start_registry() {
  local dir=$work/registry-$1 port
  rm -rf "$dir"; mkdir -p "$dir"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  cat >"$dir/config.yml" <<YML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/storage
http:
  addr: 127.0.0.1:$port
YML
  docker-registry serve "$dir/config.yml" >/dev/null 2>&1 &
  registry_pid=$!
  for _ in $(seq 300); do
    curl -fs "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break
    sleep 0.02
  done
  echo "$port"
}

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

names=()
for i in $(seq "$images"); do names+=("svc$i"); done
sp=(); sk=()
for run in $(seq "$runs"); do
  port=$(start_registry "sp$run")
  t0=$(now)
  cargo xtask push -q --registry "127.0.0.1:$port" --insecure "${names[@]}" >/dev/null
  t1=$(now)
  stop_registry
  port=$(start_registry "sk$run")
  t2=$(now)
  for name in "${names[@]}"; do
    skopeo copy -q --all --dest-tls-verify=false \
      "oci:target/images/$name:latest" "docker://127.0.0.1:$port/$name:latest"
  done
  t3=$(now)
  stop_registry
  sp+=("$(elapsed "$t0" "$t1")"); sk+=("$(elapsed "$t2" "$t3")")
  printf 'run %d: cargo xtask push %8.3f s   skopeo copy x%d %8.3f s\n' "$run" "${sp[-1]}" "$images" "${sk[-1]}"
done
msp=$(printf '%s\n' "${sp[@]}" | median); msk=$(printf '%s\n' "${sk[@]}" | median)
echo "== push $images new images, median of $runs (load: $(cut -d' ' -f1-3 /proc/loadavg)) =="
printf 'skopeo copy --all, one per image      %8.3f s\n' "$msk"
printf 'cargo xtask push (no-op build + push) %8.3f s   ratio %s\n' "$msp" "$(ratio "$msp" "$msk")"
