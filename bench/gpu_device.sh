#!/usr/bin/env bash
# The GPU check of issue 18, in one run on a machine with an NVIDIA GPU (docs/gpu.md, "Benchmark"):
# install the gpu extra, run the gpu-marked tests and `make bench-gpu`, each within a time bound, and leave
# the test log and bench/results/gpu.{md,json} in $OUT (default: bench/results/device).
#
#   bash bench/gpu_device.sh            # ~6 min at most: install, tests (4 min bound), bench (6 min bound)
#
# Where the machine reaches a package index, the extra is installed with pip into a virtual environment of
# its own. Where it reaches none (this project's device machines), the wheels travel with the working tree:
# bench/gpu_wheels.sh puts them in .whl-*/ folders here (git ignores them), each small enough for one
# transfer; carry them (several runs when they do not fit in one: the folders stay on a warm machine) and
# this script installs every .whl-*/*.whl it finds, the split onnxruntime-gpu wheel put back together first,
# into a --target folder ahead of the machine's own packages (its CUDA 13 and cuDNN 9 pip packages are used).
# With the run tool (64 MiB a transfer, a machine kept warm 30 s after a call), back to back:
#   run "true" carrying .whl-deps and .whl-ort5; run "true" carrying .whl-ort1; ... .whl-ort4;
#   run "bash bench/gpu_device.sh" (timeout 600): $OUT gets gpu.md, gpu.json and the logs.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-bench/results/device}"
mkdir -p "$OUT" && OUT="$(cd "$OUT" && pwd)"  # absolute: the bench runs in bench/
PY="${GPU_PY:-python3}"
log() { echo "[gpu_device] $*" | tee -a "$OUT/gpu_device.log"; }

log "machine: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo 'no nvidia-smi')"
if compgen -G ".whl-*/*.whl*" >/dev/null; then
    SITE=/tmp/conveyor-gpu-site
    for first in .whl-*/*.whl.part-aa; do  # the parts lie in one folder each: put them in order by name
        [ -e "$first" ] || continue
        name="$(basename "${first%.part-aa}")"
        ls .whl-*/"$name".part-* | sort -t/ -k2 | xargs cat >"/tmp/$name" && log "put together $name"
    done
    wheels=(.whl-*/*.whl)
    compgen -G "/tmp/*.whl" >/dev/null && wheels+=(/tmp/*.whl)
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
        "${wheels[@]}" 2>&1 | tail -3 | tee -a "$OUT/gpu_device.log"
    export PYTHONPATH="$SITE:$PWD/src:$PWD"
    mkdir -p /tmp/conveyor-bin
    printf '#!/bin/sh\nexec %s -m conveyor.cli.main "$@"\n' "$PY" >/tmp/conveyor-bin/conveyor
    chmod +x /tmp/conveyor-bin/conveyor
    export PATH="/tmp/conveyor-bin:$PATH"
else
    "$PY" -m venv /tmp/conveyor-gpu-venv && PY=/tmp/conveyor-gpu-venv/bin/python
    "$PY" -m pip install -q -e '.[dev]' && "$PY" -m pip uninstall -q -y onnxruntime onnxruntime-gpu
    "$PY" -m pip install -q --no-deps 'onnxruntime-gpu[cuda,cudnn]==1.31.1' 'nvidia-cuda-runtime~=13.0' \
        'nvidia-cudnn-cu13~=9.0' 'nvidia-cublas' 'nvidia-cufft' 'nvidia-curand' 'nvidia-cuda-nvrtc'
    export PATH="/tmp/conveyor-gpu-venv/bin:$PATH"
fi
export PYTHONUNBUFFERED=1
log "capabilities: $("$PY" -m conveyor.runtime.providers 2>&1 | tail -1)"

timeout 240 "$PY" -m pytest -p no:cacheprovider -q -n 0 -rs tests/integration/test_gpu.py \
    tests/unit/runtime/test_providers.py tests/unit/optimize/test_fp16_devices.py 2>&1 | tee "$OUT/gpu-tests.log"
log "gpu tests exit ${PIPESTATUS[0]}"

if command -v make >/dev/null; then
    timeout 360 make --no-print-directory bench-gpu GPU_PY="$(command -v "$PY")" \
        GPU_ARGS="--duration 5 --out $OUT/gpu.md" 2>&1 | tee "$OUT/bench-gpu.log"
else  # what make bench-gpu runs
    (cd bench && timeout 360 "$PY" gpu.py --duration 5 --out "$OUT/gpu.md") 2>&1 | tee "$OUT/bench-gpu.log"
fi
log "bench-gpu exit ${PIPESTATUS[0]}"
[ -f "$OUT/gpu.md" ] && cp "$OUT/gpu.md" "$OUT/gpu.json" bench/results/ 2>/dev/null
exit 0
