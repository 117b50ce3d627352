# Quick start: `make test` and `make run` (each creates .venv and installs once).
PYTHON ?= python3.11
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= config/config.yaml
CORES ?= all
export PATH := $(BIN):$(PATH)

.PHONY: setup test run report lint dvc-yaml restore

setup: $(STAMP)

# Reinstall only when the package's requirements change.
$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "make: $(PYTHON) not found; run 'make PYTHON=python3 ...'"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest

run: setup
	$(BIN)/snakemake --cores $(CORES) --configfile $(CONFIG)

# One self-contained page: previews, loss curves, faces kept/dropped, swaps, metrics.
report: setup
	$(BIN)/snakemake --report report.html --configfile $(CONFIG)

lint: setup
	$(BIN)/snakemake --lint --configfile $(CONFIG)

dvc-yaml: setup
	$(BIN)/facepipe dvc-yaml --configfile $(CONFIG)

restore: setup
	$(BIN)/facepipe restore --configfile $(CONFIG)
