# Aftercare: `make demo` runs the pipeline on the embedded local stack;
# `make test` runs lint, types and the test suite. Both set up .venv themselves.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Chalice takes the Lambda runtime from the Python it runs under, and Lambda no longer
# creates (2026-07-31) or updates (2026-08-31) python3.11 functions: the package and
# the deploy run in their own venv of a supported Python (3.13, else 3.12). Without
# one, they fall back to PY with a warning; that artifact cannot be deployed.
# (pyenv's shims name versions that are not active: each candidate must run.)
LAMBDA_PY ?= $(or $(shell for p in python3.13 python3.12 \
	$$(ls -d $$HOME/.pyenv/versions/3.13*/bin/python3.13 2>/dev/null) \
	$$(ls -d $$HOME/.pyenv/versions/3.12*/bin/python3.12 2>/dev/null); do \
	if $$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then \
	command -v $$p; break; fi; done),$(PY))
LAMBDA_VENV := .venv-lambda
LAMBDA_BIN := $(LAMBDA_VENV)/bin
LAMBDA_STAMP := $(LAMBDA_VENV)/.installed-stamp
STAGE ?= dev
REGION ?= us-east-1
PACKAGE_DIR ?= build/package

.PHONY: install test lint typecheck unit demo run bench package package-smoke test-lambda deploy schema clean

$(STAMP): pyproject.toml requirements.txt
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade 'pip<26.3'  # chalice 1.34 needs pip<26.3
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

$(LAMBDA_STAMP): pyproject.toml requirements.txt
	@test -x $(LAMBDA_BIN)/python || $(LAMBDA_PY) -m venv $(LAMBDA_VENV)
	$(LAMBDA_BIN)/python -m pip install -q --upgrade 'pip<26.3'
	$(LAMBDA_BIN)/python -m pip install -q -e '.[dev]'
	@touch $(LAMBDA_STAMP)

lint: $(STAMP)
	$(BIN)/ruff check app.py chalicelib tests bench

typecheck: $(STAMP)
	$(BIN)/mypy app.py chalicelib bench

unit: $(STAMP)
	$(BIN)/python -m pytest -q

test: lint typecheck unit

demo: $(STAMP)
	$(BIN)/aftercare demo --out out

SPEED ?= 1440
PORT ?= 8000
run: $(STAMP)
	$(BIN)/aftercare run --speed $(SPEED) --port $(PORT)

bench: $(STAMP)
	$(BIN)/python -m bench

schema: $(STAMP)
	$(BIN)/aftercare schema > campaigns/schema.json

# chalice package needs a region but no credentials. The stage is also exported
# as AFTERCARE_STAGE because queue names are read when app.py is imported.
package: $(LAMBDA_STAMP)
	@$(LAMBDA_BIN)/python -c 'import sys; sys.exit(sys.version_info < (3, 12))' || \
		echo "WARNING: no python3.13/3.12 found: packaging for $$($(LAMBDA_BIN)/python -V)," \
		"a runtime Lambda no longer creates or updates (set LAMBDA_PY)" >&2
	rm -rf $(PACKAGE_DIR)
	AFTERCARE_STAGE=$(STAGE) AWS_DEFAULT_REGION=$(REGION) $(LAMBDA_BIN)/chalice package --stage $(STAGE) $(PACKAGE_DIR)
	# E2533 (deprecated runtime) is what the fallback above warns about.
	$(LAMBDA_BIN)/cfn-lint --ignore-checks E2533 -- $(PACKAGE_DIR)/sam.json infra/*.yaml

# The artifact is tested with the Python it was built for (the runtime's).
package-smoke: package
	AFTERCARE_PACKAGE_DIR=$(PACKAGE_DIR) $(LAMBDA_BIN)/python -m pytest -q -m package tests/package

# The whole suite again with the Lambda runtime's Python (CI runs it after make test);
# skipped when no 3.12+ was found (the fallback venv is the dev Python).
test-lambda: $(LAMBDA_STAMP)
	@if $(LAMBDA_BIN)/python -c 'import sys; sys.exit(sys.version_info < (3, 12))'; then \
		$(LAMBDA_BIN)/python -m pytest -q -p no:cacheprovider; \
	else echo "test-lambda: skipped (no python3.13/3.12: set LAMBDA_PY)"; fi

# Needs AWS credentials (and the stack of infra/ deployed first: README "Deploy").
deploy: $(LAMBDA_STAMP)
	AFTERCARE_STAGE=$(STAGE) $(LAMBDA_BIN)/chalice deploy --stage $(STAGE)

clean:
	rm -rf build out .pytest_cache .mypy_cache .ruff_cache
