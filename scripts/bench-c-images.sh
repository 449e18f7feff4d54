#!/usr/bin/env bash
# Benchmark: `cargo xtask images notes` from clean, for the six platforms
# images.toml gives it, against what a team would otherwise run for the same
# service: `cargo zigbuild --release` for the same six musl targets (zig
# compiling the C of aws-lc, SQLite, zstd and mimalloc, as scratchpack's zig
# does), then `tar | pigz` of the six binaries. Side by side in one run, each
# from an empty target directory of a fresh clone (the xtask itself is built
# first, as a CI job's first step would). Both use zig 0.15.2 from PyPI.
# Prints times and the ratio; asserts nothing.
#
#   scripts/bench-c-images.sh
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

command -v pigz >/dev/null || {
  if [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends pigz >/dev/null
  else
    echo "error: this benchmark needs pigz (sudo apt-get install pigz)" >&2
    exit 1
  fi
}
# cargo-zigbuild and the zig it runs, from PyPI, in a venv of their own.
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q cargo-zigbuild==0.24.1 ziglang==0.15.2
export PATH="$work/venv/bin:$PATH"
# zig caches what it compiles: each side starts from an empty cache
# (scratchpack's lives in its target directory, removed below).
export ZIG_GLOBAL_CACHE_DIR="$work/zig-cache" ZIG_LOCAL_CACHE_DIR="$work/zig-cache"

git clone -q "$src" "$work/ws"
cd "$work/ws"
triples=(x86_64-unknown-linux-musl aarch64-unknown-linux-musl armv7-unknown-linux-musleabihf
  i686-unknown-linux-musl riscv64gc-unknown-linux-musl powerpc64le-unknown-linux-musl)
targets=()
for t in "${triples[@]}"; do targets+=(--target "$t"); done

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

cargo build -q -p xtask
cargo-zigbuild --version

echo "== cargo zigbuild --release (6 targets) + tar | pigz =="
t0=$(now)
CARGO_TARGET_DIR="$work/zig-target" cargo zigbuild -q --release -p notes "${targets[@]}"
for t in "${triples[@]}"; do
  tar -C "$work/zig-target/$t/release" -cf - notes | pigz -6 >"$work/notes-$t.tar.gz"
done
t1=$(now)
zig=$(elapsed "$t0" "$t1")

echo "== cargo xtask images notes (6 platforms, images, SBOMs, provenance) =="
rm -rf target/scratchpack target/images
t2=$(now)
cargo xtask images -q notes >/dev/null
t3=$(now)
images=$(elapsed "$t2" "$t3")

printf 'cargo zigbuild + tar | pigz   %8.1f s\n' "$zig"
printf 'cargo xtask images notes      %8.1f s   ratio %s (load %s)\n' "$images" "$(ratio "$images" "$zig")" "$(cut -d' ' -f1-3 /proc/loadavg)"
