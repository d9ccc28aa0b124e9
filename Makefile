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

.PHONY: deps build release test bench-engine demo clean

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

clean:
	rm -rf .build
