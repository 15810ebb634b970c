#!/bin/bash
# The H200 engine runs in data/measurements/h200-engine-runs/, measured with mini_engine.py on one GPU.
#   bash tools/engines/measure_h200_runs.sh      (from the repository root, on the GPU machine; ~7 minutes)
# Workloads: the 500 requests of data/measurements/h100-engine-run/workload.csv with arrival times divided
# by 1, 2 and 3. Two serve invocations share nothing but the GPU: the full KV pool, then a 48k-token pool
# (--num-blocks 3001: block 0 is the padding sink, 3000 x 16 = 48,000 usable tokens). Results: $OUT/*.tgz.
set -e
HERE="$(cd "$(dirname "$0")" && pwd)"
WL=/tmp/workloads; mkdir -p "$WL"
python3 - "$HERE/../../data/measurements/h100-engine-run/workload.csv" "$WL" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
for s in (1, 2, 3):
    with open(f"{sys.argv[2]}/wl_{s}x.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["request_id", "arrival_s", "prompt_tokens", "output_tokens", "trace_row"])
        for r in rows:
            w.writerow([r["request_id"], f"{float(r['arrival_s']) / s:.6f}", r["prompt_tokens"],
                        r["output_tokens"], r["trace_row"]])
PY
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/h200-runs}; mkdir -p "$OUT"
date -u +%Y-%m-%dT%H:%M:%SZ | tee "$OUT/date.txt"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader | tee -a "$OUT/date.txt"
ME="python3 $HERE/mini_engine.py serve --skip-latency"
timeout 415 $ME --out /tmp/me_full --tar "$OUT/full.tgz" --deadline 400 \
  --run base_fcfs_6rps:fcfs:$WL/wl_1x.csv --run fcfs_12rps:fcfs:$WL/wl_2x.csv \
  --run fcfs_18rps:fcfs:$WL/wl_3x.csv --run chunked_6rps:chunked:$WL/wl_1x.csv \
  --run chunked_12rps:chunked:$WL/wl_2x.csv 2>&1 | grep -v "^kernel_check"
timeout 170 $ME --out /tmp/me_kv --tar "$OUT/kv48k.tgz" --num-blocks 3001 --deadline 160 \
  --run kv48k_fcfs_12rps:fcfs:$WL/wl_2x.csv --run kv48k_chunked_12rps:chunked:$WL/wl_2x.csv 2>&1 \
  | grep -v "^kernel_check"
