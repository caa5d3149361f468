# Argo CD beside the local control plane, to sync applications that hold Decisions: its
# application controller and repo server (built from the Go module proxy by
# hack/build-tools.sh argocd), Debian's Redis, which both use as their cache, and a git
# daemon on loopback serving the repositories the applications sync from. Sourced by
# hack/cluster.sh, whose process helpers (start, stop, is_running) it uses.
#
# It is configured as our docs tell users to configure theirs: Argo CD's own CRDs and its
# controller's ServiceAccount and ClusterRole from the same module, the project `default`,
# and the chart's health checks as resource customizations in argocd-cm. It has no API
# server, UI or Dex: Applications are created and read through the Kubernetes API, as
# `kubectl` users of Argo CD do. The in-cluster destination, https://kubernetes.default.svc,
# is this cluster (ARGOCD_FAKE_IN_CLUSTER, which Argo CD's own local runs use).
#
#   hack/cluster.sh argocd up       start it (and the cluster, when it is not running)
#   hack/cluster.sh argocd down     stop it
#   hack/cluster.sh argocd status   what of it runs

ARGOCD_DIR=$CLUSTER_DIR/argocd
ARGOCD_NAMESPACE=argocd
ARGOCD_GIT_DIR=$ARGOCD_DIR/git
# Written by argocd_up for the tests and for people: the namespace, where the repositories
# live on disk and the URL Argo CD reads them from.
ARGOCD_ENV=$ARGOCD_DIR/argocd.env
ARGOCD_REDIS_PORT=${DECISION_GATE_ARGOCD_REDIS_PORT:-26379}
ARGOCD_REPO_SERVER_PORT=${DECISION_GATE_ARGOCD_REPO_SERVER_PORT:-28081}
ARGOCD_REPO_SERVER_METRICS_PORT=${DECISION_GATE_ARGOCD_REPO_SERVER_METRICS_PORT:-28084}
ARGOCD_CONTROLLER_METRICS_PORT=${DECISION_GATE_ARGOCD_CONTROLLER_METRICS_PORT:-28082}
GIT_DAEMON_PORT=${DECISION_GATE_GIT_DAEMON_PORT:-29418}
# Started in this order and stopped in the reverse one.
ARGOCD_COMPONENTS=(argocd-redis git-daemon argocd-repo-server argocd-application-controller)

argocd_binary_of() {
  case $1 in
    argocd-redis) command -v redis-server ;;
    git-daemon) echo "$(git --exec-path)/git-daemon" ;;
    # Links in the cluster's directory to the one program, which runs as its name says.
    argocd-repo-server | argocd-application-controller) echo "$ARGOCD_DIR/bin/$1" ;;
  esac
}

argocd_redis_ready() { redis-cli -h 127.0.0.1 -p "$ARGOCD_REDIS_PORT" ping | grep -q PONG; }
argocd_repo_server_ready() { curl -fsS "http://127.0.0.1:$ARGOCD_REPO_SERVER_METRICS_PORT/healthz" >/dev/null; }
argocd_controller_ready() { curl -fsS "http://127.0.0.1:$ARGOCD_CONTROLLER_METRICS_PORT/healthz" >/dev/null; }
git_daemon_ready() { (exec 3<>"/dev/tcp/127.0.0.1/$GIT_DAEMON_PORT") 2>/dev/null; }
argocd_token_issued() {
  [ -n "$(kubectl_admin -n "$ARGOCD_NAMESPACE" get secret argocd-application-controller-token -o jsonpath='{.data.token}' 2>/dev/null)" ]
}

# Argo CD's objects in the cluster: its CRDs, its namespace, the controller's identity and
# RBAC (Argo CD's own manifests), its settings, and the project every application of the
# tests and examples uses.
argocd_configure() {
  local manifests=$ARGOCD_BIN/manifests charts=$REPO_ROOT/charts/decision-gate/argocd
  kubectl_admin apply --server-side --force-conflicts -f "$manifests/crds" >/dev/null
  kubectl_admin wait --for=condition=Established --timeout=60s -f "$manifests/crds" >/dev/null
  kubectl_admin create namespace "$ARGOCD_NAMESPACE" --dry-run=client -o yaml | kubectl_admin apply -f - >/dev/null
  # The controller acts as its ServiceAccount, with the ClusterRole Argo CD installs for it,
  # through a token that lives as long as the ServiceAccount.
  kubectl_admin apply -f "$manifests/rbac" >/dev/null
  kubectl_admin apply -f - >/dev/null <<YAML
apiVersion: v1
kind: ServiceAccount
metadata: {name: argocd-application-controller, namespace: $ARGOCD_NAMESPACE}
---
apiVersion: v1
kind: Secret
type: kubernetes.io/service-account-token
metadata:
  name: argocd-application-controller-token
  namespace: $ARGOCD_NAMESPACE
  annotations: {kubernetes.io/service-account.name: argocd-application-controller}
---
apiVersion: v1
kind: Secret
metadata:
  name: argocd-secret
  namespace: $ARGOCD_NAMESPACE
  labels: {app.kubernetes.io/name: argocd-secret, app.kubernetes.io/part-of: argocd}
stringData: {server.secretkey: local-argocd-$(printf '%s' "$CLUSTER_DIR" | cksum | cut -d' ' -f1)}
---
apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata: {name: default, namespace: $ARGOCD_NAMESPACE}
spec:
  sourceRepos: ['*']
  destinations: [{namespace: '*', server: '*'}]
  clusterResourceWhitelist: [{group: '*', kind: '*'}]
YAML
  # The chart's health checks, as charts/decision-gate/argocd/README.md says to install them.
  kubectl_admin -n "$ARGOCD_NAMESPACE" create configmap argocd-cm \
    --from-file=resource.customizations.health.decisiongate.io_Decision="$charts/decision.lua" \
    --from-file=resource.customizations.health.decisiongate.io_ExecutionPlan="$charts/executionplan.lua" \
    --from-file=resource.customizations.health.decisiongate.io_ApprovalPolicy="$charts/approvalpolicy.lua" \
    --dry-run=client -o yaml |
    kubectl_admin label --local -f - -o yaml app.kubernetes.io/name=argocd-cm app.kubernetes.io/part-of=argocd |
    kubectl_admin apply -f - >/dev/null
  wait_until "the controller's ServiceAccount token" 60 argocd_token_issued ||
    { tail -n 20 "$LOGS/kube-controller-manager.log" >&2; exit 1; }
  kubeconfig "$ARGOCD_DIR/controller.kubeconfig" argocd-application-controller \
    "$(kubectl_admin -n "$ARGOCD_NAMESPACE" get secret argocd-application-controller-token -o jsonpath='{.data.token}' | base64 -d)"
}

