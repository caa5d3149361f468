#!/usr/bin/env bash
# Every test of the project, in the order that fails fastest: lint, unit tests, a short
# fuzz run of the pure core, then the end-to-end suite against the local control plane
# (started here when it is not already running, and stopped again at the end) with Argo CD
# beside it, then the chart checks.
. "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

start=$SECONDS
hack/build-tools.sh all

log "lint: cargo fmt --check and clippy -D warnings"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --features e2e --quiet -- -D warnings

log "unit tests"
cargo test --workspace --quiet

log "fuzz smoke run: every target for ${FUZZ_SMOKE_SECONDS:-20}s"
hack/fuzz.sh "${FUZZ_SMOKE_SECONDS:-20}"

use_local_cluster
refuse_live_operator
log "Argo CD beside the local control plane, for the GitOps tests"
hack/cluster.sh argocd up
DECISION_GATE_MCP_PYTHON=$(hack/python.sh)
export DECISION_GATE_MCP_PYTHON

log "end-to-end tests against the local control plane"
cargo test --features e2e --test e2e -- --test-threads 8

log "end-to-end tests that restart the API server and etcd (alone)"
cargo test --features e2e --test disruptive -- --test-threads 1

# The real node's suite: the chart installed as users install it, its operator pod on the
# real node watching every namespace, so it runs alone. Afterwards the release goes back to
# no operator pod, as the rest of the suite and make run expect it.
if [ "$(id -u)" = 0 ] && [ "${DECISION_GATE_REAL_NODE:-1}" != 0 ]; then
  log "images for the real node: the operator (a release build), busybox, the pods' sandbox"
  hack/images.sh
  log "end-to-end tests on the real node (alone)"
  node_rc=0
  cargo test --features e2e --test node -- --test-threads 1 || node_rc=$?
  "$HELM_BIN/helm" upgrade decision-gate charts/decision-gate --kubeconfig "$ADMIN_KUBECONFIG" \
    --namespace decision-gate-system --reset-then-reuse-values --set replicaCount=0 --wait >/dev/null || true
  [ $node_rc = 0 ] || exit $node_rc
elif [ "${CI:-}" = true ]; then
  die "CI runs the real node's tests, which need root (the node runs containers)"
else
  log "SKIPPED: the tests on the real node, which needs root (it runs containers)"
fi

log "chart checks"
hack/chart-test.sh

log "all tests passed in $((SECONDS - start))s"
