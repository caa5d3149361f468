#!/usr/bin/env bash
# The benchmarks: the pure core (criterion) and the operator against the local control
# plane (started here when it is not running, and stopped again at the end). Not part of
# `make test`: it takes minutes and measures, it does not check.
#   BENCH_SIZES=1000,10000 (default) sets how many Decisions the load runs create.
. "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

hack/build-tools.sh all
log "core: policy evaluation and audit appends (criterion)"
cargo bench --bench core -- --noplot

started_cluster=0
if ! hack/cluster.sh status >/dev/null 2>&1; then
  hack/cluster.sh up
  started_cluster=1
fi
cleanup() {
  local rc=$?
  if [ $started_cluster = 1 ]; then hack/cluster.sh down || true; fi
  exit $rc
}
trap cleanup EXIT

log "the operator against the local control plane"
export KUBECTL="$K8S_BIN/kubectl" HELM="$HELM_BIN/helm" DECISION_GATE_E2E_KUBECONFIG="$ADMIN_KUBECONFIG"
cargo bench --features e2e --bench cluster
