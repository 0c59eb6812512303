# Aftercare: `make demo` runs the pipeline on the embedded local stack;
# `make test` runs lint, types and the test suite. Both set up .venv themselves.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
STAGE ?= dev
REGION ?= us-east-1
PACKAGE_DIR ?= build/package

.PHONY: install test lint typecheck unit demo run bench package package-smoke schema clean

$(STAMP): pyproject.toml requirements.txt
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade 'pip<26.3'  # chalice 1.34 needs pip<26.3
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

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
run: $(STAMP)
	$(BIN)/aftercare run --speed $(SPEED)

bench: $(STAMP)
	$(BIN)/python -m bench

schema: $(STAMP)
	$(BIN)/aftercare schema > campaigns/schema.json

# chalice package needs a region but no credentials. The stage is also exported
# as AFTERCARE_STAGE because queue names are read when app.py is imported.
package: $(STAMP)
	rm -rf $(PACKAGE_DIR)
	AFTERCARE_STAGE=$(STAGE) AWS_DEFAULT_REGION=$(REGION) $(BIN)/chalice package --stage $(STAGE) $(PACKAGE_DIR)
	# E2533: Lambda deprecated the python3.11 runtime (2026-06-30); the stack is pinned
	# to 3.11 for now -- see README "Known issues".
	$(BIN)/cfn-lint --ignore-checks E2533 -- $(PACKAGE_DIR)/sam.json infra/*.yaml

package-smoke: package
	AFTERCARE_PACKAGE_DIR=$(PACKAGE_DIR) $(BIN)/python -m pytest -q -m package tests/package

clean:
	rm -rf build out .pytest_cache .mypy_cache .ruff_cache
