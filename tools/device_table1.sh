#!/usr/bin/env bash
# A Table 1 row on a lent GPU within a fixed wall-clock allowance, in one command.
#
#   LIMIT=540 DATA=.devdata OUT=/tmp/out bash tools/device_table1.sh                    # MNIST, epochs planned
#   DATASET=cifar10 EPOCHS=1 LIMIT=450 DATA=.devdata OUT=/tmp/out bash tools/device_table1.sh  # fixed epochs
#
# 1. unless EPOCHS is given, benchmarks/image_iteration.py times NODE and ANODE iterations side by side (batch 256, adjoint)
#    and with 2 x REPEATS processes sharing the GPU;
# 2. the number of epochs is the largest that fits what is left of LIMIT (rule below, fixed before
#    any result was seen; at most the config's 20), with REPEATS repeats, all runs sharing the card
#    when that raised throughput by 30% or more and fits as many epochs;
# 3. `anode reproduce images --budget paper --repeats R --epochs E` runs under a timeout; if it is cut
#    off, the report is written from the finished runs (--report-only) and says how many finished;
# 4. the results folder (no checkpoints) is packed into $OUT/results.tgz.
set -u
START=$(date +%s)
LIMIT=${LIMIT:-540}            # seconds this script may take in all
DATA=${DATA:-.devdata}         # folder holding mnist/ (or cifar10/ ...)
DATASET=${DATASET:-mnist}
REPEATS=${REPEATS:-5}
RESULTS=${RESULTS:-docs/results/$DATASET-gpu}
OUT=${OUT:-/tmp/device-out}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MPLBACKEND=Agg
left() { echo $(( LIMIT - ($(date +%s) - START) )); }

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1
  python3 -c "import sys, torch, torchdiffeq; print(sys.version.split()[0], torch.__version__, torchdiffeq.__version__, torch.cuda.is_available())"
  nproc; } | tee "$OUT/machine.txt"

if [ -z "${EPOCHS:-}" ]; then
timeout -k 5 200 python3 benchmarks/image_iteration.py --dataset "$DATASET" --data-dir "$DATA" --iterations "${PROBE_ITERS:-8}" --warmup 3 \
    --processes $(( 2 * REPEATS )) ${PROBE_BATCH:+--batch-size $PROBE_BATCH} --json "$OUT/probe.json" 2>&1 | tee "$OUT/probe.txt"
[ -s "$OUT/probe.json" ] || { echo "probe failed"; exit 1; }
pkill -9 -f multiprocessing.spawn  # a hung concurrency probe leaves nothing behind

read -r EPOCHS JOBS < <(python3 - "$OUT/probe.json" "$(left)" "$REPEATS" "$DATASET" <<'PY'
import json, math, sys
probe, left, repeats = json.load(open(sys.argv[1])), float(sys.argv[2]), int(sys.argv[3])
its = math.ceil({"mnist": 60000, "cifar10": 50000, "svhn": 73257}[sys.argv[4]] / 256)  # iterations per epoch
avail = left - 75              # the report, figures and packing
# Allowances for NFE growth over training, test evaluation and start-up: 1.6 one run at a time (a
# cut-off then loses only the last runs), 2.0 when all runs share the card (a cut-off loses them all).
seq = probe["side_by_side"]
seq_epochs = int(avail // (repeats * sum(r["s_per_iteration"] for r in seq.values()) * its * 1.6))
conc = probe.get("concurrent", {})
conc_epochs = int(avail // (max(conc["s_per_iteration"].values()) * its * 2.0)) if conc else 0
if conc.get("throughput_vs_one_at_a_time", 0) >= 1.3 and conc_epochs >= max(seq_epochs, 1):
    epochs, jobs = conc_epochs, conc["processes"]
else:
    epochs, jobs = seq_epochs, 1
print(max(1, min(20, epochs)), jobs)
PY
)
fi
JOBS=${JOBS:-1}
echo "plan: $REPEATS repeats x $EPOCHS epochs, $JOBS runs at a time, $(left) s left" | tee "$OUT/plan.txt"

CMD=(python3 -m anode reproduce images --dataset "$DATASET" --data-dir "$DATA" --budget paper
     --repeats "$REPEATS" --epochs "$EPOCHS" --jobs "$JOBS" --out "$RESULTS" --no-progress)
RUN_FOR=$(( $(left) - 60 )); [ "$RUN_FOR" -ge 30 ] || RUN_FOR=30
timeout -k 5 "$RUN_FOR" "${CMD[@]}" 2>&1 | tee "$OUT/run.log"
STATUS=${PIPESTATUS[0]}
# 0: done; 1: done with failed runs (the report is written and counts them); else cut off or crashed
if [ "$STATUS" -ne 0 ] && [ "$STATUS" -ne 1 ]; then
  echo "cut off or failed: writing the report from the finished runs" | tee -a "$OUT/run.log"
  pkill -9 -f multiprocessing.spawn; sleep 1
  "${CMD[@]}" --report-only 2>&1 | tee -a "$OUT/run.log"
fi
tar czf "$OUT/results.tgz" --exclude=checkpoint.pt "$RESULTS"
echo "done in $(( $(date +%s) - START )) s"
