# mile: reproduce the MILE (MICCAI 2024) experiment grid on a CPU.
# `make test` is the test command; `make demo` runs a reduced grid on synthetic data.

SHELL := /bin/bash
SWIFT ?= swift
# Real datasets (never committed). Override on the command line or in the environment.
SLAKE_DIR ?= ../shared/data/slake/Slake1.0
RAD_DIR ?= ../shared/data/vqa-rad
# Exported only when present: tests that need the real data skip when the variables are unset.
ifneq ($(wildcard $(SLAKE_DIR)/test.json),)
export SLAKE_DIR
endif
ifneq ($(wildcard $(RAD_DIR)/images),)
export RAD_DIR
endif

DEB_PACKAGES := libopenblas-dev libpng-dev libjpeg-dev libsqlite3-dev pkg-config
# Release builds on an x86-64 CPU with AVX2 and FMA (Haswell, 2013, or later) target it, so the engine's
# element-wise loops use 256-bit vectors: full fine-tuning steps about 10 % faster, inference more, with
# identical losses and answers (Swift does not contract a*b+c into FMA). RELEASE_FLAGS= turns it off.
ifeq ($(shell grep -qw avx2 /proc/cpuinfo 2>/dev/null && grep -qw fma /proc/cpuinfo && echo yes),yes)
RELEASE_FLAGS ?= -Xswiftc -target-cpu -Xswiftc haswell
endif
RELEASE_BIN := .build/release/mile

REPRODUCE := reproduce-table1 reproduce-table2 reproduce-table3 reproduce-table4 reproduce-table5
.PHONY: deps build release test slurm-test kill-test bench-engine bench-conv bench-peer peer-venv memory-peer parity-golden demo clean check-data mlflow-venv mlflow-export mlflow-check \
        instruction-data reproduce-all rerun $(REPRODUCE)

# Install the Debian packages the build needs, only when one is missing.
deps:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release $(RELEASE_FLAGS) --product mile

test: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build

# A real single-node SLURM (installed through apt-get when missing, started and stopped by tools/slurm-ci.sh)
# running smoke grids through `mile submit --slurm` (docs/SLURM.md); about 3 minutes on 2 cores.
slurm-test: build
	tools/slurm-ci.sh .build/debug/mile

# Randomized kill test (issue 20): a smoke grid SIGKILLed at random moments and restarted must end with the
# uninterrupted grid's scores, losses, predictions and base (tools/kill-test.sh; about a minute on 2 cores).
# KILL_SEED=N repeats the moments of an earlier run; KILLS=N sets how many kills must land.
KILLS ?= 5
kill-test: build
	tools/kill-test.sh .build/debug/mile $(KILLS)

bench-engine: deps
	$(SWIFT) build -c release $(RELEASE_FLAGS) --product EngineBench
	.build/release/EngineBench

# PyTorch peer (bench/torch_peer.py): a venv with CPU torch and numpy, created on first use.
PEER_VENV := bench/.venv
PEER_PY := $(PEER_VENV)/bin/python
PEER_TORCH ?= torch==2.13.0+cpu
# Extra arguments for the benchmark, e.g. PEER_ARGS="--rounds 5 --steps 5 --json peer.json".
PEER_ARGS ?=

peer-venv:
	@test -x $(PEER_PY) || python3 -m venv $(PEER_VENV)
	@$(PEER_PY) -c "import torch, numpy" 2>/dev/null || $(PEER_PY) -m pip install -q "$(PEER_TORCH)" numpy

# conv2d on ResNet-50 stage shapes (BiomedGPT-Tiny's trunk): engine against F.conv2d, batch 2, 2 threads.
bench-conv: deps peer-venv
	$(SWIFT) build -c release $(RELEASE_FLAGS) --product EngineBench
	$(PEER_PY) bench/torch_peer.py conv --engine .build/release/EngineBench

# Engine vs PyTorch on the small preset: batch 32, fp32, 2 threads, alternating (docs/PARITY.md).
bench-peer: deps peer-venv
	$(SWIFT) build -c release $(RELEASE_FLAGS) --product PeerBench
	$(PEER_PY) bench/torch_peer.py bench --engine .build/release/PeerBench --work .build/peer-bench $(PEER_ARGS)
	$(PEER_PY) bench/torch_peer.py cache-check --dir .build/peer-bench

# MLflow: one run per finished cell in an MLflow SQLite backend (tools/mlflow_export.py; docs/HARNESS.md).
# The cell files come from `mile report` / `mile export`; MLFLOW_DB and MLFLOW_RESULTS pick other paths.
MLFLOW_VENV := .build/mlflow-venv
MLFLOW_PY := $(MLFLOW_VENV)/bin/python
MLFLOW_DB ?= mlflow.db
MLFLOW_RESULTS ?= results

