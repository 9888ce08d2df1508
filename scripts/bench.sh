#!/usr/bin/env bash
# Load benchmark: the proxy against a zero-latency UKey simulator at 1, 16 and 64 clients, next
# to one direct client calling it back to back (the reference), N threads sharing one direct
# WebSocket, and a floor (a server of the proxy's shape doing none of its work). Then a 150 ms
# card at 64 and 128 clients. Targets (README, "Benchmark"): >= 90 % of the serial reference at
# 64 clients; added latency p50 <= 0.3 ms and p99 <= 1 ms at 1 client; RSS <= 8 MB.
# BENCH_MODE (zero, card, all), BENCH_SECONDS, BENCH_CLIENTS and BENCH_CARD_SECONDS: see
# benches/load.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench --bench load
