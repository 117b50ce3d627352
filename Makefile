# Quick start: `make test` and `make run` (each creates .venv and installs once).
PYTHON ?= python3.11
VENV := .venv
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed
CONFIG ?= config/config.yaml
CORES ?= all
export PATH := $(BIN):$(PATH)

# Which build of JAX `make setup` installs (README, "GPU"): auto (CUDA when nvidia-smi
# lists a GPU, else CPU), cpu, cuda (CUDA 13) or cuda12 (CUDA 12: drivers < 580, GPUs
# older than Turing). The extras `cuda` and `cuda12` are in pyproject.toml.
ACCEL ?= auto

# auto: prints "<build> <why>". CUDA 13 needs driver >= 580 and compute capability >= 7.5;
# only when nvidia-smi says the driver or a GPU is older is it CUDA 12. ($(shell) joins
# the lines, hence the semicolons.)
define DETECT_ACCEL
gpus=$$(nvidia-smi -L 2>/dev/null | sed -n 's/^GPU [0-9][0-9]*: \(.*\) (UUID: .*/\1/p');
if [ -z "$$gpus" ]; then echo "cpu no GPU found; ACCEL=cuda to force"; exit 0; fi;
count=$$(printf '%s\n' "$$gpus" | wc -l | tr -d ' ');
name=$$(printf '%s\n' "$$gpus" | head -n 1);
if [ "$$count" -gt 1 ]; then name="$$count x $$name"; fi;
nvidia-smi --query-gpu=driver_version,compute_cap --format=csv,noheader 2>/dev/null | awk -F ', *' -v name="$$name" '
  $$1 ~ /^[0-9]+[.0-9]*$$/ && $$2 ~ /^[0-9]+\.[0-9]+$$/ { driver = $$1; if (cap == "" || $$2 + 0 < cap + 0) cap = $$2 };
  END {
    if (driver != "" && (driver + 0 < 580 || cap + 0 < 7.5))
      print "cuda12 nvidia-smi found: " name ", driver " driver ", compute capability " cap "; CUDA 13 needs driver 580+ and 7.5+";
    else
      print "cuda nvidia-smi found: " name
  }'
endef

BUILDS := cpu cuda cuda12
ifeq ($(ACCEL),auto)
  DETECTED := $(shell $(DETECT_ACCEL))
  BUILD := $(firstword $(DETECTED))
  WHY := $(wordlist 2,1000,$(DETECTED))
  ifeq ($(filter $(BUILD),$(BUILDS)),)
    $(error ACCEL=auto: could not tell whether there is a GPU ($(DETECTED)); use ACCEL=cpu or cuda)
  endif
else ifeq ($(and $(filter 1,$(words $(ACCEL))),$(filter $(ACCEL),$(BUILDS))),)
  $(error ACCEL=$(ACCEL) is not a known accelerator; use ACCEL=auto, cpu, cuda or cuda12)
else
  BUILD := $(ACCEL)
  WHY := ACCEL=$(ACCEL)
endif
BUILD_NAME.cpu := CPU
BUILD_NAME.cuda := CUDA
BUILD_NAME.cuda12 := CUDA 12
EXTRAS.cpu := test
EXTRAS.cuda := test,cuda
EXTRAS.cuda12 := test,cuda12
# JAX's CUDA plugins of the other builds: a leftover one would still claim the GPU.
REMOVE.cpu := jax-cuda13-plugin jax-cuda13-pjrt jax-cuda12-plugin jax-cuda12-pjrt
REMOVE.cuda := jax-cuda12-plugin jax-cuda12-pjrt
REMOVE.cuda12 := jax-cuda13-plugin jax-cuda13-pjrt

.PHONY: setup test run report lint dvc-yaml restore accel-changed

setup: $(STAMP)

# Reinstall when the package's requirements change, or when the stamp, which records the
# build installed (empty, from before ACCEL: cpu), is not the one chosen now.
INSTALLED := $(shell cat $(STAMP) 2>/dev/null)
ifneq ($(or $(INSTALLED),cpu),$(BUILD))
$(STAMP): accel-changed
endif
accel-changed: ;

$(STAMP): pyproject.toml
	@echo "setup: installing the $(BUILD_NAME.$(BUILD)) build of JAX ($(WHY))"
	@command -v $(PYTHON) >/dev/null || { echo "make: $(PYTHON) not found; run 'make PYTHON=python3 ...'"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip uninstall --yes --quiet --quiet $(REMOVE.$(BUILD))
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS.$(BUILD))]'
	echo $(BUILD) > $(STAMP)

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
