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
IMAGE=registry.example/decision-gate
template() { "$HELM" template decision-gate "$CHART" --kube-version "$KUBERNETES_VERSION" --namespace decision-gate-system --set image.repository=$IMAGE "$@"; }
# The objects of one kind (and, given a name, of that name) in a rendered manifest.
objects() { awk -v kind="kind: $2" -v name="${3:+  name: $3}" '
  /^---/ { if (doc ~ ("\n" kind "\n") && (name == "" || doc ~ ("\n" name "\n"))) printf "%s", doc; doc = "---\n"; next }
  { doc = doc $0 "\n" }
  END { if (doc ~ ("\n" kind "\n") && (name == "" || doc ~ ("\n" name "\n"))) printf "%s", doc }' <<<"$1"; }
refused() { # refused "what" "message it must name" helm-template-args...
  local what=$1 want=$2 out; shift 2
  if out=$(template "$@" 2>&1); then fail "$what was accepted"; fi
  grep -q -- "$want" <<<"$out" || fail "the refusal of $what does not say $want: $out"
}

diff -r crds "$CHART/files/crds" >/dev/null || fail "$CHART/files/crds differs from crds/; run make crds"
"$HELM" lint --strict "$CHART" --set image.repository=$IMAGE
python3 hack/chart-readme.py --check || fail "the chart's README is not generated from values.yaml"

rendered=$(template)
for kind in ServiceAccount ClusterRole ClusterRoleBinding Role RoleBinding Deployment Service PersistentVolumeClaim NetworkPolicy \
  ValidatingAdmissionPolicy ValidatingAdmissionPolicyBinding MutatingAdmissionPolicy MutatingAdmissionPolicyBinding \
  CustomResourceDefinition Job; do
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
# The deletion witness: a webhook that never refuses, served by the operator's pod, only
# where a pod runs.
witness=$(awk '/^kind: ValidatingWebhookConfiguration$/,/^---/' <<<"$rendered")
grep -q "failurePolicy: Ignore" <<<"$witness" && grep -q "operations: \[DELETE\]" <<<"$witness" &&
  grep -q "sideEffects: NoneOnDryRun" <<<"$witness" ||
  fail "the deletion witness is not a webhook for deletions that never refuses: $witness"
grep -q -- "--deletion-webhook-addr=0.0.0.0:9443" <<<"$rendered" || fail "the operator does not serve the deletion witness"
grep -q "^kind: ValidatingWebhookConfiguration$" <<<"$(template --set replicaCount=0)" &&
  fail "the deletion witness is called where no operator pod runs"

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
[ "$(grep -c -- "- podSelector:" <<<"$closed")" = 1 ] && grep -q "app.kubernetes.io/name: decision-gate-test" <<<"$closed" &&
  ! grep -q "namespaceSelector\|ipBlock" <<<"$closed" ||
  fail "a NetworkPolicy without sources admits more than helm test's probe: $closed"

grep -q "terminationGracePeriodSeconds: 40" <<<"$(template --set operator.shutdownTimeout=30s)" ||
  fail "the pod's grace period does not leave room for operator.shutdownTimeout"
grep -q -- "--stall-timeout=5m" <<<"$rendered" || fail "the stall timeout is not passed to the operator"

# Slack: off by default, with no right to impersonate anyone; when on, the operator may
# impersonate exactly the mapped users and groups, and reads its signing secret from a file.
grep -q "verbs: \[impersonate\]" <<<"$rendered" && fail "the operator may impersonate someone while Slack is off"
grep -q -- "--slack-address" <<<"$rendered" && fail "the Slack endpoint is served by default"
slack=$(template --set slack.enabled=true --set slack.signingSecret.secretName=slack-app \
  --set 'slack.users[0].slackUser=U1' --set 'slack.users[0].user=bob' --set 'slack.users[0].groups[0]=approvers' \
  --set 'slack.users[1].slackUser=U2' --set 'slack.users[1].user=dave')
impersonation=$(awk '/^kind: ClusterRole$/,/^---/' <<<"$slack" | awk '/name: decision-gate-slack-impersonate$/,/^---/')
grep -q 'resourceNames: \["bob","dave"\]' <<<"$impersonation" || fail "the operator may not impersonate exactly the mapped users: $impersonation"
grep -q 'resourceNames: \["approvers"\]' <<<"$impersonation" || fail "the operator may not impersonate exactly the mapped groups: $impersonation"
grep -q 'resourceNames: \["system:serviceaccount:decision-gate-system:decision-gate"\]' <<<"$impersonation" ||
  fail "the operator may name someone else than itself as the impersonator of an answer: $impersonation"
[ "$(grep -c "verbs: \[impersonate\]" <<<"$slack")" = 3 ] || fail "the chart grants impersonation beyond the Slack mapping"
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

# No default image that does not exist: the repository must be given, and the refusal says so.
if out=$("$HELM" template decision-gate "$CHART" --kube-version "$KUBERNETES_VERSION" 2>&1); then
  fail "the chart renders without image.repository"
fi
grep -q "image.repository must name" <<<"$out" || fail "the refusal without an image does not name image.repository: $out"
grep -q "image: \"$IMAGE:0.1.0\"" <<<"$rendered" || fail "the image is not image.repository:appVersion"
grep -q "image: \"$IMAGE@sha256:$(printf '0%.0s' {1..64})\"" <<<"$(template --set image.digest=sha256:$(printf '0%.0s' {1..64}))" ||
  fail "image.digest does not pin the image"

# The CRDs are templates, so that helm upgrade upgrades them; Helm keeps them on uninstall.
crds=$(objects "$rendered" CustomResourceDefinition)
[ "$(grep -c "^kind: CustomResourceDefinition$" <<<"$crds")" = 3 ] || fail "the chart does not render the three CRDs"
[ "$(grep -c "helm.sh/resource-policy: keep" <<<"$crds")" = 3 ] || fail "a CRD is not kept when the release is uninstalled"
grep -q "^kind: CustomResourceDefinition$" <<<"$(template --set crds.install=false)" && fail "crds.install=false still renders CRDs"
grep -q "pattern: ^\[a-z0-9\]" <<<"$crds" || fail "the CRDs' regular expressions are not OpenAPI patterns"

# The audit volume: writable by the operator's group on a fresh volume, never pruned by Argo CD.
deployment=$(objects "$rendered" Deployment)
grep -q "fsGroup: 65532" <<<"$deployment" || fail "the pod sets no fsGroup, so a fresh audit volume may not be writable"
grep -q "argocd.argoproj.io/sync-options: Prune=false" <<<"$(objects "$rendered" PersistentVolumeClaim)" ||
  fail "Argo CD may prune the audit claim"
# OpenShift assigns the UIDs: they can be taken out.
openshift=$(objects "$(template --set podSecurityContext.runAsUser=null --set podSecurityContext.runAsGroup=null --set podSecurityContext.fsGroup=null)" Deployment)
grep -q "runAsUser\|fsGroup:" <<<"$openshift" && fail "podSecurityContext's UIDs cannot be taken out: $openshift"
grep -q "runAsNonRoot: true" <<<"$openshift" || fail "taking the UIDs out lets the operator run as root"

# Replicas: more than one needs a claim every node can mount, and then gets a budget and
# prefers different nodes; one has neither.
refused "replicaCount=2 with a ReadWriteOnce audit claim" "audit.persistence.accessModes" --set replicaCount=2
ha=$(template --set replicaCount=2 --set 'audit.persistence.accessModes={ReadWriteMany}')
grep -q "maxUnavailable: 1" <<<"$(objects "$ha" PodDisruptionBudget)" || fail "two replicas get no PodDisruptionBudget"
grep -q "podAntiAffinity:" <<<"$(objects "$ha" Deployment)" || fail "two replicas do not prefer different nodes"
grep -q "type: Recreate" <<<"$(objects "$ha" Deployment)" && fail "ReadWriteMany replicas are recreated, not rolled"
grep -q "^kind: PodDisruptionBudget$" <<<"$rendered" && fail "one replica gets a PodDisruptionBudget that would block every drain"
grep -q "podAntiAffinity:" <<<"$deployment" && fail "one replica gets an anti-affinity"

# Least privilege that follows operator.watchNamespace: Roles there, nothing cluster-wide
# about Jobs or Decisions.
confined=$(template --set operator.watchNamespace=team-a)
cluster_role=$(objects "$confined" ClusterRole decision-gate)
grep -q "batch\|decisiongate.io\|pods\|events" <<<"$cluster_role" &&
  fail "with one namespace watched, the ClusterRole still grants namespaced rights: $cluster_role"
grep -q "tokenreviews" <<<"$cluster_role" || fail "with one namespace watched, the ClusterRole lost the TokenReview right"
role=$(objects "$confined" Role decision-gate)
grep -q "namespace: team-a" <<<"$role" && grep -q "resources: \[jobs\]" <<<"$role" ||
  fail "with one namespace watched, no Role there grants what the operator does: $role"
grep -q "resources: \[jobs\]" <<<"$(objects "$rendered" ClusterRole decision-gate)" ||
  fail "watching every namespace, the ClusterRole does not grant Jobs"

# Chart conventions.
grep -q "name: dg-operator$" <<<"$(objects "$(template --set fullnameOverride=dg-operator)" Deployment)" ||
  fail "fullnameOverride does not name the objects"
grep -q "app.kubernetes.io/name: gate$" <<<"$(template --set nameOverride=gate)" || fail "nameOverride does not set the name label"
own_sa=$(template --set serviceAccount.create=false --set serviceAccount.name=platform-sa)
grep -q "^kind: ServiceAccount$" <<<"$own_sa" && fail "serviceAccount.create=false still creates one"
grep -q "serviceAccountName: platform-sa" <<<"$own_sa" || fail "serviceAccount.name is not used"
refused "serviceAccount.create=false without a name" "serviceAccount.name" --set serviceAccount.create=false
pod=$(objects "$(template --set priorityClassName=critical-ops --set podLabels.team=platform --set 'tolerations[0].key=dedicated' --set 'tolerations[0].operator=Exists')" Deployment)
for want in "priorityClassName: critical-ops" "team: platform" "key: dedicated"; do
  grep -q "$want" <<<"$pod" || fail "the pod lacks $want"
done
grep -q "helm.sh/hook: test" <<<"$(objects "$rendered" Job)" || fail "helm test has no probe"
notes=$("$HELM" install notes-check "$CHART" --dry-run=server --kubeconfig "$ADMIN_KUBECONFIG" --namespace ops \
  --set image.repository=$IMAGE --set crds.install=false --set userRoles.create=false 2>&1 | sed -n '/^NOTES:/,$p')
grep -q "examples/" <<<"$notes" && fail "NOTES.txt points into the repository, which an installed chart does not have: $notes"
grep -q "kubectl create -n <namespace> -f -" <<<"$notes" || fail "NOTES.txt shows no first Decision: $notes"

# The answer policies need Kubernetes 1.36; an older cluster is told so at install.
if out=$("$HELM" template decision-gate "$CHART" --kube-version 1.35.0 2>&1); then
  fail "the chart renders for Kubernetes 1.35, which cannot run its admission policies"
fi
grep -q "kubeVersion: >=1.36.0-0" <<<"$out" || fail "the refusal for Kubernetes 1.35 does not name the version it needs: $out"

for bad in "replicaCount=none" "operator.shutdownTimeout=1m" "audit.persistence.size=lots" "operator.defaultExpiry=tomorrow" "surprise=1" \
  "networkPolicy.apiServerCIDRs={control-plane}" "resources.limits.memory=lots" "resources.limit.memory=1Gi" "operator.logLevel=very loud!" \
  "tolerations[0].operator=Maybe" "affinity.nodeAfinity.x=1" "image.digest=latest" "fullnameOverride=Gate_1"; do
  if out=$(template --set "$bad" 2>&1); then
    fail "the schema accepted $bad"
  fi
  grep -qF "${bad%%[.=\[]*}" <<<"$out" || fail "the schema error for $bad does not name the value: $out"
done

# Install the previous chart, upgrade it to this one, test it and uninstall it, on the local
# control plane, with the audit log on a claim bound to a volume made for the check.
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
crd_field() { kubectl_admin get crd decisions.decisiongate.io -o "jsonpath=$1"; }
action_pattern='{.spec.versions[0].schema.openAPIV3Schema.properties.spec.properties.actionType.pattern}'
ready() { [ "$(kubectl_admin -n "$ns" get deployment chart-check-decision-gate -o jsonpath='{.status.readyReplicas}')" = 1 ]; }
claim() { kubectl_admin -n "$ns" get pvc chart-check-decision-gate-audit -o "jsonpath=$1"; }

# The previous chart installed the CRDs from crds/, which Helm never upgrades. Put them back
# as it left them, so that the upgrade has to bring them up to date.
previous=hack/testdata/decision-gate-0.1.0.tgz
old=$(mktemp -d)
tar -xzf "$previous" -C "$old" decision-gate/crds
kubectl_admin apply --server-side --force-conflicts -f "$old/decision-gate/crds" >/dev/null
rm -rf "$old"
[ -z "$(crd_field "$action_pattern")" ] || fail "the previous chart's CRDs were not put back"
log "chart: installing the previous chart (0.1.0) as release chart-check in $ns"
"$HELM" install chart-check "$previous" --kubeconfig "$ADMIN_KUBECONFIG" --namespace "$ns" --create-namespace \
  --set image.tag=test --set admission.enabled=false --set userRoles.create=false \
  --set audit.persistence.storageClass=chart-check --wait --timeout 120s >/dev/null
[ "$(claim '{.status.phase}')" = Bound ] || fail "the audit claim is not bound"
ready || fail "the previous chart's Deployment did not become ready"
claim_uid=$(claim '{.metadata.uid}')

# The upgrade adopts the CRDs the previous chart left to nobody (--take-ownership, once) and
# upgrades them; the audit claim stays the same claim.
log "chart: upgrading chart-check to this chart"
"$HELM" upgrade chart-check "$CHART" --kubeconfig "$ADMIN_KUBECONFIG" --namespace "$ns" --take-ownership \
  --set image.repository=$IMAGE --set image.tag=test --set admission.enabled=false --set userRoles.create=false \
  --set audit.persistence.storageClass=chart-check --wait --timeout 120s >/dev/null
[ -n "$(crd_field "$action_pattern")" ] || fail "helm upgrade did not upgrade the CRDs"
[ "$(crd_field '{.metadata.annotations.helm\.sh/resource-policy}')" = keep ] || fail "the upgraded CRDs are not kept on uninstall"
[ "$(claim '{.metadata.uid}')" = "$claim_uid" ] || fail "the upgrade replaced the audit claim"
[ "$(claim '{.status.phase}')" = Bound ] || fail "the audit claim is not bound after the upgrade"
ready || fail "the upgraded Deployment did not become ready"
[ "$(kubectl_admin -n "$ns" get deployment chart-check-decision-gate -o 'jsonpath={.spec.template.spec.containers[0].image}')" = "$IMAGE:test" ] ||
  fail "the upgraded Deployment does not run the image asked for"
"$HELM" test chart-check --kubeconfig "$ADMIN_KUBECONFIG" --namespace "$ns" --timeout 120s >/dev/null ||
  fail "helm test failed"

# Uninstalled, the release leaves the CRDs (and so every Decision) and the audit log's claim.
"$HELM" uninstall chart-check --kubeconfig "$ADMIN_KUBECONFIG" --namespace "$ns" --wait --timeout 120s >/dev/null
kubectl_admin get crd decisions.decisiongate.io >/dev/null 2>&1 || fail "uninstalling the release deleted the CRDs"
[ "$(claim '{.metadata.uid}')" = "$claim_uid" ] || fail "uninstalling the release deleted the audit claim"
kubectl_admin -n "$ns" get deployment chart-check-decision-gate >/dev/null 2>&1 && fail "the uninstalled release left its Deployment"
remove_install || fail "could not remove the release chart-check, namespace $ns or volume $ns-audit"
log "chart: lint, template, schema, install, upgrade, test and uninstall checks passed"
