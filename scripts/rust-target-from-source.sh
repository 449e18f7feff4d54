#!/usr/bin/env bash
# Provides a musl Rust target's standard library where `rustup target add`
# cannot download it (a mirror that lacks the component): builds std from the
# toolchain's own rust-src and takes musl's C library, crt objects and the
# LLVM unwinder from Debian's packages for that architecture. The result has
# the layout rustup's rust-std component has (lib/rustlib/<triple>/lib with
# a self-contained/ directory), so rustc, cargo and scratchpack use it as if
# rustup had installed it. A target already there is kept unless --force is
# given, which replaces it. Usage: rust-target-from-source.sh [--force] TRIPLE
set -euo pipefail

force=
if [ "${1:-}" = --force ]; then
  force=1
  shift
fi
triple=${1:?usage: $0 [--force] TRIPLE}
# Debian's architecture, the multiarch directory of its musl-dev, and that
# of its gcc (for crtbegin/crtend, which musl does not ship).
case "$triple" in
  armv7-unknown-linux-musleabihf) deb_arch=armhf musl_dir=arm-linux-musleabihf gcc_dir=arm-linux-gnueabihf ;;
  riscv64gc-unknown-linux-musl) deb_arch=riscv64 musl_dir=riscv64-linux-musl gcc_dir=riscv64-linux-gnu ;;
  powerpc64le-unknown-linux-musl) deb_arch=ppc64el musl_dir=powerpc64le-linux-musl gcc_dir=powerpc64le-linux-gnu ;;
  *) echo "error: no recipe for $triple; install it with rustup target add $triple" >&2; exit 1 ;;
esac
# Debian 13 ships musl 1.2.5, the release Rust's own musl targets carry, and
# is the first release with riscv64.
suite=trixie gcc_version=14 llvm_version=19

sysroot=$(rustc --print sysroot)
dest="$sysroot/lib/rustlib/$triple"
if [ -d "$dest/lib" ] && [ -z "$force" ]; then
  exit 0
fi
rustup component add rust-src >/dev/null
src="$sysroot/lib/rustlib/src/rust/library"
[ -d "$src" ] || { echo "error: rust-src is not in $sysroot" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# A private apt state: the host's own sources, architectures and package
# lists are left as they are.
mkdir -p "$work/apt/lists/partial" "$work/apt/cache/archives/partial" "$work/debs" "$work/root"
# The archive this machine's apt already uses (its main suite's, not the
# security one's), asked for the newer suite.
mirror=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 2>/dev/null |
  awk '$2 !~ /-(security|updates|backports)$/ { print $1; exit }')
[ -n "$mirror" ] || { echo "error: apt names no Debian archive to fetch $suite packages from" >&2; exit 1; }
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $suite main" >"$work/apt/sources.list"
touch "$work/apt/status"
apt_opts=(
  -o "Dir::Etc::SourceList=$work/apt/sources.list" -o Dir::Etc::SourceParts=/nonexistent
  -o "Dir::State::Lists=$work/apt/lists" -o "Dir::Cache=$work/apt/cache"
  -o "Dir::State::status=$work/apt/status" -o "APT::Architectures::=$deb_arch"
  -o APT::Sandbox::User=root -o Debug::NoLocking=1
)
echo "fetching musl, crtbegin/crtend and libunwind for $deb_arch from Debian $suite"
apt-get -qq "${apt_opts[@]}" update
(cd "$work/debs" && apt-get -qq "${apt_opts[@]}" download \
  "musl-dev:$deb_arch" "libgcc-$gcc_version-dev:$deb_arch" "libunwind-$llvm_version-dev:$deb_arch")
