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
# `make test` runs on this many processes (pytest-xdist); each has its own Airflow home, Postgres
# server and fake Snowflake. Most tests wait on servers more than they compute, so 2 suits 2 cores.
TEST_WORKERS ?= 2
# checkov pins boto3/networkx versions that clash with Airflow's, so it has a virtualenv of its own.
TOOLS_VENV := .venv-tools
TOOLS_STAMP := $(TOOLS_VENV)/.installed-$(shell sha1sum .ci/tools-constraints.txt 2>/dev/null | cut -c1-12)
CHECKOV := $(abspath $(TOOLS_VENV))/bin/checkov
# Everything below runs with the project's virtualenv first on PATH.
export PATH := $(BIN):$(PATH)

.PHONY: help venv lock star demo test test-scheduler test-ui compose-up compose-down lint fmt bench services services-stop seed airflow package terraform-check clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): .ci/constraints.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] in ((3, 11), (3, 12)) else "Conveyor needs Python 3.11 or 3.12 (set PYTHON=...)")'
	@rm -rf $(VENV) && $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip --isolated install --quiet --index-url $(PYPI) uv==$(UV_VERSION)
	@echo "Installing pinned packages from .ci/constraints.txt into $(VENV) ..."
	@# --compile-bytecode: every Python process (Airflow CLI, moto, the tests) starts from .pyc, even
	@# where PYTHONDONTWRITEBYTECODE is set; it halves the import time of Airflow + pandas + boto3.
	@$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python --index-url $(PYPI) -r .ci/constraints.txt
	@# Put the DAGs' library (plugins/, as MWAA does) and the local tooling (local/) on the path.
	@printf '%s\n' "$(abspath plugins)" "$(abspath local)" > "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/conveyor.pth"
	@touch $@

$(TOOLS_STAMP): .ci/tools-constraints.txt $(STAMP)
	@rm -rf $(TOOLS_VENV) && $(BIN)/uv venv --quiet --python $(BIN)/python $(TOOLS_VENV)
	@echo "Installing checkov (pinned in .ci/tools-constraints.txt) into $(TOOLS_VENV) ..."
	@$(BIN)/uv pip install --quiet --compile-bytecode --python $(TOOLS_VENV)/bin/python --index-url $(PYPI) -r .ci/tools-constraints.txt
	@touch $@

venv: $(STAMP) ## Create .venv with the pinned versions (done by every target that needs it)

lock: $(STAMP) ## Re-resolve .ci/constraints.txt after editing pyproject.toml/requirements.txt (MWAA_CONSTRAINTS=path to use a local copy)
	$(BIN)/python .ci/lock.py

star: $(STAMP) ## Render the Snowflake MERGE files from the star's declaration (include/sql/warehouse/star.yml)
	@$(BIN)/python -m conveyor_local.star_sql

services: $(STAMP) ## Start the local stack (moto, a fake Snowflake, Postgres with Airflow's metadata), load missing sample data, write .local/env.sh
	@$(BIN)/python -m conveyor_local start

services-stop: ## Stop what `make services` and `make airflow` started (Postgres data and ports survive)
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m conveyor_local stop; else echo "nothing to stop"; fi

seed: services ## Put the sample data back as it was (source bucket files, the ToteSys database)
	@$(BIN)/python -m conveyor_local seed

airflow: services ## Start Airflow on the local stack (api-server, scheduler, dag-processor, triggerer; LocalExecutor, or CONVEYOR_EXECUTOR=celery for Redis + 2 Celery workers as on MWAA); on port 8080 (CONVEYOR_AIRFLOW_PORT moves it); prints the URL and login
	@$(BIN)/python -m conveyor_local airflow

demo: services ## Set up, start the stack, run the pipelines through Airflow, print what landed where
	@$(BIN)/python -m conveyor_local.demo

test: $(STAMP) $(TOOLS_STAMP) ## Run the test suite (DAGs, unit, integration, the README's commands, Terraform + checkov, packaging) on TEST_WORKERS processes
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup

test-scheduler: $(STAMP) ## Airflow as users run it: `make airflow` on a stack of its own, driven through the REST API (CONVEYOR_EXECUTOR=celery: on Celery workers, as .ci/run does)
	$(BIN)/python -m pytest -m scheduler tests/scheduler

test-ui: $(STAMP) ## The Airflow UI in headless Chromium (installs Debian's chromium if missing): docs, a trigger with Params, a backfill; screenshots to docs/screenshots/
	-@$(BIN)/python -m conveyor_local.browser
	$(BIN)/python -m pytest -m ui tests/ui

lint: $(STAMP) terraform-check ## ruff (with the Airflow AIR rules), format check, lock-sync check, checkov
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python .ci/lock.py --check

terraform-check: $(TOOLS_STAMP) ## checkov on terraform/ (offline; no terraform binary needed); must report 0 failed
	$(CHECKOV) -d terraform --skip-download --compact --quiet

compose-up: ## The same services in containers (needs a Docker engine): moto, Postgres, Airflow 3.3.1 (LocalExecutor)
	docker compose up -d
	@echo "Airflow UI: http://localhost:8080  login: admin / admin   (stop: make compose-down)"

compose-down: ## Stop the containers and forget their data
	docker compose down -v

package: $(STAMP) ## Build the MWAA artefacts in dist/: dags/ (with include/), plugins.zip, requirements.txt
	$(BIN)/python -m conveyor_local.package

fmt: $(STAMP) ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP) ## Benchmarks, printed as ratios against baselines measured in the same run
	$(BIN)/python -m conveyor_local.bench

clean: services-stop ## Stop the stack and remove .local/, .venv/, .venv-tools/ and dist/
	rm -rf .local $(VENV) $(TOOLS_VENV) dist