mlflow-venv:
	@python3 -c "import venv, ensurepip" 2>/dev/null || { if [ "$$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq python3 python3-venv; }
	@test -x $(MLFLOW_PY) || python3 -m venv $(MLFLOW_VENV)
	@$(MLFLOW_PY) -c "import mlflow, sqlalchemy, alembic" 2>/dev/null || $(MLFLOW_PY) -m pip install -q -r tools/mlflow-requirements.txt

mlflow-export: mlflow-venv
	$(MLFLOW_PY) tools/mlflow_export.py --results $(MLFLOW_RESULTS) --db $(MLFLOW_DB) --artifacts $(dir $(MLFLOW_DB))mlflow-artifacts

# CI: the committed cell files imported into a scratch MLflow backend and read back through the client.
mlflow-check: mlflow-venv
	rm -rf .build/mlflow-check && mkdir -p .build/mlflow-check
	$(MLFLOW_PY) tools/mlflow_export.py --results $(MLFLOW_RESULTS) --db .build/mlflow-check/mlflow.db --artifacts .build/mlflow-check/artifacts
	$(MLFLOW_PY) tools/mlflow_export.py --results $(MLFLOW_RESULTS) --db .build/mlflow-check/mlflow.db --artifacts .build/mlflow-check/artifacts
	$(MLFLOW_PY) tools/mlflow_export.py --check --results $(MLFLOW_RESULTS) --db .build/mlflow-check/mlflow.db

# PyTorch-equivalent Memory of the paper's 23 cells (issue 15; bench/torch_memory.py, docs/MODEL.md): the peer's
# paper-scale MISS on the meta device (no arithmetic) plus a batch-1 CPU cross-check; about 6 minutes on one core.
# Writes bench/memory_pytorch.json, which the report's Memory column and `mile params --json` read.
memory-peer: peer-venv
	nice -n 19 $(PEER_PY) bench/torch_memory.py --cpu-check --out bench/memory_pytorch.json

# Regenerates the parity fixtures checked by `swift test` (ParityTests) from the PyTorch peer.
parity-golden: deps peer-venv
	$(SWIFT) build -c release $(RELEASE_FLAGS) --product PeerBench
	.build/release/PeerBench export --cases bench/parity_cases.json --dir .build/parity-export
	$(PEER_PY) bench/torch_peer.py golden --cases bench/parity_cases.json --dir .build/parity-export \
	  --out-dir Tests/MileModelTests/Fixtures

# ---- run pipeline (docs/PIPELINE.md) ----
DB ?= results/mile.db
DEMO_DATA ?= demo-data/synth
TABLES := experiments/table1.yaml experiments/table2.yaml experiments/table3.yaml experiments/table4.yaml experiments/table5.yaml
RUN_ARGS ?=
# Worker processes per run (`mile run --jobs`): on 2 cores two single-threaded workers finish a table
# about twice as fast as one two-threaded process (docs/PIPELINE.md). JOBS=1 runs in one process.
JOBS ?= 2

# Dataset-free demo: synthetic SLAKE, small base, 4 cells of Table 1, results/demo.md.
demo: release
	@test -f $(DEMO_DATA)/test.json || $(RELEASE_BIN) data synth --out $(DEMO_DATA) --images 200
	$(RELEASE_BIN) run experiments/demo.yaml --slake $(DEMO_DATA) --db results/demo.db --out results --jobs $(JOBS) $(RUN_ARGS)
	@echo "demo report: results/demo.md"

# Stops with instructions when SLAKE or VQA-RAD is missing, then validates both.
check-data: release
	@if [ ! -f "$(SLAKE_DIR)/test.json" ]; then \
	  echo "SLAKE not found: $(SLAKE_DIR)/test.json does not exist."; \
	  echo "Download SLAKE 1.0 from https://www.med-vqa.com/slake/ (Slake1.0 with train.json, validate.json, test.json, imgs/)"; \
	  echo "and run: make $(MAKECMDGOALS) SLAKE_DIR=/path/to/Slake1.0  (VQA-RAD: RAD_DIR=/path/to/vqa-rad, from https://osf.io/89kps/)"; \
	  echo "No dataset? 'make demo' runs on synthetic data."; exit 1; fi
	@if [ ! -f "$(RAD_DIR)/VQA_RAD Dataset Public.json" ]; then \
	  echo "VQA-RAD not found: '$(RAD_DIR)/VQA_RAD Dataset Public.json' does not exist."; \
	  echo "Download VQA-RAD from https://osf.io/89kps/ and run with RAD_DIR=/path/to/vqa-rad (folder with the JSON and images/)."; exit 1; fi
	$(RELEASE_BIN) data check --slake "$(SLAKE_DIR)" --rad "$(RAD_DIR)" --no-decode

# The MILE instruction file (SLAKE train + VQA-RAD train), for inspection; `mile run` builds the same records.
instruction-data: check-data
	$(RELEASE_BIN) data instructions --slake "$(SLAKE_DIR)" --rad "$(RAD_DIR)" --out Instruction_dataset/instruction_data.json

$(REPRODUCE): reproduce-table%: instruction-data
	time $(RELEASE_BIN) run experiments/table$*.yaml --db $(DB) --out results --jobs $(JOBS) $(RUN_ARGS)

reproduce-all: instruction-data
	time $(RELEASE_BIN) run $(TABLES) --db $(DB) --out results --jobs $(JOBS) $(RUN_ARGS)

# Reruns one cell (id prefix or row label) wherever it appears and re-renders the tables.
rerun:
	@if [ -z "$(CELL)" ]; then echo "usage: make rerun CELL=<cell id prefix or row label>"; exit 1; fi
	@$(MAKE) --no-print-directory check-data
	$(RELEASE_BIN) run $(TABLES) --cell "$(CELL)" --force --db $(DB) --out results $(RUN_ARGS)

clean:
	rm -rf .build
