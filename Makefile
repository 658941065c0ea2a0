# Two commands for a newcomer: `make demo` and `make test`. Everything else they need is installed here.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: help install system-deps demo test test-unit test-kafka broker-up broker-down bench chaos clean

help:
	@echo "make demo   - start a local Kafka broker, the router and the seed's workflows; show what fired"
	@echo "make test   - the whole suite against a real broker that the run starts and stops"
	@echo "make bench  - routing benchmarks (QUICK=1 for the smoke version)"
	@echo "make chaos  - faults on a 3-node cluster, verified: nothing lost, nothing twice (QUICK=1: short)"

# Java 17+ and Maven fetch and run the Kafka broker, gcc builds the router's C parts; installed from
# Debian's packages when missing.
system-deps:
	@if ! command -v java >/dev/null || ! command -v mvn >/dev/null || ! command -v gcc >/dev/null; then \
	  echo "installing Java, Maven and gcc (apt-get)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless maven gcc; \
	fi

# setup.py compiles the router's C parts (router/_route.c, router/envelope/_v1.c and _triggers.c,
# router/matching/_plan.c, router/kafka/_produce.c) in place: gcc and Python's headers.
$(STAMP): pyproject.toml setup.py router/envelope/_v1.c router/matching/_plan.c router/kafka/_produce.c router/envelope/_triggers.c \
	  router/_route.c router/_avro.h
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed"'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

install: system-deps $(STAMP)

demo: install
	$(VENV)/bin/evbus demo

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: install
	$(PY) -m pytest -m "not kafka" $(PYTEST_ARGS)

test-kafka: install
	$(PY) -m pytest -m kafka $(PYTEST_ARGS)

broker-up: install
	$(VENV)/bin/evbus kafka up

broker-down: install
	$(VENV)/bin/evbus kafka down

# Benchmarks, each beside its baseline in the same run; QUICK=1 is the seconds-long smoke version.
bench: install
	$(PY) -m benchmarks.run $(if $(QUICK),--quick,) --out bench-results/latest.json

# The chaos run on a 3-node cluster it starts and stops; QUICK=1 is the short version that `make test` runs.
chaos: install
	$(PY) -m chaos.run $(if $(QUICK),--quick,) --out chaos-results/latest.json

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis bench-results chaos-results build router/*.so router/*/*.so
