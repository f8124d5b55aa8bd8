#!/usr/bin/env bash
# The integer model on a GPU machine, in one call (a session lent the device machine runs this):
# the CUDA provider's tables against the golden hash and against the CPU provider's over the test
# split (both ways of decoding blobs), then the service curve with `serve --device cuda`.
# Results land in $OUT (or bench/results/gpu/). Needs onnxruntime-gpu (extra "gpu") there.
set -u
OUT=${OUT:-bench/results/gpu}
mkdir -p "$OUT"
PY=${PY:-python3}
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
  $PY -c "import onnxruntime as o; print(o.__version__, o.get_available_providers())"
  $PY -m rvqstream.cli selfcheck --device cpu
  $PY -m rvqstream.cli selfcheck --device cuda
} 2>&1 | tee "$OUT/selfcheck.txt"
$PY bench/intlm_check.py --device cuda --limit "${LIMIT:-300}" --out "$OUT/intlm_check_cuda.json" 2>&1 | tail -40
(cd bench && $PY load.py --device cuda --streams "${STREAMS:-300}" --seconds 15 --verify --search --search-from 100 \
   --search-step 100 --out "../$OUT/load_cuda.json") 2>&1 | tail -20
