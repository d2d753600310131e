# Developer and CI entry points. Everything installs itself into .venv from PyPI with the pinned
# versions of requirements.lock; nothing else is assumed beyond Python 3.11+ (the pinned numpy needs it), Java 17 and Maven.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: venv example example-python test lint lock bench clean

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[test]'
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

## The whole test suite, as CI runs it.
test: venv
	$(BIN)/ruff check python tests bench
	$(BIN)/ruff format --check python tests bench
	HF_HUB_OFFLINE=1 PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check python tests bench
	$(BIN)/ruff format --check python tests bench

lock: venv
	{ head -n 2 requirements.lock; $(BIN)/python -m pip freeze --all --exclude-editable | grep -vi -e '^virnucpro' -e '^pip=='; } > requirements.lock.new
	mv requirements.lock.new requirements.lock

bench: venv
	$(BIN)/python bench/prepare.py

clean:
	rm -rf $(VENV) .test-models results work .nextflow* .pytest_cache
