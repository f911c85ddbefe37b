#!/usr/bin/env bash
# Wheels for bench/gpu_device.sh on a GPU machine that reaches no package index (this project's device
# machines: Python 3.12, x86-64, CUDA 13 and cuDNN 9 already installed as pip packages, most of the scientific
# stack too). Run here, in the repository root, with the project's .venv: the versions are the ones installed
# here. Writes .whl-deps/ (Conveyor's dependencies the machine lacks, ~20 MB) and .whl-ort1/ ... (the 255 MB
# onnxruntime-gpu wheel cut in 55 MB parts), all ignored by git (.git/info/exclude). A transfer to the device
# machine carries at most 64 MiB: carry .whl-deps with the first run and one .whl-ortN folder per later run
# (the folders stay on a warm machine), then run bench/gpu_device.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qxF '/.whl-*/' .git/info/exclude 2>/dev/null || echo '/.whl-*/' >>.git/info/exclude
PIP=(.venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any)
# Conveyor's runtime dependencies (pyproject.toml) and theirs that the device image does not have.
MISSING=(skl2onnx skops SQLAlchemy alembic Mako psycopg psycopg-binary pydantic pydantic-core annotated-types
    typing-inspection pydantic-settings python-dotenv starlette fastapi uvicorn httptools orjson structlog
    cryptography cffi pycparser greenlet prettytable wcwidth annotated-doc)
pinned=()
for name in "${MISSING[@]}"; do
    pinned+=("$name==$(.venv/bin/python -c "import importlib.metadata as m; print(m.version('$name'))")")
done
rm -rf .whl-deps .whl-ort*
"${PIP[@]}" -d .whl-deps "${pinned[@]}"
"${PIP[@]}" -d /tmp/conveyor-ort-gpu 'onnxruntime-gpu==1.31.1'
wheel=$(ls /tmp/conveyor-ort-gpu/onnxruntime_gpu-1.31.1-cp312-*.whl)
mkdir -p /tmp/conveyor-ort-parts && rm -f /tmp/conveyor-ort-parts/*
split -b 55m -a 2 "$wheel" "/tmp/conveyor-ort-parts/$(basename "$wheel").part-"
n=0
for part in /tmp/conveyor-ort-parts/*; do
    n=$((n + 1))
    mkdir -p ".whl-ort$n" && mv "$part" ".whl-ort$n/"
done
du -sh .whl-deps .whl-ort*
