#!/usr/bin/env bash
# Benchmark: the first build of the xtask from a fresh clone, two revisions
# side by side in one run.
#
# Each revision is cloned once; each round builds `cargo build -p xtask`
# from an empty target directory, first with scratchpack's default features
# (what a workspace that only builds and tests images compiles), then with
# this repository's (`push`, `sign`, `zstd`), the two revisions alternating
# so that a busy machine slows both alike. Crates are already downloaded
# (`cargo fetch` first), so only compiling is timed. Prints wall and cpu
# seconds per build, the medians and the ratio NEW / OLD; asserts nothing.
#
#   scripts/bench-first-build.sh OLD_REV [NEW_REV] [ROUNDS]
set -euo pipefail
old=${1:?usage: $0 OLD_REV [NEW_REV] [ROUNDS]}
new=${2:-HEAD}
rounds=${3:-3}
src=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Four clones: each revision with this repository's features (`full`) and
# with scratchpack's defaults (`default`: the workspace dependency's feature
# list emptied).
for side in old new; do
  rev=${!side}
  for kind in default full; do
    dir=$work/$kind.$side.src
    git clone -q "$src" "$dir"
    git -C "$dir" checkout -q "$(git -C "$src" rev-parse "$rev")"
    if [ "$kind" = default ]; then
      sed -i -E 's|^(scratchpack = \{ path = "crates/scratchpack"), features = \[[^]]*\]|\1|' "$dir/Cargo.toml"
      grep -q '^scratchpack = { path = "crates/scratchpack" }' "$dir/Cargo.toml"
    fi
    (cd "$dir" && cargo fetch -q)
  done
done

# One build: "WALL CPU" in seconds; a failed build prints cargo's output
# and ends the run.
build() {
  local dir=$1 target=$work/target times=$work/times log=$work/build.log
  rm -rf "$target"
  if ! (cd "$dir" && CARGO_TARGET_DIR=$target /usr/bin/time -o "$times" -f '%e %U %S' \
    cargo build -q -p xtask >"$log" 2>&1); then
    echo "cargo build -p xtask failed in $dir:" >&2
    cat "$log" >&2
    exit 1
  fi
  rm -rf "$target"
  awk '{ printf "%.1f %.1f\n", $1, $2 + $3 }' "$times"
}

median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

echo "load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
for kind in default full; do
  for side in old new; do : >"$work/$kind.$side"; done
  for round in $(seq "$rounds"); do
    for side in old new; do
      result=$(build "$work/$kind.$side.src")
      read -r wall cpu <<<"$result"
      echo "$kind $side round $round: ${wall} s wall, ${cpu} s cpu"
      echo "$wall $cpu" >>"$work/$kind.$side"
    done
  done
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
printf '%-8s %-22s %-22s %s\n' features "old ($old) wall/cpu" "new ($new) wall/cpu" "ratio new/old (wall)"
for kind in default full; do
  ow=$(cut -d' ' -f1 "$work/$kind.old" | median); oc=$(cut -d' ' -f2 "$work/$kind.old" | median)
  nw=$(cut -d' ' -f1 "$work/$kind.new" | median); nc=$(cut -d' ' -f2 "$work/$kind.new" | median)
  printf '%-8s %-22s %-22s %s\n' "$kind" "$ow s / $oc s" "$nw s / $nc s" \
    "$(awk -v a="$nw" -v b="$ow" 'BEGIN { printf "%.2f", a / b }')"
done
