#!/usr/bin/env bash
# The published crates as another workspace gets them: packs the engine, its
# lower layers (scratchpack-base) and the sandbox, then
# makes a workspace outside this repository whose xtask depends on
# `scratchpack` from the registry, as "Using scratchpack from another
# workspace" in the README says, with [patch.crates-io] pointing at the
# unpacked .crate files; builds its image and runs its test there. Then
# checks the unpacked crates with every direct dependency at the lowest
# version their Cargo.toml allows (cargo's `-Z direct-minimal-versions`):
# what a workspace whose lock file holds older versions compiles, so a
# requirement below an API the code uses fails here.
# The target directories are kept under target/, so a second run on a
# machine compiles nothing again.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
# Packed without cargo's own verification build: the workspace below builds
# the engine from the unpacked .crate files alone, and the lowest-versions
# check compiles all three with every feature and none, so a file left out
# of a package fails there.
packed="$root/target/packed"
crates=(scratchpack-sandbox scratchpack-base scratchpack)
rm -rf "$packed/package"
CARGO_TARGET_DIR="$packed" cargo package --locked --quiet --no-verify "${crates[@]/#/-p}"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/crates"
for crate in "${crates[@]}"; do
  tar -xzf "$packed/package/$crate-$version.crate" -C "$work/crates"
done

ws="$work/app"
mkdir -p "$ws/xtask/src" "$ws/hello/src" "$ws/.cargo"
cat >"$ws/Cargo.toml" <<EOF
[workspace]
resolver = "3"
members = ["xtask", "hello"]

[patch.crates-io]
scratchpack = { path = "$work/crates/scratchpack-$version" }
scratchpack-base = { path = "$work/crates/scratchpack-base-$version" }
scratchpack-sandbox = { path = "$work/crates/scratchpack-sandbox-$version" }
EOF
cat >"$ws/xtask/Cargo.toml" <<EOF
[package]
name = "xtask"
version = "0.1.0"
edition = "2024"
publish = false

[dependencies]
scratchpack = "$version"
EOF
printf 'fn main() -> std::process::ExitCode {\n    scratchpack::cli::main()\n}\n' >"$ws/xtask/src/main.rs"
printf '[alias]\nxtask = "run --quiet --package xtask --"\n' >"$ws/.cargo/config.toml"
printf '[package]\nname = "hello"\nversion = "0.1.0"\nedition = "2024"\n' >"$ws/hello/Cargo.toml"
printf 'fn main() {\n    println!("hello from another workspace");\n}\n' >"$ws/hello/src/main.rs"
cat >"$ws/images.toml" <<'EOF'
[images.hello]
package = "hello"
platforms = ["linux/amd64"]

[images.hello.tests.greets]
stdout = { contains = ["hello from another workspace"] }
EOF

# The crates' own dependencies are resolved afresh, as a new workspace's
# would be; the target directory outlives this run.
export CARGO_TARGET_DIR="$root/target/package-check"
(cd "$ws" && cargo xtask images -q && cargo xtask test-images -q)
test -f "$CARGO_TARGET_DIR/images/hello/index.json"
echo "the packed crates build and test an image in a workspace of their own"

# The lowest versions: the unpacked crates as the members of a workspace of
# their own, so that their dependencies are its direct ones. The resolver
# option is unstable; RUSTC_BOOTSTRAP lets this stable cargo take it.
lowest="$work/lowest"
mkdir -p "$lowest"
for crate in "${crates[@]}"; do
  tar -xzf "$packed/package/$crate-$version.crate" -C "$lowest"
done
# The files keep their mtimes from the checkout, and this workspace's
# members have the same relative paths on every run: cargo would take an
# older build of them in the kept target directory for current.
find "$lowest" -type f -exec touch {} +
cat >"$lowest/Cargo.toml" <<EOF
[workspace]
resolver = "3"
members = ["scratchpack-$version", "scratchpack-base-$version", "scratchpack-sandbox-$version"]

[patch.crates-io]
scratchpack-base = { path = "scratchpack-base-$version" }
scratchpack-sandbox = { path = "scratchpack-sandbox-$version" }
EOF
export CARGO_TARGET_DIR="$root/target/package-lowest"
(
  cd "$lowest"
  RUSTC_BOOTSTRAP=1 cargo update -q -Z direct-minimal-versions
  cargo check -q --workspace --all-features
  cargo check -q --workspace
)
echo "the packed crates build with their dependencies at the lowest versions they allow"
