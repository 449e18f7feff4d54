#!/usr/bin/env bash
# Benchmark: the notes example with mimalloc as its global allocator (its
# default on musl) against musl's own malloc (the same crate built with
# `default-features = false`), under a threaded HTTP load from wrk: kept-alive
# connections, each served by a thread of its own, reading a 16 KiB note that
# SQLite holds zstd-compressed. Both binaries are the linux/amd64 image
# binaries `cargo xtask images` builds (static, musl), run on this machine,
# alternated round by round. Prints requests per second, the server's cpu
# time per request, and the ratios; asserts nothing.
#
#   scripts/bench-alloc.sh [SECONDS] [CONNECTIONS] [ROUNDS]
set -euo pipefail
secs=${1:-10}
conns=${2:-64}
rounds=${3:-3}
src=$(cd "$(dirname "$0")/.." && pwd)

for tool in wrk curl; do
  if ! command -v "$tool" >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$tool" >/dev/null
    else
      echo "error: this benchmark needs $tool (sudo apt-get install $tool)" >&2
      exit 1
    fi
  fi
done

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# The two images, amd64 only, in a manifest of their own in a clone (an
# images.toml names packages of the workspace it sits in). The build is kept
# in target/bench-alloc between runs: this measures the binaries, not their
# build.
git clone -q "$src" "$work/ws"
manifest="$work/ws/bench-alloc.toml"
cat >"$manifest" <<'EOF'
[defaults]
platforms = ["linux/amd64"]

[images.notes-mimalloc]
package = "notes"

[images.notes-musl]
package = "notes"
default-features = false
EOF
(cd "$work/ws" && CARGO_TARGET_DIR="$src/target/bench-alloc" \
  cargo xtask images -q notes-mimalloc notes-musl --manifest-path "$manifest" --out "$work/out" >/dev/null)

# Each layout's one layer holds the binary, /notes.
for variant in mimalloc musl; do
  layout="$work/out/notes-$variant"
  layer=$(python3 - "$layout" <<'EOF'
import json, sys
root = sys.argv[1]
def blob(d): return f"{root}/blobs/sha256/{d.split(':')[1]}"
index = json.load(open(f"{root}/index.json"))
manifest = json.load(open(blob(index["manifests"][0]["digest"])))
print(blob(manifest["layers"][0]["digest"]))
EOF
)
  mkdir -p "$work/$variant"
  tar -xzf "$layer" -C "$work/$variant" notes
done

note=$(python3 -c 'import random; r = random.Random(1); print(" ".join(r.choice(["scratch", "image", "layer", "note", "static", "musl"]) for _ in range(2600))[:16384])')
port=18090
# Starts one variant on its own port, stores the note, checks the allocator
# it reports; prints the port.
start() {
  local variant=$1
  port=$((port + 1))
  PORT=$port NOTES_DB=:memory: "$work/$variant/notes" >/dev/null &
  pids+=($!)
  for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
    sleep 0.05
  done
  curl -fs -X POST --data-binary "$note" "http://127.0.0.1:$port/notes" >/dev/null
  local about
  about=$(curl -fs "http://127.0.0.1:$port/about")
  case "$variant:$about" in
    mimalloc:*'"allocator":"mimalloc"'* | musl:*'"allocator":"libc"'*) ;;
    *) echo "error: $variant reports $about" >&2; exit 1 ;;
  esac
}
# One wrk run against a variant: "REQUESTS_PER_SECOND CPU_MICROSECONDS_PER_REQUEST",
# the second from the server process's own user and system time, which a
# busy machine disturbs less than the rate.
tick=$(getconf CLK_TCK)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
measure() {
  local port=$1 pid=$2 before after out
  before=$(cpu_ticks "$pid")
  out=$(wrk -t2 -c"$conns" -d"${secs}s" "http://127.0.0.1:$port/notes/1")
  after=$(cpu_ticks "$pid")
  awk -v b="$before" -v a="$after" -v hz="$tick" '
    /requests in/ { n = $1 }
    /^Requests\/sec:/ { r = $2 }
    END { printf "%s %.1f\n", r, (a - b) / hz * 1e6 / n }' <<<"$out"
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

start mimalloc; mi_port=$port; mi_pid=${pids[-1]}
start musl; musl_port=$port; musl_pid=${pids[-1]}
# Warm both up (threads, the page cache, the CPU's frequency).
wrk -t2 -c"$conns" -d2s "http://127.0.0.1:$mi_port/notes/1" >/dev/null
wrk -t2 -c"$conns" -d2s "http://127.0.0.1:$musl_port/notes/1" >/dev/null

mi=(); mu=(); mi_cpu=(); mu_cpu=()
for round in $(seq "$rounds"); do
  read -r a ac < <(measure "$mi_port" "$mi_pid")
  read -r b bc < <(measure "$musl_port" "$musl_pid")
  printf 'round %d: mimalloc %8.0f req/s %6.1f us cpu/req   musl malloc %8.0f req/s %6.1f us cpu/req\n' \
    "$round" "$a" "$ac" "$b" "$bc"
  mi+=("$a"); mu+=("$b"); mi_cpu+=("$ac"); mu_cpu+=("$bc")
done
ma=$(printf '%s\n' "${mi[@]}" | median)
mb=$(printf '%s\n' "${mu[@]}" | median)
mac=$(printf '%s\n' "${mi_cpu[@]}" | median)
mbc=$(printf '%s\n' "${mu_cpu[@]}" | median)
printf 'median:  mimalloc %8.0f req/s %6.1f us cpu/req   musl malloc %8.0f req/s %6.1f us cpu/req\n' \
  "$ma" "$mac" "$mb" "$mbc"
printf 'mimalloc/musl: %.2fx the requests per second, %.2fx the cpu per request (%d connections, %ss, %d cores, load %s)\n' \
  "$(awk -v a="$ma" -v b="$mb" 'BEGIN { print a / b }')" \
  "$(awk -v a="$mac" -v b="$mbc" 'BEGIN { print a / b }')" \
  "$conns" "$secs" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
