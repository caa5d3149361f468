#!/usr/bin/env bash
# `make run`: the operator in the foreground, locked down as it is in a cluster. It runs
# with a token of the chart's ServiceAccount, behind the chart's admission policies, so
# that an approval counts only when the API server says who gave it.
#
#   1. builds what is missing: the control plane and helm into the cache, and (unless
#      DECISION_GATE_BIN names an operator binary to run) the operator and kubectl-decision;
#   2. with KUBECONFIG unset (or naming the local admin kubeconfig) starts the local control
#      plane; otherwise uses the current context of KUBECONFIG, with its credentials;
#   3. applies the CRDs and installs the chart as release decision-gate in
#      decision-gate-system without an operator pod (replicaCount=0): the operator's
#      ServiceAccount and RBAC, the roles for people, and the admission policies;
#   4. on the local control plane only: gives its people and the agent release-bot their
#      roles in namespace default (hack/cluster/people.yaml), and writes the agent a
#      kubeconfig (.local/run/release-bot.kubeconfig);
#   5. runs the operator as the ServiceAccount (.local/run/operator.kubeconfig), serving
#      /healthz, /readyz and /metrics on HTTP_ADDR, writing the audit log to
#      .local/audit/audit.jsonl, and on the local control plane its deletion witness on
#      WITNESS_ADDR (the webhook through which the API server says who deletes a Decision).
#      Ctrl-C stops it; running this again is safe.
#
# With DECISION_GATE_ARGOCD=1 (make run ARGOCD=1) and the local control plane, Argo CD runs
# beside it (hack/argocd.sh), to watch a sync wait for approvers
# (charts/decision-gate/argocd/README.md).
#
# Environment: HTTP_ADDR (default 127.0.0.1:8080), WITNESS_ADDR (default 127.0.0.1:9443),
# RUST_LOG (default info),
# DECISION_GATE_BIN, DECISION_GATE_TOKEN_DURATION (how long the tokens written under
# .local/run last, default 24h), and the operator's own settings, for example
# DECISION_GATE_NAMESPACE to watch one namespace only.
. "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

RELEASE=decision-gate
RELEASE_NAMESPACE=decision-gate-system
# The operator runs here as a process; the chart's Deployment has no replica, so this image
# is never pulled.
LOCAL_IMAGE=localhost/decision-gate
RUN_DIR=$LOCAL_DIR/run
AUDIT_LOG=$LOCAL_DIR/audit/audit.jsonl
HTTP_ADDR=${HTTP_ADDR:-127.0.0.1:8080}
WITNESS_ADDR=${WITNESS_ADDR:-127.0.0.1:9443}
TOKEN_DURATION=${DECISION_GATE_TOKEN_DURATION:-24h}
KUBECTL_BIN=$K8S_BIN/kubectl
HELM=$HELM_BIN/helm

same_file() { [ "$(realpath -m -- "$1")" = "$(realpath -m -- "$2")" ]; }

on_local_cluster=0
if [ -z "${KUBECONFIG:-}" ] || same_file "$KUBECONFIG" "$ADMIN_KUBECONFIG"; then
  on_local_cluster=1
  export KUBECONFIG=$ADMIN_KUBECONFIG
fi
k() { "$KUBECTL_BIN" "$@"; }

"$REPO_ROOT/hack/build-tools.sh" all
if [ -n "${DECISION_GATE_BIN:-}" ]; then
  operator=$DECISION_GATE_BIN
  [ -x "$operator" ] || die "DECISION_GATE_BIN=$operator is not an executable"
else
  log "building the operator and kubectl-decision (cargo build --bins)"
  cargo build --bins
  operator=${CARGO_TARGET_DIR:-$REPO_ROOT/target}/debug/decision-gate
fi

if [ $on_local_cluster = 1 ]; then
  "$REPO_ROOT/hack/cluster.sh" up
  if [ "${DECISION_GATE_ARGOCD:-0}" = 1 ]; then
    "$REPO_ROOT/hack/cluster.sh" argocd up
  fi
