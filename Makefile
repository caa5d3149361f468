# decision-gate — every entry point a developer and CI need.
#
#   make run    build what is missing, start the local control plane when no cluster is
#               configured (KUBECONFIG unset), install the CRDs and the chart without an
#               operator pod, run the operator as the chart's ServiceAccount (hack/run.sh);
#               `make run ARGOCD=1` starts Argo CD beside the local control plane too
#   make test   every test: lint, unit, end to end (against the local control plane,
#               started and stopped here), chart checks

SHELL := /bin/bash
.DEFAULT_GOAL := help

LOCAL_KUBECONFIG := $(CURDIR)/.local/cluster/admin.kubeconfig
# Use the cluster of KUBECONFIG when one is set; otherwise the local control plane.
ifeq ($(strip $(KUBECONFIG)),)
  USE_LOCAL := 1
  export KUBECONFIG := $(LOCAL_KUBECONFIG)
endif
KUBECTL = $(shell . hack/lib.sh && echo $$K8S_BIN/kubectl)
HELM = $(shell . hack/lib.sh && echo $$HELM_BIN/helm)

.PHONY: help
help: ## Show the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

.PHONY: deps
deps: ## Check for (and install, as root) the system packages the scripts use
	@hack/deps.sh

.PHONY: tools
tools: deps ## Build the pinned control plane, kubectl and helm into ~/.cache/decision-gate
	@hack/build-tools.sh all

.PHONY: build
build: ## Build the operator
	cargo build --bins

.PHONY: crds
crds: ## Regenerate crds/ and the chart's copy from the Rust types
	cargo run --quiet --bin decision-gate -- crd --output-dir crds
	cargo run --quiet --bin decision-gate -- crd --output-dir charts/decision-gate/files/crds

.PHONY: cluster-up
cluster-up: deps ## Start the local control plane (idempotent)
	@hack/cluster.sh up

.PHONY: cluster-down
cluster-down: ## Stop every process of the local control plane
	@hack/cluster.sh down

.PHONY: cluster-status
cluster-status: ## Show what of the local control plane runs
	@hack/cluster.sh status

.PHONY: argocd-up
argocd-up: deps ## Start Argo CD beside the local control plane (and the control plane, if need be)
	@hack/cluster.sh argocd up

.PHONY: argocd-down
argocd-down: ## Stop Argo CD (make cluster-down stops it too)
	@hack/cluster.sh argocd down

.PHONY: cluster-reset
cluster-reset: ## Stop the local control plane and forget its state
	@hack/cluster.sh reset

.PHONY: install
install: ## Install the CRDs into the current cluster
ifdef USE_LOCAL
	@hack/cluster.sh up
endif
	@hack/build-tools.sh cluster
	$(KUBECTL) apply --server-side --force-conflicts -f crds/
	$(KUBECTL) wait --for=condition=Established --timeout=60s -f crds/

.PHONY: uninstall
uninstall: ## Remove the CRDs (and with them every Decision, policy and plan)
	$(KUBECTL) delete --ignore-not-found -f crds/

.PHONY: run
run: deps ## Install the chart (no operator pod) and run the operator as its ServiceAccount, in the foreground (ARGOCD=1: with Argo CD beside it)
	@$(if $(USE_LOCAL),env -u KUBECONFIG )$(if $(filter 1 true,$(ARGOCD)),DECISION_GATE_ARGOCD=1 )hack/run.sh

.PHONY: lint
lint: ## Formatting and clippy with warnings as errors
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --features e2e -- -D warnings

.PHONY: test
test: deps ## Every test: lint, unit, end to end and chart checks
	@hack/test.sh

.PHONY: test-limits
test-limits: deps ## A long run of the generated limits test: LIMITS_COUNT objects (default 200) from LIMITS_SEED
	@hack/test-limits.sh

.PHONY: fuzz
fuzz: deps ## Fuzz the pure core: every target for FUZZ_SECONDS (default 3600) each
	@hack/fuzz.sh $${FUZZ_SECONDS:-3600}

.PHONY: bench
bench: deps ## Benchmarks: the core, then the operator against the local control plane (prints a table)
	@hack/bench.sh
