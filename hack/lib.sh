# Shared shell helpers for the hack/ scripts. Sourced, never run.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=versions.env
. "$REPO_ROOT/hack/versions.env"

CACHE_DIR=${DECISION_GATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/decision-gate}
LOCAL_DIR=${DECISION_GATE_LOCAL:-$REPO_ROOT/.local}
CLUSTER_DIR=$LOCAL_DIR/cluster

K8S_BIN=$CACHE_DIR/bin/kubernetes-$KUBERNETES_VERSION
ETCD_BIN=$CACHE_DIR/bin/etcd-$ETCD_VERSION
KWOK_BIN=$CACHE_DIR/bin/kwok-$KWOK_VERSION
HELM_BIN=$CACHE_DIR/bin/helm-$HELM_VERSION
KUBECONFORM_BIN=$CACHE_DIR/bin/kubeconform-$KUBECONFORM_VERSION
ARGOCD_HEALTH_BIN=$CACHE_DIR/bin/argocd-health-$ARGOCD_VERSION
ARGOCD_BIN=$CACHE_DIR/bin/argocd-$ARGOCD_VERSION
CONTAINERD_BIN=$CACHE_DIR/bin/containerd-$CONTAINERD_VERSION
RUNC_BIN=$CACHE_DIR/bin/runc-$RUNC_VERSION
CRI_TOOLS_BIN=$CACHE_DIR/bin/cri-tools-$CRI_TOOLS_VERSION
COREDNS_BIN=$CACHE_DIR/bin/coredns-$COREDNS_VERSION
REGISTRY_BIN=$CACHE_DIR/bin/distribution-$DISTRIBUTION_VERSION
CRANE_BIN=$CACHE_DIR/bin/crane-$CRANE_VERSION

log() { printf '\033[1m==>\033[0m %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Run a slow command with a progress line every 20 seconds, so that a first
# build that takes minutes never looks like a hang. Output goes to a log file
# that is printed only when the command fails.
with_progress() {
  local what=$1 logfile=$2
  shift 2
  local start=$SECONDS
  log "$what (log: $logfile)"
  mkdir -p "$(dirname "$logfile")"
  "$@" >"$logfile" 2>&1 &
  local pid=$!
  # `tail --pid` returns as soon as the command ends, or after 20s to print progress.
  while ! timeout 20 tail --pid="$pid" -f /dev/null; do
    printf '    ... %s: %ds elapsed\n' "$what" $((SECONDS - start)) >&2
  done
  if ! wait "$pid"; then
    tail -n 40 "$logfile" >&2
    die "$what failed; full log in $logfile"
  fi
  log "$what: done in $((SECONDS - start))s"
}

# Loopback ports of the local control plane; override when they clash with something.
ETCD_PORT=${DECISION_GATE_ETCD_PORT:-23790}
ETCD_PEER_PORT=${DECISION_GATE_ETCD_PEER_PORT:-23800}
APISERVER_PORT=${DECISION_GATE_APISERVER_PORT:-26443}
# The image registry the real node pulls from (hack/node.sh), on loopback.
REGISTRY_PORT=${DECISION_GATE_REGISTRY_PORT:-25000}
REGISTRY=127.0.0.1:$REGISTRY_PORT
ADMIN_KUBECONFIG=$CLUSTER_DIR/admin.kubeconfig

kubectl_admin() { "$K8S_BIN/kubectl" --kubeconfig "$ADMIN_KUBECONFIG" "$@"; }

# Waits until a command succeeds, polling every half second, for at most $2 seconds.
wait_until() {
  local what=$1 deadline=$((SECONDS + $2))
  shift 2
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      printf 'error: timed out waiting for %s\n' "$what" >&2
      return 1
    fi
    sleep 0.5 # poll interval of this deadline-bound wait
  done
}

# Uses the local control plane, starting it when it is not running and then stopping it
# again when the calling script exits (keeping the script's exit status).
use_local_cluster() {
  STARTED_LOCAL_CLUSTER=0
  if ! "$REPO_ROOT/hack/cluster.sh" status >/dev/null 2>&1; then
    "$REPO_ROOT/hack/cluster.sh" up
    STARTED_LOCAL_CLUSTER=1
  fi
  trap stop_started_cluster EXIT
  export KUBECTL="$K8S_BIN/kubectl" HELM="$HELM_BIN/helm" DECISION_GATE_E2E_KUBECONFIG="$ADMIN_KUBECONFIG"
}

# Stops here while an operator that watches every namespace (a `make run`, say) leads in
# the local control plane: it would act on the Decisions of the tests and benchmarks beside
# the operators they start, and their figures and verdicts would be its too. A Lease left
# by an operator that is gone lapses within its duration; one that is renewed is alive.
refuse_live_operator() {
  local lease=decision-gate namespace=decision-gate-system seen now holder renewed duration lapses
  read_lease() {
    kubectl_admin -n "$namespace" get lease "$lease" --ignore-not-found \
      -o jsonpath='{.spec.holderIdentity}|{.spec.renewTime}|{.spec.leaseDurationSeconds}'
  }
  seen=$(read_lease) || return 0
  IFS='|' read -r holder renewed duration <<<"$seen"
  [ -n "$holder" ] && [ -n "$renewed" ] || return 0
  lapses=$(($(date -d "$renewed" +%s) + ${duration:-15} + 1))
  while [ "$(date +%s)" -le "$lapses" ]; do
    now=$(read_lease) || return 0
    if [ "$now" != "$seen" ]; then
      die "an operator that watches every namespace runs against this cluster (it renews the Lease $lease in $namespace, held by $holder): it would act on the Decisions of the tests and benchmarks too. Stop it (Ctrl-C where make run runs) and start again"
    fi
    sleep 1 # poll interval of this deadline-bound wait
  done
}

stop_started_cluster() {
  local rc=$?
  # The chart the suite installed stays: `make run` runs the operator as its ServiceAccount.
  if [ "${STARTED_LOCAL_CLUSTER:-0}" = 1 ]; then
    "$REPO_ROOT/hack/cluster.sh" down || { [ $rc != 0 ] || rc=1; }
    # Stopping leaves nothing of the real node behind on this host.
    local residue
    residue=$("$REPO_ROOT/hack/cluster.sh" residue)
    if [ -n "$residue" ]; then
      printf 'error: the stopped cluster left behind:\n%s\n' "$residue" >&2
      [ $rc != 0 ] || rc=1
    fi
  fi
  exit $rc
}
