#!/usr/bin/env bash
# Benchmark: packing layers, side by side with the usual tools, in one run.
#
#  1. A 48 MB static binary made of a real program's bytes (the first 47.5 MB
#     of rustc's own driver library, embedded in a musl executable), packed
#     into a gzip and a zstd layer with both digests (the `pack_layer`
#     example, which packs exactly as `cargo xtask images` does), against
#     `tar | pigz -p2 -6 | sha256sum` and `tar | zstd -3 -T0 | sha256sum`:
#     wall time (hyperfine), cpu time and peak memory (/usr/bin/time -v).
#  2. Repacking 43 images (hello and greeter under 43 names, two platforms
#     each; binaries already compiled) with -j1 and with every core, through
#     the built xtask binary (cargo's own start-up left out).
#
# Prints times and ratios; asserts nothing. Needs hyperfine, pigz, zstd and
# the x86_64 and aarch64 musl targets. The second argument runs only one of
# the two parts.
#
#   scripts/bench-pack.sh [RUNS] [layer|repack]
set -euo pipefail
runs=${1:-5}
part=${2:-all}
src=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
# Mean wall and user+system seconds of a hyperfine JSON export.
field() { python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"][0]; print(r[sys.argv[2]] if sys.argv[2]!="cpu" else r["user"]+r["system"])' "$1" "$2"; }
# Peak resident memory (MiB) of one run.
peak() { /usr/bin/time -v "$@" 2>&1 >/dev/null | awk '/Maximum resident/ { printf "%.1f", $NF / 1024 }'; }

if [ "$part" != repack ]; then
echo "== the 48 MB static binary =="
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
driver=$(ls "$(rustc --print sysroot)"/lib/librustc_driver-*.so | head -1)
mkdir -p "$work/big/src" "$work/stage"
head -c 47500000 "$driver" >"$work/big/payload.bin"
cat >"$work/big/Cargo.toml" <<'EOF'
[package]
name = "big"
version = "0.1.0"
edition = "2024"
[workspace]
[profile.release]
strip = true
EOF
cat >"$work/big/src/main.rs" <<'EOF'
static PAYLOAD: &[u8] = include_bytes!("../payload.bin");
fn main() {
    println!("{}", std::hint::black_box(PAYLOAD).len());
}
EOF
cargo build -q --release --manifest-path "$work/big/Cargo.toml" --target x86_64-unknown-linux-musl \
  --target-dir "$work/big/target"
cp "$work/big/target/x86_64-unknown-linux-musl/release/big" "$work/stage/app"
printf 'binary: %d bytes\n' "$(stat -c %s "$work/stage/app")"

# The example runs in the dev profile, as the xtask does.
(cd "$src" && cargo build -q -p scratchpack --features zstd --example pack_layer)
pack="$src/target/debug/examples/pack_layer"
ours_gz=("$pack" "$work/stage/app" gzip)
ours_zst=("$pack" "$work/stage/app" zstd)
pigz_cmd="tar -cf - -C $work/stage app | pigz -p2 -6 | sha256sum"
zstd_cmd="tar -cf - -C $work/stage app | zstd -3 -T0 -q -c | sha256sum"

hf() { hyperfine -N --style none --warmup 1 --runs "$runs" --export-json "$1" "$2" >/dev/null; }
hf "$work/a.json" "${ours_gz[*]}"
hf "$work/b.json" "sh -c '$pigz_cmd'"
hf "$work/c.json" "${ours_zst[*]}"
hf "$work/d.json" "sh -c '$zstd_cmd'"

row() {
  printf '%-34s %6.3f s wall %6.3f s cpu %7s MiB peak\n' "$1" "$(field "$2" mean)" "$(field "$2" cpu)" "$3"
}
row "scratchpack gzip layer" "$work/a.json" "$(peak "${ours_gz[@]}")"
row "tar | pigz -p2 -6 | sha256sum" "$work/b.json" "$(peak sh -c "$pigz_cmd")"
row "scratchpack zstd layer" "$work/c.json" "$(peak "${ours_zst[@]}")"
row "tar | zstd -3 -T0 | sha256sum" "$work/d.json" "$(peak sh -c "$zstd_cmd")"
printf 'gzip vs pigz: wall %s×, cpu %s×\n' \
  "$(ratio "$(field "$work/a.json" mean)" "$(field "$work/b.json" mean)")" \
  "$(ratio "$(field "$work/a.json" cpu)" "$(field "$work/b.json" cpu)")"
printf 'zstd vs zstd: wall %s×, cpu %s×\n' \
  "$(ratio "$(field "$work/c.json" mean)" "$(field "$work/d.json" mean)")" \
  "$(ratio "$(field "$work/c.json" cpu)" "$(field "$work/d.json" cpu)")"
gz_size=$("$pack" "$work/stage/app" gzip | awk '{ print $3 }')
zst_size=$("$pack" "$work/stage/app" zstd | awk '{ print $3 }')
pigz_size=$(tar -cf - -C "$work/stage" app | pigz -p2 -6 | wc -c)
zstd_size=$(tar -cf - -C "$work/stage" app | zstd -3 -T0 -q -c | wc -c)
printf 'sizes: gzip %d (pigz %d), zstd %d (zstd -3 %d)\n' "$gz_size" "$pigz_size" "$zst_size" "$zstd_size"
fi
[ "$part" = layer ] && exit 0

echo "== repacking 43 images (no compile) =="
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
git clone -q "$src" "$work/ws"
cd "$work/ws"
# The checkout's own build directory: the xtask and the binaries are
# compiled once, not timed.
export CARGO_TARGET_DIR="$src/target"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=rust-lld
for i in $(seq 1 43); do
  pkg=$([ $((i % 2)) = 1 ] && echo hello || echo greeter)
  printf '[images.%s-%d]\npackage = "%s"\nplatforms = ["linux/amd64", "linux/arm64"]\n' "$pkg" "$i" "$pkg"
done >many.toml
cargo build -q -p xtask
xtask="$CARGO_TARGET_DIR/debug/xtask"
"$xtask" images -q --manifest-path many.toml --out "$work/out" >/dev/null
# Every timed run starts from an empty output directory.
repack() { echo "rm -rf $work/out && $xtask images -q --manifest-path many.toml --out $work/out $1"; }
hyperfine --style none --warmup 1 --runs "$runs" --export-json "$work/serial.json" "sh -c '$(repack -j1)'" >/dev/null
hyperfine --style none --warmup 1 --runs "$runs" --export-json "$work/par.json" "sh -c '$(repack '')'" >/dev/null
serial_cpu=$(field "$work/serial.json" cpu)
printf '%-34s %6.3f s wall %6.3f s cpu\n' "-j1" "$(field "$work/serial.json" mean)" "$serial_cpu"
printf '%-34s %6.3f s wall %6.3f s cpu\n' "-j$(nproc)" "$(field "$work/par.json" mean)" "$(field "$work/par.json" cpu)"
printf 'parallel wall vs serial cpu: %s×\n' "$(ratio "$(field "$work/par.json" mean)" "$serial_cpu")"
