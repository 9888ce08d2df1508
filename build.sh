#!/usr/bin/env bash
# Builds the release binaries and prints each artefact's path and size:
#   host     this machine's binary
#   windows  chinaport-proxy.exe (x86_64-pc-windows-gnu); installs the rustup target and Debian's
#            mingw-w64 linker when they are missing, and fails if the exe outgrows 2,750,000 bytes
#   arm64    Linux arm64, when the target and aarch64-linux-gnu-gcc are present
#   macos    macOS (x86_64 and arm64), when the targets and a macOS linker are present
# With no arguments it builds all of them, skipping (with a line saying so) what cannot be built.
set -euo pipefail
cd "$(dirname "$0")"

# Was 2,500,000 until the Java signer's API (#29), the hostile-input fixes (#32), the fleet
# contract (#26) and the transfer client (#27) took the exe from 2,463,744 to 2,701,312 bytes
# (measured 2026-12-03). Raised rather than drop the built-in simulator from the exe (-800 KB,
# but then the shipped exe cannot be tried without a card) or a feature the issues ask for; the
# ways back under 2.5 MB are listed in docs/benchmark.md ("Size"). A regression, not a new goal.
WINDOWS_MAX_BYTES=2750000
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(host windows arm64 macos)

size_line() { printf '%-60s %9s bytes\n' "$1" "$(wc -c < "$1" | tr -d ' ')"; }
have_target() { rustup target list --installed 2>/dev/null | grep -qx "$1"; }
apt_install() {
  if [ "$(id -u)" != 0 ]; then echo "need root to install $*" >&2; return 1; fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

build_host() {
  cargo build --release --locked
  size_line target/release/chinaport-proxy
}

build_windows() {
  local t=x86_64-pc-windows-gnu
  have_target $t || rustup target add $t
  command -v x86_64-w64-mingw32-gcc >/dev/null || apt_install gcc-mingw-w64-x86-64
  cargo build --release --locked --target $t
  local exe=target/$t/release/chinaport-proxy.exe
  size_line "$exe"
  local size; size=$(wc -c < "$exe" | tr -d ' ')
  if [ "$size" -gt "$WINDOWS_MAX_BYTES" ]; then
    echo "error: $exe is $size bytes, over the $WINDOWS_MAX_BYTES-byte budget" >&2
    return 1
  fi
}

build_arm64() {
  local t=aarch64-unknown-linux-gnu
  if ! have_target $t || ! command -v aarch64-linux-gnu-gcc >/dev/null; then
    echo "skipped: Linux arm64 (needs 'rustup target add $t' and gcc-aarch64-linux-gnu)"
    return 0
  fi
  CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
    cargo build --release --locked --target $t
  size_line target/$t/release/chinaport-proxy
}

build_macos() {
  local built=0
  for t in x86_64-apple-darwin aarch64-apple-darwin; do
    if have_target $t && { [ "$(uname -s)" = Darwin ] || command -v "${t%%-*}-apple-darwin-clang" >/dev/null; }; then
      cargo build --release --locked --target $t
      size_line target/$t/release/chinaport-proxy
      built=1
    fi
  done
  [ $built = 1 ] || echo "skipped: macOS (needs a macOS host, or the apple-darwin targets and an osxcross linker)"
}

for t in "${targets[@]}"; do
  case "$t" in
    host) build_host ;;
    windows) build_windows ;;
    arm64) build_arm64 ;;
    macos) build_macos ;;
    *) echo "unknown target $t (host, windows, arm64, macos)" >&2; exit 2 ;;
  esac
done
