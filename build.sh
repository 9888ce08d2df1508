#!/usr/bin/env bash
# Builds the release binary for this machine and prints its path and size.
set -euo pipefail
cd "$(dirname "$0")"
cargo build --release
artefact=target/release/chinaport-proxy
printf '%s  %s bytes\n' "$artefact" "$(wc -c < "$artefact")"