else
  context=$(k config current-context 2>/dev/null) || die "KUBECONFIG=$KUBECONFIG has no current context"
  server=$(k config view --minify -o jsonpath='{.clusters[0].cluster.server}')
  log "using the cluster of context $context ($server), as its credentials allow (installing the chart needs cluster-admin)"
  k get --raw /version >/dev/null || die "cannot reach the cluster of context $context"
  # Never take over a cluster where the operator already runs: the install below sets the
  # release's replicas to zero.
  replicas=$(k get deployment "$RELEASE" -n "$RELEASE_NAMESPACE" -o jsonpath='{.spec.replicas}' 2>/dev/null || true)
  if [ -n "$replicas" ] && [ "$replicas" != 0 ]; then
    die "the release $RELEASE in $RELEASE_NAMESPACE runs $replicas operator replica(s) in this cluster; make run would scale it to zero. Use another cluster, or scale it down yourself first"
  fi
  log "it installs into this cluster: the CRDs (server-side apply), and the chart as release $RELEASE in namespace $RELEASE_NAMESPACE with replicaCount=0 (ServiceAccount, ClusterRoles and bindings, the roles for people, the admission policies); it binds no people there"
fi

log "applying the CRDs"
k apply --server-side --force-conflicts -f crds/ >/dev/null
k wait --for=condition=Established --timeout=60s -f crds/ >/dev/null

# --reset-then-reuse-values keeps what an earlier install of the release chose (the e2e
# suite's, say), and the --set values make sure of what make run relies on: no operator pod,
# and the admission policies and people's roles present.
log "installing the chart: release $RELEASE in $RELEASE_NAMESPACE, replicaCount=0"
"$HELM" upgrade --install "$RELEASE" charts/decision-gate --namespace "$RELEASE_NAMESPACE" --create-namespace \
  --reset-then-reuse-values --set crds.install=false \
  --set replicaCount=0 --set audit.persistence.enabled=false --set image.repository="$LOCAL_IMAGE" \
  --set admission.enabled=true --set userRoles.create=true \
  --wait --timeout 120s >/dev/null
for policy in mutatingadmissionpolicy/decision-gate-requester mutatingadmissionpolicybinding/decision-gate-requester \
  mutatingadmissionpolicy/decision-gate-answers mutatingadmissionpolicybinding/decision-gate-answers \
  validatingadmissionpolicy/decision-gate-answers validatingadmissionpolicybinding/decision-gate-answers \
  validatingadmissionpolicy/decision-gate-status validatingadmissionpolicybinding/decision-gate-status; do
  k get "$policy" >/dev/null || die "the chart installed no $policy"
done
# The mutating policy that records the requester comes into force a moment after helm
# installs it, and reads the Decision schema from the API server's OpenAPI every few
# seconds, refusing Decisions (503 "Resource kind ... not found") until it has. Wait here,
# not in the user's first kubectl apply, until a dry-run Decision comes back with the
# requester recorded.
admits_decisions() {
  local requester
  requester=$(k create --dry-run=server -n "$RELEASE_NAMESPACE" \
    -o 'jsonpath={.metadata.annotations.decisiongate\.io/requested-by}' -f - <<'YAML'
apiVersion: decisiongate.io/v1alpha1
kind: Decision
metadata: {name: admission-probe}
spec: {actionType: probe, description: "Is the admission chain ready?", criticality: Info}
YAML
  ) || return 1
  [ -n "$requester" ] || { echo "a Decision was admitted without the decisiongate.io/requested-by annotation" >&2; return 1; }
}
wait_until "the API server to admit Decisions through the admission policies" 60 admits_decisions ||
  die "the API server does not admit Decisions: $(admits_decisions 2>&1)"
service_account=$(k get clusterrolebinding "$RELEASE" -o jsonpath='{.subjects[0].name}')

