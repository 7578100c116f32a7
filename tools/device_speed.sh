#!/usr/bin/env bash
# Issue 9's GPU speed table in one command (at most ~8 minutes on a lent GPU):
#
#   DATA=.devdata OUT=/tmp/out bash tools/device_speed.sh
#
# Times one training step of Table 1's MNIST NODE and ANODE (batch 256, dopri5 1e-3, adjoint; the
# training loader's real batches) with the reference torchdiffeq backend, with anode's own backend,
# and with anode's backend and a torch.compile'd field, interleaved, beside the step's f-evaluation
# floor (benchmarks/image_iteration.py); the reference run also times PROCS (2) processes sharing
# the card. Then the adjoint's peak memory at low and high NFE (benchmarks/adjoint_memory.py) and the
# anode backend's bits against torchdiffeq's on the device (benchmarks/device_equality.py). It prints one table:
# step, floor, step/floor per backend, and the step against the 2019 code's steps measured on an H100
# (79 ms NODE, 57 ms ANODE; issue 9: the 2019 code itself is not run here). On a CPU it runs too, with
# BATCH=8 ITERS=2 for a quick check of the script (the 2019 comparison is then meaningless).
# Everything printed also goes to $OUT/device_speed.log.
set -u -o pipefail
DATA=${DATA:-.devdata}
OUT=${OUT:-/tmp/device-out}
ITERS=${ITERS:-10}
BATCH=${BATCH:-256}
DEVICE=${DEVICE:-}
mkdir -p "$OUT"
LOG="$OUT/device_speed.log"   # everything printed; with machine.txt, 3 JSONs and memory.json: 6 files (the tool returns 8)
: > "$LOG"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MPLBACKEND=Agg
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no GPU"
  python3 -c "import sys, torch, torchdiffeq; print(sys.version.split()[0], torch.__version__, torchdiffeq.__version__)"; } | tee "$OUT/machine.txt"
# variant = backend[+compile]: the reference, anode's backend, anode's backend with a torch.compile'd field.
# The reference run also times PROCS processes sharing the card (NODE and ANODE alternately): whether
# a window could train runs side by side. Each variant has its own timeout so that one cannot eat the rest.
for variant in torchdiffeq anode anode+compile; do
  backend=${variant%+compile}
  extra=""; [ "$variant" != "$backend" ] && extra="--compile-field"
  [ "$variant" = torchdiffeq ] && [ "${PROCS:-2}" -gt 0 ] && extra="--processes ${PROCS:-2}"
  timeout -k 5 "${VARIANT_LIMIT:-180}" python3 benchmarks/image_iteration.py --data-dir "$DATA" --iterations "$ITERS" --warmup 3 \
      --batch-size "$BATCH" --backend "$backend" $extra ${DEVICE:+--device "$DEVICE"} --json "$OUT/speed-${variant/+/-}.json" \
      2>&1 | tee -a "$LOG" || echo "image_iteration ($variant) failed" | tee -a "$LOG"
done
timeout -k 5 "${MEMORY_LIMIT:-120}" python3 benchmarks/adjoint_memory.py --batch-size "${MEM_BATCH:-64}" ${DEVICE:+--device "$DEVICE"} \
    --json "$OUT/memory.json" 2>&1 | tee -a "$LOG" || echo "adjoint_memory failed" | tee -a "$LOG"
# the anode backend's bits against torchdiffeq's on this device (cuDNN deterministic), before the table
timeout -k 5 "${EQUALITY_LIMIT:-90}" python3 benchmarks/device_equality.py --cases "${EQUALITY_CASES:-4}" \
    ${DEVICE:+--device "$DEVICE"} 2>&1 | tee -a "$LOG" || echo "device_equality failed" | tee -a "$LOG"
python3 - "$OUT" <<'PY' 2>&1 | tee -a "$LOG"
import json, os, sys
out = sys.argv[1]
ref_2019 = {"NODE": 0.079, "ANODE (p=5)": 0.057}   # seconds per step, H100, issue 9 (measured once, not rerun here)
rows = {}
concurrent = {}
for backend in ("torchdiffeq", "anode", "anode+compile"):
    path = os.path.join(out, f"speed-{backend.replace('+', '-')}.json")
    if os.path.exists(path):
        data = json.load(open(path))
        rows[backend] = data["side_by_side"]
        if "concurrent" in data:
            concurrent[backend] = data["concurrent"]
print("\n| model | backend | step ms | floor ms | step/floor | NFE fwd/bwd | 2019 step ms (H100, issue 9) | 2019 / step |")
print("|---|---|---|---|---|---|---|---|")
for backend, models in rows.items():
    for name, r in models.items():
        ref = ref_2019.get(name)
        print(f"| {name} | {backend} | {r['s_per_iteration'] * 1e3:.1f} | {r['floor_s'] * 1e3:.1f} | {r['step_over_floor']:.2f} | "
              f"{r['nfe_forward']:.1f}/{r['nfe_backward']:.1f} | {ref * 1e3 if ref else float('nan'):.0f} | "
              f"{ref / r['s_per_iteration'] if ref else float('nan'):.2f} |")
for backend, c in concurrent.items():
    print(f"\n{c['processes']} processes sharing the card ({backend}): " + ", ".join(f"{m} {t * 1e3:.1f} ms/it" for m, t in c["s_per_iteration"].items())
          + f"; throughput / one at a time: {c['throughput_vs_one_at_a_time']:.2f}")
mem = os.path.join(out, "memory.json")
if os.path.exists(mem):
    print("adjoint memory: " + json.dumps(json.load(open(mem)), default=str)[:400])
if "torchdiffeq" in rows:
    for backend in rows:
        if backend == "torchdiffeq":
            continue
        for name in rows[backend]:
            ratio = rows[backend][name]["s_per_iteration"] / rows["torchdiffeq"][name]["s_per_iteration"]
            print(f"{backend}/torchdiffeq step {name}: {ratio:.2f}")
PY