for deb in "$work"/debs/*.deb; do dpkg-deb -x "$deb" "$work/root"; done

stage="$work/stage/$triple"
mkdir -p "$stage/lib/self-contained"
musl="$work/root/usr/lib/$musl_dir"
gcc="$work/root/usr/lib/gcc/$gcc_dir/$gcc_version"
# libdl.a and libpthread.a are empty in musl (libc.a has it all); Debian's
# libunwind names them as dependent libraries, so the link looks for them.
cp "$musl"/{crt1.o,crti.o,crtn.o,rcrt1.o,Scrt1.o,libc.a,libdl.a,libpthread.a} "$stage/lib/self-contained/"
cp "$gcc"/{crtbegin.o,crtbeginS.o,crtend.o,crtendS.o} "$stage/lib/self-contained/"
cp "$work/root/usr/lib/llvm-$llvm_version/lib/libunwind.a" "$stage/lib/self-contained/libunwind-llvm.a"

# std from source, for this exact compiler. An empty library crate needs no
# link; bitcode is embedded so LTO builds (lto = "thin") can use it.
echo "building std for $triple from rust-src"
mkdir -p "$work/std/src"
printf '[package]\nname = "sysroot-std"\nversion = "0.0.0"\nedition = "2021"\n[lib]\npath = "src/lib.rs"\n[workspace]\n' >"$work/std/Cargo.toml"
: >"$work/std/src/lib.rs"
# Host paths are remapped so that no binary linking this std names the
# toolchain's, cargo's or this script's directories: std's sources under
# /rustc/<commit> as in rustup's own std, cargo's home (std's dependencies)
# as /cargo, as scratchpack maps it for every other crate.
commit=$(rustc -vV | sed -n 's/^commit-hash: //p')
cargo_home=${CARGO_HOME:-$HOME/.cargo}
remaps="--remap-path-prefix=$src=/rustc/$commit/library --remap-path-prefix=$cargo_home=/cargo"
remaps="$remaps --remap-path-prefix=$work=/build"
(cd "$work/std" && RUSTC_BOOTSTRAP=1 RUSTFLAGS="-Cembed-bitcode=yes $remaps" CARGO_TARGET_DIR="$work/std/target" \
  cargo build --quiet --release -Zbuild-std=std,panic_abort --target "$triple")
find "$work/std/target/$triple/release/deps" -name '*.rlib' ! -name 'libsysroot_std-*' \
  -exec cp {} "$stage/lib/" \;

# Debian builds libunwind with _FORTIFY_SOURCE, so it calls glibc's checked
# printf entry points, which musl lacks; forward them to musl's own. The
# va_list is one pointer-sized value on every architecture handled here.
# `-lunwind` then finds a linker script naming both files.
cat >"$work/shim.rs" <<'RUST'
#![no_std]
use core::ffi::{c_char, c_int, c_void};
unsafe extern "C" {
    fn vfprintf(fp: *mut c_void, fmt: *const c_char, ap: *mut c_void) -> c_int;
    fn vsnprintf(s: *mut c_char, n: usize, fmt: *const c_char, ap: *mut c_void) -> c_int;
}
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __vfprintf_chk(fp: *mut c_void, _flag: c_int, fmt: *const c_char, ap: *mut c_void) -> c_int {
    unsafe { vfprintf(fp, fmt, ap) }
}
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __vsnprintf_chk(s: *mut c_char, n: usize, _flag: c_int, _len: usize, fmt: *const c_char, ap: *mut c_void) -> c_int {
    unsafe { vsnprintf(s, n, fmt, ap) }
}
RUST
# Compiled against the std just built, in a sysroot of its own: a target
# already installed (being replaced) would be a second candidate for core.
mkdir -p "$work/sysroot/lib/rustlib"
ln -s "$stage" "$work/sysroot/lib/rustlib/$triple"
rustc --edition 2024 --crate-type=lib --emit=obj -C panic=abort -C opt-level=2 -C codegen-units=1 \
  --target "$triple" --sysroot "$work/sysroot" -o "$stage/lib/self-contained/unwind-fortify-shim.o" "$work/shim.rs"
printf 'INPUT(libunwind-llvm.a unwind-fortify-shim.o)\n' >"$stage/lib/self-contained/libunwind.a"

# Moved into place last: rustc finds the target only once it is complete
# (a forced replacement swaps two directories, each with one rename).
mkdir -p "$sysroot/lib/rustlib"
mv "$stage" "$dest.partial.$$"
if [ -d "$dest" ]; then
  mv -T "$dest" "$dest.old.$$"
  mv -T "$dest.partial.$$" "$dest"
  rm -rf "$dest.old.$$"
else
  mv -T "$dest.partial.$$" "$dest"
fi
echo "installed $triple into $dest"
