# mile: reproduce the MILE (MICCAI 2024) experiment grid on a CPU.
# `make test` is the test command; `make demo` runs a reduced grid on synthetic data.

SHELL := /bin/bash
SWIFT ?= swift
# Real datasets (never committed). Override on the command line or in the environment.
SLAKE_DIR ?= ../shared/data/slake/Slake1.0
RAD_DIR ?= ../shared/data/vqa-rad
export SLAKE_DIR RAD_DIR

DEB_PACKAGES := libopenblas-dev libpng-dev libjpeg-dev libsqlite3-dev pkg-config
RELEASE_BIN := .build/release/mile

.PHONY: deps build release test bench-engine bench-peer peer-venv parity-golden demo clean

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
	$(SWIFT) build -c release --product mile

test: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build

bench-engine: deps
	$(SWIFT) build -c release --product EngineBench
	.build/release/EngineBench

# PyTorch peer (bench/torch_peer.py): a venv with CPU torch and numpy, created on first use.
PEER_VENV := bench/.venv
PEER_PY := $(PEER_VENV)/bin/python
PEER_TORCH ?= torch==2.13.0+cpu
# Extra arguments for the benchmark, e.g. PEER_ARGS="--rounds 5 --steps 5 --json peer.json".
PEER_ARGS ?=

peer-venv:
	@test -x $(PEER_PY) || python3 -m venv $(PEER_VENV)
	@$(PEER_PY) -c "import torch, numpy" 2>/dev/null || $(PEER_PY) -m pip install -q "$(PEER_TORCH)" numpy \
	  || $(PEER_PY) -m pip install -q torch numpy --index-url https://download.pytorch.org/whl/cpu

# Engine vs PyTorch on the small preset: batch 32, fp32, 2 threads, alternating (docs/PARITY.md).
bench-peer: deps peer-venv
	$(SWIFT) build -c release --product PeerBench
	$(PEER_PY) bench/torch_peer.py bench --engine .build/release/PeerBench --work .build/peer-bench $(PEER_ARGS)

# Regenerates the parity fixtures checked by `swift test` (ParityTests) from the PyTorch peer.
parity-golden: deps peer-venv
	$(SWIFT) build -c release --product PeerBench
	.build/release/PeerBench export --cases bench/parity_cases.json --dir .build/parity-export
	$(PEER_PY) bench/torch_peer.py golden --cases bench/parity_cases.json --dir .build/parity-export \
	  --out-dir Tests/MileModelTests/Fixtures

clean:
	rm -rf .build
