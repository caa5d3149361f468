#!/usr/bin/env bash
# The Helm chart: it lints, renders, keeps the same CRDs as crds/, refuses values outside
# its schema, and installs into the local control plane.
. "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
HELM=${HELM:-$HELM_BIN/helm}
CHART=charts/decision-gate
fail() { printf 'chart check failed: %s\n' "$*" >&2; exit 1; }

diff -r crds "$CHART/crds" >/dev/null || fail "$CHART/crds differs from crds/; run make crds"
"$HELM" lint --strict "$CHART"
rendered=$("$HELM" template decision-gate "$CHART" --kube-version "$KUBERNETES_VERSION" --namespace decision-gate-system)
for kind in ServiceAccount ClusterRole ClusterRoleBinding Deployment Service; do
  grep -q "^kind: $kind$" <<<"$rendered" || fail "helm template renders no $kind"
done
if out=$("$HELM" template decision-gate "$CHART" --kube-version "$KUBERNETES_VERSION" --set replicaCount=none 2>&1); then
  fail "a non-numeric replicaCount was accepted"
fi
grep -q "replicaCount" <<<"$out" || fail "the schema error does not name the bad value: $out"

ns=chart-test-$RANDOM
"$HELM" install decision-gate "$CHART" --kubeconfig "$ADMIN_KUBECONFIG" --namespace "$ns" --create-namespace \
  --set image.tag=test --wait --timeout 120s >/dev/null
kubectl_admin -n "$ns" get deployment decision-gate -o jsonpath='{.status.readyReplicas}' | grep -q 1 ||
  fail "the Deployment did not become ready"
"$HELM" uninstall decision-gate --kubeconfig "$ADMIN_KUBECONFIG" --namespace "$ns" --wait >/dev/null
kubectl_admin delete namespace "$ns" --wait=false >/dev/null
log "chart: lint, template, schema and install checks passed"
