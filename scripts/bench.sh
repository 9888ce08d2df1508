#!/usr/bin/env bash
# Load benchmark: the proxy against a zero-latency UKey simulator at 1, 16 and 64 clients, next
# to the same load sent straight over one WebSocket. Targets (issue #2): >= 90 % of the direct
# throughput at 64 clients; added latency p50 <= 0.3 ms and p99 <= 1 ms at 1 client; RSS <= 10 MB.
# BENCH_SECONDS sets the length of each run (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench --bench load
