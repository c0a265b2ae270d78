"""Reads an HdrHistogram interval log with the Python hdrhistogram package (an implementation independent of
taskbench's) and prints, as JSON, its start time and each interval: tag, start and end (ms since the epoch),
count, p50, p99 and max. Usage: read_hlog.py FILE.hlog"""
import json
import sys

from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader

reader = HistogramLogReader(sys.argv[1], HdrHistogram(1, 600_000_000_000, 3))
intervals = []
while True:
    h = reader.get_next_interval_histogram()
    if h is None:
        break
    n = h.get_total_count()
    intervals.append({
        "tag": h.get_tag(),
        "start_ms": h.get_start_time_stamp(),
        "end_ms": h.get_end_time_stamp(),
        "count": n,
        "p50": h.get_value_at_percentile(50) if n else None,
        "p99": h.get_value_at_percentile(99) if n else None,
        "max": h.get_max_value() if n else None,
    })
print(json.dumps({"start_time_sec": reader.get_start_time_sec(), "intervals": intervals}))
