# Developer and CI entry points. Everything installs itself into .venv from PyPI with the pinned
# versions of requirements.lock; nothing else is assumed beyond Python 3.11+ (the pinned numpy needs it), Java 17 and Maven.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# Test workers (pytest-xdist): much of the suite waits on JVMs, Docker and subprocesses, so more
# workers than cores can help; measured on 2 cores, see CONTRIBUTING.md.
TEST_WORKERS ?= 2
FAST_TEST_WORKERS ?= 2
# The tiers that need more than this checkout and its venv, or take long: left out of test-fast.
FAST_MARKERS := not slow and not nextflow and not docker and not slurm and not browser and not gpu

.PHONY: venv example example-python test test-fast test-floor test-gpu-replica lint lock bench clean

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[test,multiqc]'
	touch $(STAMP)

venv: $(STAMP)

## Quick start: the Nextflow pipeline on the bundled example with the small test models (CPU).
example: venv
	PATH="$(abspath $(BIN)):$$PATH" scripts/nextflow run . -profile test --outdir results/example

## The same stages without Nextflow: `virnucpro run` on the bundled example.
example-python: venv
	$(BIN)/virnucpro make-test-models .test-models
	$(BIN)/virnucpro run tests/data/example.fa --outdir results/example-python \
		--dnabert-model .test-models/dnabert-s --esm-model .test-models/esm2 \
		--classifier .test-models/classifier --workers 2

## The whole test suite, as CI runs it. Tests that share a Docker daemon, a SLURM cluster, a fresh
## clone or one Nextflow launch carry an xdist_group and run on one worker (--dist loadgroup).
test: venv
	$(BIN)/ruff check python tests bench
	$(BIN)/ruff format --check python tests bench
	HF_HUB_OFFLINE=1 PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest \
		-n $(TEST_WORKERS) --dist loadgroup --durations=15 $(PYTEST_ARGS)

## Lint and every module's logic in a few minutes: the suite without the slow, Nextflow, Docker,
## SLURM, browser and GPU tests. A test of this tier that runs longer than 30 s fails (tests/conftest.py).
test-fast: venv
	$(BIN)/ruff check python tests bench
	$(BIN)/ruff format --check python tests bench
	HF_HUB_OFFLINE=1 PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest \
		-n $(FAST_TEST_WORKERS) --dist loadgroup -m "$(FAST_MARKERS)" $(PYTEST_ARGS)

## The declared minimum versions (pyproject.toml), tested: a second venv with torch and transformers at
## their floors (what the lent GPU machine runs) and the test files that exercise them on CPU.
FLOOR_VENV ?= .venv-floor
FLOOR_PINS := torch==2.11.0 transformers==5.17.0
FLOOR_TESTS := tests/unit/test_classifier.py tests/unit/test_dnabert_s.py tests/unit/test_esm2.py \
	tests/unit/test_embedding_engine.py tests/unit/test_embedding_batching.py tests/unit/test_test_models.py \
	tests/unit/test_predict.py tests/unit/test_train.py tests/cli/test_embed_combined.py tests/unit/test_fp8.py \
	tests/unit/test_pool.py tests/system/test_gpu_paths.py

$(FLOOR_VENV)/.installed: pyproject.toml
	test -x $(FLOOR_VENV)/bin/python || $(PYTHON) -m venv $(FLOOR_VENV)
	$(FLOOR_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(FLOOR_VENV)/bin/python -m pip install --quiet $(FLOOR_PINS) '.[test]'
	touch $@

test-floor: $(FLOOR_VENV)/.installed
	$(FLOOR_VENV)/bin/python -c 'import sys, torch, transformers; print("floor:", sys.version.split()[0], "torch", torch.__version__, "transformers", transformers.__version__)'
	HF_HUB_OFFLINE=1 PATH="$(abspath $(FLOOR_VENV)/bin):$$PATH" $(FLOOR_VENV)/bin/python -m pytest $(FLOOR_TESTS) $(PYTEST_ARGS)

## A replica of the lent GPU machine's software, on CPU: Python 3.12 (3.12.3 there; pyenv's 3.12 here),
## torch 2.11.0 and transformers 5.17.0, no Biopython. Runs the device check's code (`bench/gpu.py
## --smoke`, every step, the end-to-end rows through `virnucpro embed` included) and the embedding
## tests that need no Biopython. Not part of CI (it downloads a second torch).
REPLICA_VENV ?= .venv-gpu-replica
REPLICA_PYTHON ?= $(shell command -v python3.12 || echo python3)
REPLICA_PINS := torch==2.11.0 transformers==5.17.0 pyarrow tokenizers safetensors numpy typer rich pytest hypothesis
REPLICA_TESTS := tests/unit/test_kernels.py tests/unit/test_embedding_engine.py tests/unit/test_pool.py tests/system/test_gpu_paths.py \
	tests/unit/test_fp8.py tests/unit/test_dnabert_s.py tests/system/test_bench_gpu.py

$(REPLICA_VENV)/.installed: pyproject.toml
	test -x $(REPLICA_VENV)/bin/python || $(REPLICA_PYTHON) -m venv $(REPLICA_VENV)
	$(REPLICA_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(REPLICA_VENV)/bin/python -m pip install --quiet $(REPLICA_PINS)
	$(REPLICA_VENV)/bin/python -m pip install --quiet --no-deps -e .
	touch $@

test-gpu-replica: $(REPLICA_VENV)/.installed
	$(REPLICA_VENV)/bin/python -c 'import sys, torch, transformers; print("replica:", sys.version.split()[0], "torch", torch.__version__, "transformers", transformers.__version__)'
	! $(REPLICA_VENV)/bin/python -c 'import Bio' 2>/dev/null
	PATH="$(abspath $(REPLICA_VENV)/bin):$$PATH" $(REPLICA_VENV)/bin/python bench/gpu.py --smoke --json test-artifacts/replica-smoke.json
	HF_HUB_OFFLINE=1 PATH="$(abspath $(REPLICA_VENV)/bin):$$PATH" $(REPLICA_VENV)/bin/python -m pytest \
		-m "not biopython" $(REPLICA_TESTS) $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check python tests bench
	$(BIN)/ruff format --check python tests bench

lock: venv
	{ head -n 2 requirements.lock; $(BIN)/python -m pip freeze --all --exclude-editable | grep -vi -e '^virnucpro' -e '^pip=='; } > requirements.lock.new
	mv requirements.lock.new requirements.lock

bench: venv
	$(BIN)/python bench/prepare.py

clean:
	rm -rf $(VENV) $(FLOOR_VENV) .test-models results work .nextflow* .pytest_cache
