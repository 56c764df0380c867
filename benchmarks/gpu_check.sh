#!/usr/bin/env bash
# The GPU check of the kernel runner (issue 12), one folder of results, under 6 minutes on
# one H100/H200:
#   1. independent reference figures (plain torch: 8192^3 bf16 product, 2 GiB copy)
#   2. codesign calibrate (device-sized probes, checked against the card's datasheet)
#   3. codesign validate --shapes gpu against the calibrated spec (per-kernel CSV)
#   4. codesign validate --e2e: a Llama-3.1-8B decoder (random weights), TTFT/TPOT/energy
#      measured vs predicted with the calibrated spec
# Each step is time-capped and independent: a failed step is logged and the next runs.
# Usage: benchmarks/gpu_check.sh OUTDIR   (env: CODESIGN="python -m codesign.cli", DEVICE=cuda,
#        E2E_GRID, E2E_WORKLOAD, SHAPES, LIBRARY_SPEC)
set -u
OUT=${1:-gpu-check}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
CS=${CODESIGN:-"$PY -m codesign.cli"}
DEVICE=${DEVICE:-cuda}
DTYPE=${DTYPE:-bf16}
SHAPES=${SHAPES:-gpu}
GRID=${E2E_GRID:-1x512,1x4096,16x1024,64x1024}
WORKLOAD=${E2E_WORKLOAD:-llama-3.1-8b}
LIB=${LIBRARY_SPEC:-}
export PYTHONUNBUFFERED=1
log() { echo "[$(date +%T)] $*" | tee -a "$OUT/check.log"; }
step() {   # step NAME SECONDS CMD...: run, tee its output to OUT/NAME.log, note the exit status
  local name=$1 secs=$2; shift 2
  log "start $name: $*"
  local t0=$SECONDS
  timeout "$secs" "$@" 2>&1 | tee -a "$OUT/check.log"
  local rc=${PIPESTATUS[0]}
  log "end $name: exit $rc after $((SECONDS - t0)) s"
  return 0
}
log "codesign GPU check, device $DEVICE, dtype $DTYPE"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit,driver_version --format=csv 2>&1 | tee -a "$OUT/check.log"
fi
$PY -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no cuda')" \
  2>&1 | tee -a "$OUT/check.log"
if [ -z "$LIB" ] && [ "$DEVICE" = cuda ]; then
  LIB=$($PY -c "import torch; from codesign.validate.calibrate import datasheet_for; print(datasheet_for(torch.cuda.get_device_name(0)) or '')")
fi
LIB=${LIB:-h100-sxm}
if [ "$DEVICE" = cuda ]; then
  step reference 40 $PY benchmarks/gpu_reference.py --out "$OUT/reference.json"
fi
step calibrate 150 $CS calibrate --backend torch --device "$DEVICE" --dtype "$DTYPE" --out "$OUT/gpu-cal.yaml"
SPEC="$OUT/gpu-cal.yaml"
[ -f "$SPEC" ] || { log "no calibrated spec: validating against the library spec $LIB"; SPEC=$LIB; }
step validate 120 $CS validate --hardware "$SPEC" --any-spec --backend torch --device "$DEVICE" --dtype "$DTYPE" \
  --shapes "$SHAPES" --max-time 0.25 --no-blocks --csv "$OUT/kernels.csv"
step e2e 120 $CS validate --e2e --workload "$WORKLOAD" --hardware "$SPEC" --runtime pytorch-graphs \
  --device "$DEVICE" --dtype "$DTYPE" --grid "$GRID" --generate 128 --csv "$OUT/e2e.csv"
log "done"
