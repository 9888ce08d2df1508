#!/usr/bin/env bash
# Benchmarks (not tests): every bench in benches/ (the helpers add theirs there), each printing its
# figures next to the physical limit (a direct client on the same stand-in card). The output
# replaces the generated block of docs/benchmark.md and docs/benchmark.zh-CN.md (between the
# BEGIN/END markers), with the date and the machine, so the figures there are never hand-edited.
#   scripts/bench.sh            all benches, short runs, writes the docs
#   scripts/bench.sh load       one bench (its name in benches/), writes nothing
# BENCH_MODE, BENCH_SECONDS, BENCH_CLIENTS, BENCH_CARD_SECONDS: see benches/load.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -gt 0 ]; then
  exec cargo bench --bench "$1"
fi
out=$(mktemp)
trap 'rm -f "$out"' EXIT
{
  echo "# $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(uname -sr), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  for bench in benches/*.rs; do
    name=$(basename "$bench" .rs)
    echo "## $name"
    cargo bench --quiet --bench "$name" 2>/dev/null
  done
} | tee "$out"
python3 - "$out" docs/benchmark.md docs/benchmark.zh-CN.md <<'PY'
import sys, re
output = open(sys.argv[1], encoding="utf-8").read().rstrip()
block = "<!-- BEGIN scripts/bench.sh output -->\n```text\n" + output + "\n```\n<!-- END scripts/bench.sh output -->"
for path in sys.argv[2:]:
    text = open(path, encoding="utf-8").read()
    new, n = re.subn(r"<!-- BEGIN scripts/bench.sh output -->.*?<!-- END scripts/bench.sh output -->",
                     lambda _: block, text, flags=re.S)
    if n != 1:
        sys.exit(f"{path}: the BEGIN/END markers of the generated block are missing")
    open(path, "w", encoding="utf-8").write(new)
    print(f"wrote {path}")
PY