# token_kubeconfig FILE SERVICEACCOUNT NAMESPACE: a kubeconfig for the current cluster that
# authenticates with a fresh token of the ServiceAccount, and nothing else.
token_kubeconfig() {
  local file=$1 account=$2 namespace=$3 token field value
  token=$(k create token "$account" -n "$namespace" --duration "$TOKEN_DURATION")
  mkdir -p "$(dirname "$file")"
  : >"$file.tmp" && chmod 600 "$file.tmp"
  {
    printf 'apiVersion: v1\nkind: Config\nclusters:\n- name: cluster\n  cluster:\n'
    for field in server certificate-authority-data tls-server-name insecure-skip-tls-verify; do
      value=$(k config view --raw --minify --flatten -o jsonpath="{.clusters[0].cluster.$field}")
      [ -z "$value" ] || printf '    %s: %s\n' "$field" "$value"
    done
    printf 'users:\n- name: %s\n  user:\n    token: %s\n' "$account" "$token"
    printf 'contexts:\n- name: %s\n  context: {cluster: cluster, user: %s, namespace: %s}\n' "$account" "$account" "$namespace"
    printf 'current-context: %s\n' "$account"
  } >"$file.tmp"
  mv "$file.tmp" "$file"
}

if [ $on_local_cluster = 1 ]; then
  log "giving the local people their roles in namespace default (hack/cluster/people.yaml)"
  k apply -f hack/cluster/people.yaml >/dev/null
  token_kubeconfig "$RUN_DIR/release-bot.kubeconfig" release-bot default
fi
token_kubeconfig "$RUN_DIR/operator.kubeconfig" "$service_account" "$RELEASE_NAMESPACE"

# The API server of the local control plane reaches the operator's deletion witness on
# loopback (the chart's webhook, for an operator pod, goes through a Service instead).
witness=()
if [ $on_local_cluster = 1 ]; then
  ca_bundle=$(base64 -w0 <"$CLUSTER_DIR/pki/ca.crt")
  selector=""
  [ -z "${DECISION_GATE_NAMESPACE:-}" ] ||
    selector="  namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: $DECISION_GATE_NAMESPACE}}"
  k apply -f - >/dev/null <<YAML
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: decision-gate-local-deletions}
webhooks:
- name: deletions.decisiongate.io
  clientConfig: {url: "https://$WITNESS_ADDR/decision-deletions", caBundle: $ca_bundle}
  rules: [{apiGroups: [decisiongate.io], apiVersions: ["*"], operations: [DELETE], resources: [decisions], scope: Namespaced}]
$selector
  failurePolicy: Ignore
  sideEffects: NoneOnDryRun
  admissionReviewVersions: [v1]
  timeoutSeconds: 5
YAML
  witness=(--deletion-webhook-addr "$WITNESS_ADDR" --deletion-webhook-cert-dir "$CLUSTER_DIR/witness")
fi

mkdir -p "$(dirname "$AUDIT_LOG")"
log "running the operator as system:serviceaccount:$RELEASE_NAMESPACE:$service_account" \
  "(kubeconfig $RUN_DIR/operator.kubeconfig); endpoints on http://$HTTP_ADDR; audit log $AUDIT_LOG"
if [ $on_local_cluster = 1 ]; then
  log "in another terminal: export KUBECONFIG=$ADMIN_KUBECONFIG (the admin); the people are" \
    "$CLUSTER_DIR/users/{alice,bob,carol,dave}.kubeconfig, the agent $RUN_DIR/release-bot.kubeconfig"
fi
log "Ctrl-C stops the operator"
exec env KUBECONFIG="$RUN_DIR/operator.kubeconfig" RUST_LOG="${RUST_LOG:-info}" \
  "$operator" run --http-addr "$HTTP_ADDR" --audit-log "$AUDIT_LOG" --lease-namespace "$RELEASE_NAMESPACE" \
  "${witness[@]}"
