#!/usr/bin/env bash
# GPU benchmark on a fresh CUDA machine: check and install what is missing, run
# benchmarks/gpu_train.py once, write gpu_train.json, gpu_train.md and gpu_train.log under $OUT.
#
#   OUT=/tmp/gpu bash benchmarks/gpu/run.sh            # from the repository root, any CUDA machine
#
# On the project's device machine (no package index there) the optional albumentations row needs
# wheels carried in .whl/ (benchmarks/gpu/fetch_wheels.sh prepares them; pass .whl in `carry`).
# Without them that row is skipped; everything else needs only torch, lightning, numpy, scipy,
# opencv, pyyaml and matplotlib, which that machine's image has. DALI cannot be carried (its wheel
# is larger than a call may carry): the DALI row runs only where nvidia-dali is installed.
# Budget: about 8 minutes in all; rows started after --budget-s are recorded as skipped.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
LOG="$OUT/gpu_train.log"
PY=${PYTHON:-python3}
{
  echo "== $(date -u +%FT%TZ) gpu benchmark, repo $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || echo "nvidia-smi unavailable"
  if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    echo "== installing carried wheels: $(ls .whl | tr '\n' ' ')"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
      && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
  fi
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
  "$PY" - <<'PYEOF' || exit 3
import importlib, sys
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if not torch.cuda.is_available():
    sys.exit("no CUDA device: run `python benchmarks/gpu_train.py --tiny` on a CPU instead")
missing = []
for name in ("lightning", "numpy", "scipy", "cv2", "yaml", "matplotlib"):
    try:
        importlib.import_module(name)
    except ImportError:
        missing.append(name)
if missing:
    sys.exit(f"missing packages {missing}: pip install them (or carry wheels in .whl/)")
for name in ("albumentations", "nvidia.dali"):
    try:
        importlib.import_module(name)
        print(name, "installed")
    except ImportError:
        print(name, "not installed: its row is skipped")
PYEOF
  timeout 500 "$PY" benchmarks/gpu_train.py --out "$OUT/gpu_train.json" --budget-s "${BUDGET_S:-330}"
  echo "== exit $? at $(date -u +%FT%TZ)"
} 2>&1 | tee "$LOG"
