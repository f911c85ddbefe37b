# Conveyor: `make demo` runs the main job end to end, `make test` runs the whole suite.
# Both create and use .venv themselves on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# Two installs: the package alone (what `make demo` and users need: CPU-only, no torch) and the package with
# the dev and torch extras (tests, lint, docs, benchmarks).
BASE_STAMP := $(VENV)/.installed-base
STAMP := $(VENV)/.installed-dev

.PHONY: demo test lint typecheck check clean install install-dev system-deps hey docs bench bench-rollout proto

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(BASE_STAMP): pyproject.toml | $(PY)
	$(PIP) install -q -e .
	touch $@

# torch comes from the package registries only (CI reaches nothing else; its pip finds the CPU build on disk).
# On a machine whose index serves the CUDA build, install CPU-only torch first (README, "Install").
$(STAMP): pyproject.toml | $(PY)
	$(PIP) install -q -e '.[dev,torch]'
	touch $@ $(BASE_STAMP)

install: $(BASE_STAMP)

install-dev: $(STAMP)

# Debian packages the tests use (apt-get: needs root): PostgreSQL 15 for the registry tests, hey as the load generator of the
# deployment tests (zero failed requests under load), chromium for the dashboard's browser test (Playwright drives it).
system-deps: hey
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	fi
	@command -v prometheus >/dev/null 2>&1 || { echo "installing prometheus (Debian)"; apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null; }
	@command -v chromium >/dev/null 2>&1 || { echo "installing chromium (Debian)"; apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

hey:
	@command -v hey >/dev/null 2>&1 || { echo "installing hey (Debian)"; apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hey >/dev/null; }

demo: $(BASE_STAMP)
	$(PY) examples/demo.py

test: $(STAMP) system-deps
	$(PY) -m pytest -q -n 2 --dist loadfile --durations=30

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests examples
	$(VENV)/bin/ruff format --check src tests examples

typecheck: $(STAMP)
	$(VENV)/bin/mypy src tests

check: lint typecheck test

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache

# docs/cli.md is generated from the Typer app, so it always matches the code (a test checks it).
docs: $(STAMP)
	$(VENV)/bin/typer conveyor.cli.app utils docs --name conveyor --title "CLI reference" --output docs/cli.md

# The gRPC messages and stubs are generated from the vendored .proto and committed; regenerate after editing it.
PROTO := src/conveyor/protocol/grpc/inference.proto
proto: $(STAMP)
	$(PY) -m grpc_tools.protoc -I src --python_out=src --pyi_out=src --grpc_python_out=src $(PROTO)

# Conveyor against its peers (MLServer, BentoML, Ray Serve, a lean Starlette app) on this machine, ~15 min.
# Peer venvs go to bench/.venvs (reused); results to bench/results. Quick runs: make bench BENCH_ARGS="--models
# tiny --servers conveyor,lean --duration 5" (see python bench/run.py --help).
bench: $(STAMP) hey
	$(PY) bench/run.py $(BENCH_ARGS)

# Version changes under load through `conveyor up` (~30 s): rollout times and the clients' errors (0 expected).
bench-rollout: $(STAMP) hey
	$(PY) bench/rollout.py $(ROLLOUT_ARGS)

# Fused models (conveyor fuse: an ensemble, a pipeline) against their parts called one after another, in-process
# and through `conveyor serve` (~2 min). Results to bench/results/fuse.{json,md}; see python bench/fuse.py --help.
.PHONY: bench-fuse
bench-fuse: $(STAMP)
	$(PY) bench/fuse.py $(FUSE_ARGS)

# Conveyor on a GPU beside raw ONNX Runtime on the device, the cnn and a ResNet-18-sized CNN, CPU rows beside
# them (~2 min; without a GPU only the CPU rows, and the report says so). Results to bench/results/gpu.{md,json};
# see python bench/gpu.py --help and docs/gpu.md. GPU_PY: an interpreter that has the gpu extra (bench/gpu_device.sh).
GPU_PY ?= $(PY)
.PHONY: bench-gpu
bench-gpu: $(if $(filter $(PY),$(GPU_PY)),$(STAMP))
	cd bench && timeout 900 $(abspath $(GPU_PY)) gpu.py $(GPU_ARGS)
