#!/usr/bin/env bash
# Add finished Table 1 runs (the authors' protocol: 20 epochs, batch 256, dopri5 1e-3, adjoint) to
# docs/results/table1/ within a fixed wall-clock allowance on a lent GPU, in one command:
#
#   LIMIT=480 DATA=.devdata DATASETS="mnist cifar10" OUT=/tmp/out bash tools/device_table1.sh
#
# For each dataset in turn, while time is left: `anode table1 --minutes M` continues the run in
# progress (from its committed checkpoint), plans the missing runs that fit whole (seconds per epoch
# from the finished runs already in the folder, else from the runs in progress, else a short probe
# of the models with neither; alternating NODE and ANODE so both sides grow), trains them one at a
# time, rewrites the dataset's report ("k of 5 repeats"), and trains one more run in the minutes
# left, asking it to stop (SIGTERM) shortly before time: it checkpoints where it stands, mid-epoch
# included, travels as that checkpoint and the next window resumes it exactly there. (One
# MNIST run takes 9 (ANODE) to about 17 (NODE, whose epochs slow from 33 to 56 s as its NFE grows)
# minutes on an H100, more than a window holds; so the first dataset in DATASETS takes whole
# windows until its 10 runs are done.) An outer timeout guards the whole call.
# Then the folder's whole committed state is packed into $OUT/table1.tgz: on the development
# machine replace the folder with it,
#   rm -rf docs/results/table1 && tar xzf table1.tgz -C docs/results && git add -A docs/results/table1
# and commit. A fingerprint mismatch (another config or anode version) stops with exit 2.
set -u
START=$(date +%s)
LIMIT=${LIMIT:-480}                 # seconds this script may take in all
DATA=${DATA:-.devdata}              # folder holding mnist/ cifar10/ ...
DATASETS=${DATASETS:-mnist cifar10}
RESULTS=${RESULTS:-docs/results/table1}
OUT=${OUT:-/tmp/device-out}
RESERVE=${RESERVE:-45}              # seconds kept for start-up, the probe, the report and packing
CONFIG=${CONFIG:-}                  # a config file instead of the built-in one (CPU test of this script)
DEVICE=${DEVICE:-}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MPLBACKEND=Agg
left() { echo $(( LIMIT - ($(date +%s) - START) )); }

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no GPU"
  python3 -c "import sys, torch, torchdiffeq; print(sys.version.split()[0], torch.__version__, torchdiffeq.__version__, torch.cuda.is_available())"
  nproc; } | tee "$OUT/machine.txt"

status=0
for DATASET in $DATASETS; do
  BUDGET=$(( $(left) - RESERVE ))
  if [ "$BUDGET" -lt 60 ]; then echo "skip $DATASET: $(left) s left" | tee -a "$OUT/run.log"; continue; fi
  MINUTES=$(python3 -c "print(round($BUDGET / 60, 2))")
  echo "== $DATASET: $MINUTES min of training planned, $(left) s left" | tee -a "$OUT/run.log"
  timeout -k 5 $(( $(left) - 10 )) python3 -m anode table1 --dataset "$DATASET" --data-dir "$DATA" --minutes "$MINUTES" \
      --results "$RESULTS" --no-progress ${CONFIG:+--config "$CONFIG"} ${DEVICE:+--device "$DEVICE"} 2>&1 | tee -a "$OUT/run.log"
  rc=${PIPESTATUS[0]}
  echo "exit $rc" | tee -a "$OUT/run.log"
  case $rc in
    0) ;;
    1) status=1 ;;                          # a run failed in the solver: it is evidence, keep going
    2) exit 2 ;;                            # setup error or fingerprint mismatch: nothing to pack
    *) status=1; echo "cut off by the outer timeout: a run with a checkpoint is packed and resumes next time" | tee -a "$OUT/run.log" ;;
  esac
done
python3 -c "import sys; from anode.lab.table1 import pack_results; print(len(pack_results(sys.argv[1], sys.argv[2])), 'files packed')" \
    "$RESULTS" "$OUT/table1.tgz" | tee -a "$OUT/run.log"
echo "done in $(( $(date +%s) - START )) s"
exit $status
