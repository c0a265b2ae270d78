#!/usr/bin/env bash
# Benchmark: the raw unix path against its floor. A bare loop (bench/bare_write.c, built here with cc) writes
# the frame taskbench publishes (captured from taskbench itself: tasks.add(2, 2), about 940 bytes with its
# length prefix; the pid in its origin header moves it by a byte or two) with one write() each to a reader
# thread over a Unix stream socket; `taskbench run` publishes the
# same on backend unix, path raw, one publisher, stage timing on, to its embedded sink
# (scenarios/bench-raw.toml's unix-raw-stages-on). The two alternate, and each round prints both rates and
# the ratio taskbench/bare: the share of the physical limit taskbench reaches; the last line is the median
# ratio over the rounds (issue 18 asks for at least 0.85).
# Usage: bench/floor-raw.sh [ROUNDS] [PUBLISHES]   (default 3 rounds of 2,000,000, after 20,000 warm-up)
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
rounds=${1:-$(bench_count 3 1)}
publishes=${2:-$(bench_count 2000000 2000)}
warmup=$(bench_count 20000 100)
tb=$(bench_taskbench)
out=$(mktemp -d)
capture_pid=
cleanup() {
  if [ -n "$capture_pid" ]; then kill "$capture_pid" 2>/dev/null || true; fi
  rm -rf "$out"
}
trap cleanup EXIT

cc -O2 -pthread -o "$out/bare_write" bench/bare_write.c

# The frame as taskbench writes it: one publish of the scenario's task to a socket whose reader keeps it.
python3 - "$out/capture.sock" "$out/frame" <<'PY' &
import socket
import sys

server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(sys.argv[1])
server.listen(1)
conn, _ = server.accept()
data = b""
while chunk := conn.recv(65536):
    data += chunk
if len(data) < 5 or int.from_bytes(data[:4], "big") != len(data) - 4:
    sys.exit(f"captured {len(data)} bytes, not one frame")
with open(sys.argv[2], "wb") as f:
    f.write(data)
PY
capture_pid=$!
for _ in $(seq 50); do [ -S "$out/capture.sock" ] && break; sleep 0.1; done
cat >"$out/capture.toml" <<TOML
name = "floor-raw-capture"
publishes = 1
warmup = 0
[[case]]
name = "capture"
backend = "unix"
path = "raw"
address = "$out/capture.sock"
TOML
"$tb" run "$out/capture.toml" --out "$out/capture" --format json >/dev/null
wait "$capture_pid"
capture_pid=
frame_bytes=$(stat -c %s "$out/frame")

echo "== raw unix path against a bare write loop of the same ${frame_bytes}-byte frame: $publishes per run" \
  "after $warmup warm-up, $rounds rounds; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$rounds"); do
  bare=$("$out/bare_write" "$out/frame" "$publishes" "$warmup")
  "$tb" run scenarios/bench-raw.toml --case unix-raw-stages-on --publishes "$publishes" --warmup "$warmup" \
    --out "$out/run.$r" --format json >"$out/run.$r.json"
  python3 - "$out/run.$r.json" "$r" "$bare" "$out/ratios" <<'PY'
import sys

from bench.summary import read_summary

c = read_summary(sys.argv[1]).only()
round_, bare = sys.argv[2], sys.argv[3]
bare_rate = float(bare.split()[-2])
print(f"  round {round_}: bare {bare_rate:>10,.0f} frames/s   taskbench {c.throughput_per_s:>10,.0f}/s"
      f" (p50 {c.latency_ns.p50_us:.2f} µs, errors {c.error_count}, delivered {c.delivered})"
      f"   taskbench/bare {c.throughput_per_s / bare_rate:.2f}")
with open(sys.argv[4], "a") as f:
    f.write(f"{c.throughput_per_s / bare_rate}\n")
PY
done
python3 - "$out/ratios" <<'PY'
import statistics
import sys

ratios = [float(line) for line in open(sys.argv[1])]
print(f"== median taskbench/bare over {len(ratios)} rounds: {statistics.median(ratios):.2f}"
      f" (min {min(ratios):.2f}, max {max(ratios):.2f})")
PY
echo "== load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
