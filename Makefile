# Quick start: `make test` and `make run` (each creates .venv and installs once).
PYTHON ?= python3.11
VENV := .venv
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed
# uv.lock pins every package of every build with its hashes, and uv installs from it; pip
# installs uv itself (and setuptools) into the venv from BOOTSTRAP, the lock's pins and
# hashes for those two.
BOOTSTRAP := workflow/envs/bootstrap.txt
CONFIG ?= config/config.yaml
PROFILE ?=
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
EXTRAS.cuda := test cuda
EXTRAS.cuda12 := test cuda12

.PHONY: setup lock test test-fast run report lint dvc-yaml restore live accel-changed

setup: $(STAMP)

# Reinstall when the package's requirements change, or when the stamp, which records the
# build installed (empty, from before ACCEL: cpu), is not the one chosen now.
INSTALLED := $(shell cat $(STAMP) 2>/dev/null)
ifneq ($(or $(INSTALLED),cpu),$(BUILD))
$(STAMP): accel-changed
endif
accel-changed: ;

# uv installs into VENV, wherever it is (uv's own default is ./.venv).
$(STAMP) lock: export UV_PROJECT_ENVIRONMENT := $(abspath $(VENV))

# The venv, with uv installed by pip from BOOTSTRAP (--require-hashes).
define INSTALL_UV
@command -v $(PYTHON) >/dev/null || { echo "make: $(PYTHON) not found; run 'make PYTHON=python3 ...'"; exit 1; }
test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r $(BOOTSTRAP)
endef

# The sync is exact: the venv ends up with the build's packages from the lock and nothing
# else, so a CUDA plugin of another build (which would still claim the GPU) goes, as does
# anything installed by hand. Hashes are checked against the lock; nothing is resolved.
# Bytecode is compiled here, once (uv leaves it to the first import otherwise): where
# Python may not write it (PYTHONDONTWRITEBYTECODE, as in many containers, or a read-only
# venv) every stage's process and every `snakemake` would compile its imports again,
# 2-3 s each (README, Development).
$(STAMP): pyproject.toml uv.lock $(BOOTSTRAP)
	@echo "setup: installing the $(BUILD_NAME.$(BUILD)) build of JAX ($(WHY))"
	$(INSTALL_UV)
	@$(BIN)/uv lock --check --quiet || { echo "setup: uv.lock does not match pyproject.toml; run 'make lock'"; exit 1; }
	$(BIN)/uv sync --frozen --quiet --compile-bytecode --python $(BIN)/python $(addprefix --extra ,$(EXTRAS.$(BUILD))) --group setup
	echo $(BUILD) > $(STAMP)

# Brings uv.lock in line with pyproject.toml, keeping the versions locked where they still
# fit (LOCK_ARGS=--upgrade: the newest ones), and BOOTSTRAP in line with the lock.
lock:
	$(INSTALL_UV)
	$(BIN)/uv lock $(LOCK_ARGS)
	$(BIN)/uv export --frozen --quiet --only-group setup --output-file $(BOOTSTRAP)

# Tests run on two pytest-xdist workers: much of a test's time is waiting (process
# starts, Slurm's polling, SSH), which the other worker fills; conftest orders them
# (README, Development). The full suite goes a file at a time, so a module's fixtures
# (the Slurm cluster) exist once; the fast tier a test at a time. (xdist_group does not
# work with pytest 9.2: xdist 3.8 renames items through an attribute pytest no longer reads.)
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -n $(TEST_WORKERS) --no-loadscope-reorder

# Everything, as CI runs it: the linters, then every test (end-to-end builds included).
test: lint
	$(PYTEST) --dist loadfile

# The library code of every stage, in process where it can be, on small real data
# (README, Development): minutes, not the full suite's time.
test-fast: setup
	$(PYTEST) --dist load -m "not slow"

# PROFILE=slurm: every job through Slurm (workflow/profiles/slurm; README, "On a cluster").
run: setup
	$(BIN)/snakemake --cores $(CORES) --configfile $(CONFIG) $(if $(PROFILE),--profile workflow/profiles/$(PROFILE))

# A trained model on a live picture (README, Live): MODEL=results/models/<pair> AS=<person>,
# SOURCE a camera, URL or video file (default the first camera), LIVE_ARGS its outputs
# (default a window). The values reach facepipe through the environment, quoted, never as
# shell text. (AS is also make's assembler: only a value from the command line counts.)
SOURCE ?= 0
LIVE_ARGS ?=
live: export LIVE_MODEL := $(MODEL)
live: export LIVE_AS := $(if $(filter command line,$(origin AS)),$(AS))
live: export LIVE_SOURCE := $(SOURCE)
live: setup
	@test -n "$$LIVE_MODEL" -a -n "$$LIVE_AS" || { echo "make live: give MODEL=results/models/<pair> AS=<person>"; exit 1; }
	$(BIN)/facepipe live --model "$$LIVE_MODEL" --as "$$LIVE_AS" "$$LIVE_SOURCE" $(LIVE_ARGS)

# One self-contained page: previews, loss curves, faces kept/dropped, swaps, metrics.
report: setup
	$(BIN)/snakemake --report report.html --configfile $(CONFIG)

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/snakemake --lint --configfile $(CONFIG)

dvc-yaml: setup
	$(BIN)/facepipe dvc-yaml --configfile $(CONFIG)

restore: setup
	$(BIN)/facepipe restore --configfile $(CONFIG)