argocd_up() {
  apiserver_ready 2>/dev/null || up
  "$REPO_ROOT/hack/build-tools.sh" argocd
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null ||
    die "Argo CD needs Redis: apt-get install redis-server (make deps does, as root)"
  mkdir -p "$ARGOCD_DIR/bin" "$ARGOCD_DIR/redis" "$ARGOCD_DIR/tmp" "$ARGOCD_DIR/home" "$ARGOCD_GIT_DIR"
  ln -sfn "$ARGOCD_BIN/argocd" "$ARGOCD_DIR/bin/argocd-repo-server"
  ln -sfn "$ARGOCD_BIN/argocd" "$ARGOCD_DIR/bin/argocd-application-controller"
  argocd_configure
  cat >"$ARGOCD_DIR/redis.conf" <<CONF
bind 127.0.0.1
port $ARGOCD_REDIS_PORT
dir $ARGOCD_DIR/redis
save ""
appendonly no
set-proc-title no
CONF
  is_running argocd-redis || start argocd-redis "$ARGOCD_DIR/redis.conf"
  wait_until "Argo CD's Redis" 30 argocd_redis_ready || { tail -n 20 "$LOGS/argocd-redis.log" >&2; exit 1; }
  # Repositories are served read-only; the tests and people push to them on disk.
  is_running git-daemon || start git-daemon --reuseaddr --listen=127.0.0.1 --port="$GIT_DAEMON_PORT" \
    --base-path="$ARGOCD_GIT_DIR" --export-all --informative-errors "$ARGOCD_GIT_DIR"
  wait_until "the git daemon" 30 git_daemon_ready || { tail -n 20 "$LOGS/git-daemon.log" >&2; exit 1; }
  # The repo server runs helm (charts as sources) and git from PATH, and keeps its clones
  # in its TMPDIR, which starts empty: the repositories of earlier runs are gone.
  if ! is_running argocd-repo-server; then rm -rf "${ARGOCD_DIR:?}/tmp" && mkdir -p "$ARGOCD_DIR/tmp"; fi
  is_running argocd-repo-server ||
    PATH="$HELM_BIN:$PATH" TMPDIR="$ARGOCD_DIR/tmp" HOME="$ARGOCD_DIR/home" ARGOCD_GPG_ENABLED=false \
      start argocd-repo-server --disable-tls --address 127.0.0.1 --port "$ARGOCD_REPO_SERVER_PORT" \
      --metrics-address 127.0.0.1 --metrics-port "$ARGOCD_REPO_SERVER_METRICS_PORT" \
      --redis "127.0.0.1:$ARGOCD_REDIS_PORT" --loglevel info --logformat text
  wait_until "Argo CD's repo server" 60 argocd_repo_server_ready || { tail -n 20 "$LOGS/argocd-repo-server.log" >&2; exit 1; }
  is_running argocd-application-controller ||
    ARGOCD_FAKE_IN_CLUSTER=true KUBECONFIG="$ARGOCD_DIR/controller.kubeconfig" HOME="$ARGOCD_DIR/home" \
      start argocd-application-controller --kubeconfig "$ARGOCD_DIR/controller.kubeconfig" \
      --namespace "$ARGOCD_NAMESPACE" --repo-server "127.0.0.1:$ARGOCD_REPO_SERVER_PORT" --repo-server-plaintext \
      --redis "127.0.0.1:$ARGOCD_REDIS_PORT" --metrics-port "$ARGOCD_CONTROLLER_METRICS_PORT" \
      --loglevel info --logformat text
  wait_until "Argo CD's application controller" 60 argocd_controller_ready ||
    { tail -n 20 "$LOGS/argocd-application-controller.log" >&2; exit 1; }
  cat >"$ARGOCD_ENV" <<ENV
ARGOCD_NAMESPACE=$ARGOCD_NAMESPACE
ARGOCD_GIT_DIR=$ARGOCD_GIT_DIR
ARGOCD_GIT_URL=git://127.0.0.1:$GIT_DAEMON_PORT
ENV
  log "Argo CD is up: Applications in namespace $ARGOCD_NAMESPACE; repositories in $ARGOCD_GIT_DIR, served as git://127.0.0.1:$GIT_DAEMON_PORT/<name>"
}

argocd_down() {
  rm -f "$ARGOCD_ENV"
  stop_in_reverse "${ARGOCD_COMPONENTS[@]}"
}

argocd_status() {
  show_running "${ARGOCD_COMPONENTS[@]}" && cat "$ARGOCD_ENV"
}
