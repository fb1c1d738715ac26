# Conveyor: one short name for every common action. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed-$(shell sha1sum .ci/constraints.txt 2>/dev/null | cut -c1-12)
PYPI := https://pypi.org/simple
UV_VERSION := 0.12.3
ENV_SH := .local/env.sh
# Everything below runs with the project's virtualenv first on PATH.
export PATH := $(BIN):$(PATH)

.PHONY: help venv lock demo test test-fast lint fmt bench services services-stop airflow clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): .ci/constraints.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] in ((3, 11), (3, 12)) else "Conveyor needs Python 3.11 or 3.12 (set PYTHON=...)")'
	@rm -rf $(VENV) && $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip --isolated install --quiet --index-url $(PYPI) uv==$(UV_VERSION)
	@echo "Installing pinned packages from .ci/constraints.txt into $(VENV) ..."
	@$(BIN)/uv pip install --quiet --python $(BIN)/python --index-url $(PYPI) -r .ci/constraints.txt
	@# Put the project's library (plugins/) on the virtualenv's path, as MWAA does.
	@echo "$(abspath plugins)" > "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/conveyor.pth"
	@touch $@

venv: $(STAMP) ## Create .venv with the pinned versions (done by every target that needs it)

lock: $(STAMP) ## Re-resolve .ci/constraints.txt after editing pyproject.toml/requirements.txt (MWAA_CONSTRAINTS=path to use a local copy)
	$(BIN)/python .ci/lock.py

services: $(STAMP) ## Start the local stack (moto + Postgres) in the background and write .local/env.sh
	@$(BIN)/python -m conveyor.local start

services-stop: ## Stop what `make services` started
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m conveyor.local stop; else echo "nothing to stop"; fi

airflow: services ## Start `airflow standalone` (UI) on the local stack; prints the URL and login
	@$(BIN)/python -m conveyor.local airflow

demo: services ## Set up, start the stack, run the pipelines through Airflow, print what landed where
	@$(BIN)/python -m conveyor.demo

test: $(STAMP) ## Run the whole test suite (DAG integrity, unit, integration on moto/Postgres/Airflow)
	$(BIN)/python -m pytest

lint: $(STAMP) ## ruff (with the Airflow AIR rules), format check and the lock-sync check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python .ci/lock.py --check

fmt: $(STAMP) ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP) ## Benchmarks, printed as ratios against baselines measured in the same run
	$(BIN)/python -m conveyor.bench

clean: services-stop ## Stop the stack and remove .local/, .venv/ and dist/
	rm -rf .local $(VENV) dist
