#!/usr/bin/env bash
# Benchmark: peak memory (max RSS) of one taskbench process driving many publishers: 10,000 on the raw unix
# path by default (scenarios/bench-publishers.toml), against a standalone `taskbench sink` in its own process,
# so the publishers' process holds one descriptor per connection. It must stay under 256 MiB.
# Usage: bench/publishers.sh [CONCURRENCY...]   (default: 100 1000 10000)
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
tb=$(bench_taskbench)
sock=/tmp/taskbench-bench-publishers.sock
out=$(mktemp -d)
sink_pid=
cleanup() {
  [ -n "$sink_pid" ] && kill -INT "$sink_pid" 2>/dev/null && wait "$sink_pid" 2>/dev/null
  rm -rf "$out" "$sock"
}
trap cleanup EXIT

rm -f "$sock"
"$tb" sink --listen "unix:$sock" >"$out/sink.out" 2>"$out/sink.err" &
sink_pid=$!
for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.1; done

echo "== peak memory of one process driving N publishers (unix raw, external sink), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
if [ $# = 0 ]; then
  read -r -a counts <<<"$(bench_count "100 1000 10000" "10 100")"
  set -- "${counts[@]}"
fi
for n in "$@"; do
  /usr/bin/time -f "%M %e" -o "$out/time.$n" \
    "$tb" run scenarios/bench-publishers.toml --out "$out/run.$n" --format json \
    --concurrency "$n" "${smoke_run_args[@]}" >"$out/run.$n.json" || true
  python3 - "$out/run.$n.json" "$out/time.$n" "$n" <<'PY'
import sys

from bench.summary import read_summary

c = read_summary(sys.argv[1]).only()
rss_kib, secs = open(sys.argv[2]).read().split()[-2:]
n = int(sys.argv[3])
mib = int(rss_kib) / 1024
print(f"  {n:>6} publishers: max RSS {mib:7.1f} MiB ({int(rss_kib) * 1024 / n:,.0f} B per publisher), "
      f"{c.publishes_ok:,} publishes, {c.error_count} errors, {float(secs):.1f} s"
      f"{'' if mib < 256 else '  OVER 256 MiB'}")
PY
done
