#!/usr/bin/env bash
# Benchmark: `cargo xtask images` against cargo building the same binaries,
# side by side in one run on a fresh clone, from a clean target directory and
# as a no-op re-run. Prints times and ratios; asserts nothing.
#
#   scripts/bench-images.sh [RUNS]
set -euo pipefail
runs=${1:-10}
src=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone -q "$src" "$work/ws"
cd "$work/ws"

targets=(--target x86_64-unknown-linux-musl --target aarch64-unknown-linux-musl)
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=rust-lld
cargo_build=(cargo build --quiet --release "${targets[@]}" -p hello -p greeter)

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.4f", b - a }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

echo "== first build of the xtask itself (once per checkout) =="
t0=$(now); cargo build -q -p xtask; t1=$(now)
printf 'cargo build -p xtask                %8.2f s\n' "$(elapsed "$t0" "$t1")"

echo "== the images' binaries from clean (both musl targets) =="
clean_images() { rm -rf target/x86_64-unknown-linux-musl target/aarch64-unknown-linux-musl target/images; }
clean_images
t0=$(now); "${cargo_build[@]}"; t1=$(now)
clean_images
t2=$(now); cargo xtask images -q >/dev/null; t3=$(now)
build=$(elapsed "$t0" "$t1"); images=$(elapsed "$t2" "$t3")
printf 'cargo build --release (2 targets)   %8.2f s\n' "$build"
printf 'cargo xtask images                  %8.2f s   ratio %s\n' "$images" "$(ratio "$images" "$build")"

echo "== no-op re-run, median of $runs =="
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
b=(); x=()
for _ in $(seq "$runs"); do
  t0=$(now); "${cargo_build[@]}"; t1=$(now)
  t2=$(now); cargo xtask images -q >/dev/null; t3=$(now)
  b+=("$(elapsed "$t0" "$t1")"); x+=("$(elapsed "$t2" "$t3")")
done
mb=$(printf '%s\n' "${b[@]}" | median); mx=$(printf '%s\n' "${x[@]}" | median)
printf 'cargo build (no-op)                 %8.3f s\n' "$mb"
printf 'cargo xtask images (no-op)          %8.3f s   ratio %s\n' "$mx" "$(ratio "$mx" "$mb")"

echo "== no-op against the xtask doing nothing at all =="
# The floor of any `cargo xtask` run is cargo checking the xtask is fresh and
# starting it; a no-op adds one `cargo build` freshness check and hashing.
if command -v hyperfine >/dev/null; then
  hyperfine -N -w 3 -r "$((runs * 3))" --export-json "$work/noop.json" \
    'cargo xtask --help' 'cargo xtask images -q' >/dev/null
  read -r help noop < <(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"]; print(r[0]["median"], r[1]["median"])' "$work/noop.json")
else
  h=(); n=()
  for _ in $(seq "$((runs * 3))"); do
    t0=$(now); cargo xtask --help >/dev/null; t1=$(now)
    t2=$(now); cargo xtask images -q >/dev/null; t3=$(now)
    h+=("$(elapsed "$t0" "$t1")"); n+=("$(elapsed "$t2" "$t3")")
  done
  help=$(printf '%s\n' "${h[@]}" | median); noop=$(printf '%s\n' "${n[@]}" | median)
fi
printf 'cargo xtask --help                  %8.3f s\n' "$help"
printf 'cargo xtask images (no-op)          %8.3f s   ratio %s (load: %s)\n' "$noop" "$(ratio "$noop" "$help")" "$(cut -d' ' -f1-3 /proc/loadavg)"

echo "== images =="
cargo xtask images -q
