#!/usr/bin/env bash
# The Helm chart: it lints, renders what it should, keeps the same CRDs as crds/, refuses
# values outside its schema, and installs into the local control plane with a real
# PersistentVolumeClaim for the audit log. (The end-to-end suite installs it too, with
# the admission policies, and runs every test against that install.)
. "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
HELM=${HELM:-$HELM_BIN/helm}
CHART=charts/decision-gate
fail() { printf 'chart check failed: %s\n' "$*" >&2; exit 1; }

# The install check's namespace, once it may have created something. Whatever it created
# goes again however the script ends: passing, failing or interrupted.
ns=
remove_install() {
  [ -n "$ns" ] || return 0
  local failed=0
  "$HELM" uninstall chart-check --kubeconfig "$ADMIN_KUBECONFIG" --namespace "$ns" --ignore-not-found \
    --wait --timeout 120s >/dev/null || failed=1
  kubectl_admin delete namespace "$ns" --ignore-not-found --wait=false >/dev/null || failed=1
  kubectl_admin delete pv "$ns-audit" --ignore-not-found --wait=false >/dev/null || failed=1
  [ $failed = 0 ] || return 1
  ns=
}
# On the way out after a failure or an interrupt: clean up, but exit with the status the
# script already had, whatever the cleanup does.
on_exit() {
  local rc=$?
  if [ -n "$ns" ]; then
    log "removing what the install check created (release chart-check, namespace $ns, volume $ns-audit)"
    remove_install || printf 'warning: the release chart-check, namespace %s or volume %s may be left behind\n' "$ns" "$ns-audit" >&2
  fi
  exit $rc
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
template() { "$HELM" template decision-gate "$CHART" --kube-version "$KUBERNETES_VERSION" --namespace decision-gate-system "$@"; }

diff -r crds "$CHART/crds" >/dev/null || fail "$CHART/crds differs from crds/; run make crds"
"$HELM" lint --strict "$CHART"

rendered=$(template)
for kind in ServiceAccount ClusterRole ClusterRoleBinding Role RoleBinding Deployment Service PersistentVolumeClaim NetworkPolicy \
  ValidatingAdmissionPolicy ValidatingAdmissionPolicyBinding MutatingAdmissionPolicy MutatingAdmissionPolicyBinding; do
  grep -q "^kind: $kind$" <<<"$rendered" || fail "helm template renders no $kind"
done
for role in decision-gate-requester decision-gate-approver decision-gate-admin; do
  grep -q "name: $role$" <<<"$rendered" || fail "no ClusterRole $role"
done
grep -q "readOnlyRootFilesystem: true" <<<"$rendered" || fail "the root filesystem is writable"
grep -q "runAsNonRoot: true" <<<"$rendered" || fail "the operator may run as root"
grep -q -- "--allow-real-execution" <<<"$rendered" && fail "real execution is allowed by default"
grep -q -- "--allow-real-execution" <<<"$(template --set operator.allowRealExecution=true)" ||
  fail "operator.allowRealExecution=true does not allow real execution"
grep -q "^kind: ServiceMonitor$" <<<"$(template --set metrics.serviceMonitor.enabled=true)" ||
  fail "metrics.serviceMonitor.enabled=true renders no ServiceMonitor"
grep -q "claimName: kept-audit" <<<"$(template --set audit.persistence.existingClaim=kept-audit)" ||
  fail "audit.persistence.existingClaim is not used"

# The audit log is served only to callers the API server vouches for: the operator may ask
# it (TokenReview, SubjectAccessReview), and the auditor role holds the right it asks about.
for review in tokenreviews subjectaccessreviews; do
  grep -q "resources: \[$review\]" <<<"$rendered" || fail "the operator may not create $review"
done
grep -q "resources: \[decisions/audit\]" <<<"$rendered" || fail "the auditor role does not grant get on decisions/audit"
grep -q "resourceNames: \[decision-gate-metrics:http\]" <<<"$rendered" ||
  fail "the auditor role opens the proxy of other Services than the operator's"

# Only the listed sources reach the HTTP port; the policy can be turned off, and with no
# source at all it admits nothing (never everything).
policy() { awk '/^kind: NetworkPolicy$/,/^---/' <<<"$1"; }
grep -q "kubernetes.io/metadata.name: monitoring" <<<"$(policy "$rendered")" ||
  fail "the NetworkPolicy does not admit the monitoring namespace by default"
grep -q "^kind: NetworkPolicy$" <<<"$(template --set networkPolicy.enabled=false)" &&
  fail "networkPolicy.enabled=false still renders a NetworkPolicy"
grep -q "cidr: 10.0.0.0/24" <<<"$(policy "$(template --set 'networkPolicy.apiServerCIDRs={10.0.0.0/24}')")" ||
  fail "networkPolicy.apiServerCIDRs does not admit the API server"
closed=$(policy "$(template --set 'networkPolicy.httpFrom=null')")
grep -q "ingress: \[\]" <<<"$closed" && ! grep -q "from:" <<<"$closed" ||
  fail "a NetworkPolicy without sources does not admit nothing: $closed"

grep -q "terminationGracePeriodSeconds: 40" <<<"$(template --set operator.shutdownTimeout=30s)" ||
  fail "the pod's grace period does not leave room for operator.shutdownTimeout"
grep -q -- "--stall-timeout=5m" <<<"$rendered" || fail "the stall timeout is not passed to the operator"

# Slack: off by default, with no right to impersonate anyone; when on, the operator may
# impersonate exactly the mapped users and groups, and reads its signing secret from a file.
grep -q "impersonate" <<<"$rendered" && fail "the operator may impersonate someone while Slack is off"
grep -q -- "--slack-address" <<<"$rendered" && fail "the Slack endpoint is served by default"
slack=$(template --set slack.enabled=true --set slack.signingSecret.secretName=slack-app \
  --set 'slack.users[0].slackUser=U1' --set 'slack.users[0].user=bob' --set 'slack.users[0].groups[0]=approvers' \
  --set 'slack.users[1].slackUser=U2' --set 'slack.users[1].user=dave')
impersonation=$(awk '/^kind: ClusterRole$/,/^---/' <<<"$slack" | awk '/name: decision-gate-slack-impersonate$/,/^---/')
grep -q 'resourceNames: \["bob","dave"\]' <<<"$impersonation" || fail "the operator may not impersonate exactly the mapped users: $impersonation"
grep -q 'resourceNames: \["approvers"\]' <<<"$impersonation" || fail "the operator may not impersonate exactly the mapped groups: $impersonation"
[ "$(grep -c "verbs: \[impersonate\]" <<<"$slack")" = 2 ] || fail "the chart grants impersonation beyond the Slack mapping"
grep -q "resourceNames: \[decision-gate-slack-users\]" <<<"$slack" || fail "the operator may not read the Slack user mapping"
grep -q -- "--slack-address=0.0.0.0:8090" <<<"$slack" || fail "slack.enabled does not serve the Slack endpoint"
grep -q -- "--slack-signing-secret-file=/etc/decision-gate-slack/signing-secret" <<<"$slack" || fail "the signing secret is not passed as a file"
grep -q "secretName: slack-app" <<<"$slack" || fail "the signing secret is not mounted from its Secret"
grep -q "name: decision-gate-slack$" <<<"$slack" || fail "slack.enabled renders no Service for the endpoint"
if out=$(template --set slack.enabled=true 2>&1); then
  fail "slack.enabled renders without a signing secret"
fi
grep -q "slack.signingSecret.secretName" <<<"$out" || fail "the refusal without a signing secret does not say what is missing: $out"
if out=$(template --set slack.enabled=true --set slack.signingSecret.secretName=s --set 'slack.users[0].slackUser=U1' --set 'slack.users[0].user=system:admin' 2>&1); then
  fail "the schema lets Slack users act as system:admin"
fi

# The answer policies need Kubernetes 1.36; an older cluster is told so at install.
if out=$("$HELM" template decision-gate "$CHART" --kube-version 1.35.0 2>&1); then
  fail "the chart renders for Kubernetes 1.35, which cannot run its admission policies"
fi
grep -q "kubeVersion: >=1.36.0-0" <<<"$out" || fail "the refusal for Kubernetes 1.35 does not name the version it needs: $out"

for bad in "replicaCount=none" "operator.shutdownTimeout=1m" "audit.persistence.size=lots" "operator.defaultExpiry=tomorrow" "surprise=1" \
  "networkPolicy.apiServerCIDRs={control-plane}"; do
  if out=$(template --set "$bad" 2>&1); then
    fail "the schema accepted $bad"
  fi
  grep -q "${bad%%[.=]*}" <<<"$out" || fail "the schema error for $bad does not name the value: $out"
done

# Install for real, with the audit log on a claim bound to a volume made for the check.
ns=chart-check-$RANDOM
kubectl_admin apply -f - >/dev/null <<YAML
apiVersion: v1
kind: PersistentVolume
metadata: {name: $ns-audit}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  storageClassName: chart-check
  hostPath: {path: /tmp/$ns}
YAML
"$HELM" install chart-check "$CHART" --kubeconfig "$ADMIN_KUBECONFIG" --namespace "$ns" --create-namespace \
  --set image.tag=test --set admission.enabled=false --set userRoles.create=false \
  --set audit.persistence.storageClass=chart-check --wait --timeout 120s >/dev/null
[ "$(kubectl_admin -n "$ns" get pvc chart-check-decision-gate-audit -o jsonpath='{.status.phase}')" = Bound ] ||
  fail "the audit claim is not bound"
[ "$(kubectl_admin -n "$ns" get deployment chart-check-decision-gate -o jsonpath='{.status.readyReplicas}')" = 1 ] ||
  fail "the Deployment did not become ready"
remove_install || fail "could not remove the release chart-check, namespace $ns or volume $ns-audit"
log "chart: lint, template, schema and install checks passed"
