#!/usr/bin/env bash
# The whole test suite, as CI runs it, on a fresh machine: installs what the
# tests need (Debian packages when run as root, Rust targets through the
# README's first command), checks formatting and lints, runs every test,
# then tests the example images.
set -euo pipefail
# Each step says when it starts and how long the command has run, so a
# slow run shows where its time went.
phase() { echo "== $(date -u +%H:%M:%S) (${SECONDS} s in) $*"; }
cd "$(dirname "$0")/.."

# Oracles the tests check our output with, and the tools they run images with.
debian_packages=(skopeo umoci crun bubblewrap docker-registry qemu-user-static util-linux file tar podman diffutils python3-venv sccache redis-server curl)
# The C tests have scratchpack install zig with pip on first use.
debian_packages+=(python3-pip)
# The release tests install their Python and npm checkers themselves (into
# target/oracles); they need python3-venv, and node with npm. A node from
# elsewhere that already brings npm is kept.
command -v npm >/dev/null 2>&1 || debian_packages+=(nodejs npm)
missing=()
for pkg in "${debian_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "error: the tests need these Debian packages: ${missing[*]}" >&2
    echo "       install them with: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

# The README's first command, as on a fresh machine: it installs every
# platform's Rust target, building a standard library from the toolchain's
# sources where rustup cannot download it.
# Image builds go to the target directory the end-to-end tests build the
# examples in (tests/it/support.rs), so each example, notes' C among them,
# compiles once for the whole command.
it_target="$PWD/target/it"
phase "the README's first command: every example image"
CARGO_TARGET_DIR="$it_target" cargo xtask images
rustup component add rustfmt clippy

# The sccache test needs sccache's redis backend, which Debian's sccache is
# built without: one with it is built once per machine (not per checkout) into
# $SCRATCHPACK_TOOLS_DIR, where the test looks first.
export SCRATCHPACK_TOOLS_DIR="${SCRATCHPACK_TOOLS_DIR:-$HOME/.cache/scratchpack-tools}"
if [ ! -x "$SCRATCHPACK_TOOLS_DIR/bin/sccache" ]; then
  cargo install --quiet --locked --root "$SCRATCHPACK_TOOLS_DIR" sccache@0.19.0 \
    --no-default-features --features redis
fi

phase "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The engine without its optional features (its default), as a workspace that
# only builds (and maybe pushes) images compiles it; the default target dir is
# reused.
for features in "" "--features push"; do
  # shellcheck disable=SC2086 # the features are separate words
  cargo clippy --package scratchpack --package scratchpack-base --all-targets \
    --no-default-features $features \
    --locked -- -D warnings
done

# The build, push and sign path compiles for macOS workspaces (image tests
# need Linux): checked, not linked, since there is no macOS linker or SDK
# here. The `zstd` feature compiles C (libzstd), which needs Apple's SDK, so
# it is left out of this check.
phase "the engine checked for macOS"
rustup target add aarch64-apple-darwin
RUSTFLAGS="-D warnings" CARGO_TARGET_DIR=target/macos \
  cargo check --package scratchpack --no-default-features --features push,sign \
  --target aarch64-apple-darwin --locked

# The oldest Rust the workspace says it builds with (`rust-version`) does.
phase "the minimum Rust version"
msrv=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml)
rustup toolchain install "$msrv" --profile minimal
RUSTFLAGS="-D warnings" CARGO_TARGET_DIR=target/msrv \
  cargo "+$msrv" check --workspace --all-targets --locked
phase "unit and end-to-end tests"
cargo test --workspace --locked
# The engine, its lower layers and the sandbox as crates.io would have them:
# packed, then used by an xtask in a workspace outside this one.
phase "the published crates, packed"
scripts/check-package.sh
# The commands a build without `push` and `sign` leaves out still answer,
# naming the feature that brings them back; so does a manifest asking for
# zstd layers without `zstd`.
phase "the engine without its features"
cargo test --package scratchpack --no-default-features --lib --locked -- cli:: without_zstd
# The example images' own tests, as a user runs them.
# Every platform must run: a host without an emulator fails rather than skips.
phase "the example images' tests"
CARGO_TARGET_DIR="$it_target" cargo xtask test-images --require-all-platforms
phase "done"
