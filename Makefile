# Two commands for a new user: `make test` and `make demo`. Both set up .venv from nothing.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install test test-cluster test-fast lint demo clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# ruff, and the import-linter contracts in pyproject.toml (the stages import one way only).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

# Lint, the unit tests, Ray integration and real data: everything but the cluster tier.
# RAYSYS_RELIABILITY=fresh: the fault tests' record file starts afresh (tests/conftest.py).
test: $(STAMP) lint
	RAYSYS_RELIABILITY=fresh PYTHONFAULTHANDLER=1 $(PY) -m pytest -q --durations=15 -m "not cluster"

# The cluster tier, after `make test` (tests marked `cluster`): simulated nodes, the autoscaler,
# a submitted job, and more Rays beside the shared one (two commands, Ctrl+C, token auth). RAYSYS_RELIABILITY=check: every
# fault test of both tiers must have left its record, and benchmarks/RELIABILITY.md is rebuilt.
test-cluster: $(STAMP)
	RAYSYS_RELIABILITY=check PYTHONFAULTHANDLER=1 $(PY) -m pytest -q --durations=10 -m cluster

# Everything but the slow real-data tests: for every edit.
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

# The card's main job on the embedded demo data: experiment 2.3 with the micro ViT.
demo: $(STAMP)
	$(PY) sweeps/label_smoothing.py

clean:
	rm -rf $(VENV) results/demo
