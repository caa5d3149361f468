#!/usr/bin/env bash
# The local Kubernetes control plane: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler and kwok (fake nodes), on loopback, with real RBAC, client certificates
# for the admin and the components, and bearer tokens for the people.
#
# With root, a real node beside them runs containers for real (hack/node.sh).
#
#   hack/cluster.sh up       start what is not running (idempotent)
#   hack/cluster.sh down     stop every process of the control plane
#   hack/cluster.sh status   what runs, and the API server's version and nodes
#   hack/cluster.sh reset    down, then forget all state (certificates, etcd data)
#   hack/cluster.sh restart COMPONENT   stop one component and start it again
#   hack/cluster.sh argocd up|down|status   Argo CD beside it (hack/argocd.sh)
. "$(dirname "$0")/lib.sh"

PKI=$CLUSTER_DIR/pki
LOGS=$CLUSTER_DIR/logs
PIDS=$CLUSTER_DIR/pids
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

pid_of() { cat "$PIDS/$1.pid" 2>/dev/null || true; }

# The program a component runs.
binary_of() {
  case $1 in
    etcd) echo "$ETCD_BIN/etcd" ;;
    kwok) echo "$KWOK_BIN/kwok" ;;
    kube-apiserver | kube-controller-manager | kube-scheduler) echo "$K8S_BIN/$1" ;;
    argocd-* | git-daemon) argocd_binary_of "$1" ;;
    *) node_binary_of "$1" ;;
  esac
}

# runs BINARY PID: process PID is alive and is BINARY started for this cluster: its argv[0]
# is BINARY, /proc/PID/exe is BINARY's file, and it or one of its arguments lies in this
# cluster's directory (or the real node's runtime directory, which containerd's shims name).
# Any other process, such as a `tail -f` of a log here, a reused pid, a zombie or the same
# component of another cluster, fails the check.
runs() {
  local binary=$1 pid=$2 arg exe args=()
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  mapfile -d '' -t args 2>/dev/null <"/proc/$pid/cmdline" || return 1
  [ "${args[0]:-}" = "$binary" ] || return 1
  for arg in "${args[@]}"; do
    if [[ $arg == "$CLUSTER_DIR"/* || $arg == "$NODE_RUN"/* ]]; then
      # The same file, or the file at that path before it was replaced.
      [ "/proc/$pid/exe" -ef "$binary" ] && return 0
      exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
      [ "${exe% (deleted)}" = "$(readlink -f -- "$binary")" ]
      return
    fi
  done
  return 1
}
not_running() { ! runs "$@"; }
is_running() { runs "$(binary_of "$1")" "$(pid_of "$1")"; }

# Starts a component's program in its own session so that it outlives the calling make
# target. setsid runs it in place (a background job of this shell never leads a process
# group, so setsid need not fork), which makes $! the component's own pid.
start() {
  local name=$1
  shift
  mkdir -p "$LOGS" "$PIDS"
  log "starting $name (log: $LOGS/$name.log)"
  setsid "$(binary_of "$name")" "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$PIDS/$name.pid"
}

new_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# issue NAME SUBJECT EXTENSIONS: a key and a certificate signed by the local CA.
issue() {
  local name=$1 subject=$2 ext=$3
  new_key "$PKI/$name.key"
  openssl req -new -key "$PKI/$name.key" -subj "$subject" -out "$PKI/$name.csr" 2>/dev/null
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 3650 -out "$PKI/$name.crt" -extfile <(printf '%b' "$ext") 2>/dev/null
  rm -f "$PKI/$name.csr"
}

CLIENT_EXT='basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth'

ensure_pki() {
  [ -f "$PKI/done" ] && return 0
  log "creating the local CA, serving and client certificates"
  rm -rf "$PKI" && mkdir -p "$PKI"
  new_key "$PKI/ca.key"
  openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=decision-gate-local-ca" -days 3650 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$PKI/ca.crt" 2>/dev/null
  issue apiserver "/CN=kube-apiserver" \
    "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  issue admin "/O=system:masters/CN=admin" "$CLIENT_EXT"
  issue kube-controller-manager "/CN=system:kube-controller-manager" "$CLIENT_EXT"
  issue kube-scheduler "/CN=system:kube-scheduler" "$CLIENT_EXT"
  issue kwok "/O=system:masters/CN=kwok" "$CLIENT_EXT"
  # Service-account tokens are signed with this key.
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$PKI/sa.key" 2>/dev/null
  openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  touch "$PKI/done"
}

# Certificates added since a cluster's PKI was first made.
ensure_pki_additions() {
  [ -f "$PKI/apiserver-kubelet-client.crt" ] ||
    issue apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "$CLIENT_EXT"
}

# started_with NAME ARGS...: the running component NAME was started with exactly ARGS.
started_with() {
  local want have
  want=$(printf '%s\0' "$(binary_of "$1")" "${@:2}" | base64 -w0)
  have=$(base64 -w0 <"/proc/$(pid_of "$1")/cmdline")
  [ "$want" = "$have" ]
}

# A serving certificate of the local CA for 127.0.0.1, in the layout the operator reads
# (tls.crt, tls.key): the API server calls a local operator's deletion witness with it.
ensure_witness_cert() {
  local dir=$CLUSTER_DIR/witness
  [ -f "$dir/tls.crt" ] && return 0
  mkdir -p "$dir"
  issue witness "/CN=decision-gate-deletion-witness" \
    "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1"
  mv "$PKI/witness.crt" "$dir/tls.crt"
  mv "$PKI/witness.key" "$dir/tls.key"
}

# The people of the tests: alice and bob approve, carol is an SRE, dave is nobody. They sign
# in with static bearer tokens (--token-auth-file), as people do with OIDC or exec plugins
# elsewhere: a token can be passed on and checked with a TokenReview, which the operator's
# audit endpoints need; a client certificate cannot.
PEOPLE=(alice:approvers bob:approvers carol:sre dave:)
TOKENS=$PKI/tokens.csv

ensure_tokens() {
  [ -f "$TOKENS" ] && return 0
  log "creating bearer tokens for ${PEOPLE[*]%%:*}"
  local person user groups
  for person in "${PEOPLE[@]}"; do
    user=${person%%:*} groups=${person#*:}
    # token,user,uid[,"group,..."]
    printf '%s,%s,%s%s\n' "$(openssl rand -hex 24)" "$user" "$user" "${groups:+,\"$groups\"}"
  done >"$TOKENS.tmp"
  chmod 600 "$TOKENS.tmp" && mv "$TOKENS.tmp" "$TOKENS"
}

token_of() { awk -F, -v user="$1" '$2 == user {print $1}' "$TOKENS"; }

# kubeconfig FILE USER [TOKEN]: a self-contained kubeconfig for USER's client certificate,
# or for a bearer token: TOKEN, or USER's when USER is one of the people.
kubeconfig() {
  local file=$1 user=$2 credentials token=${3:-}
  [ -n "$token" ] || token=$(token_of "$user")
  if [ -n "$token" ]; then
    credentials="token: $token"
  else
    credentials="client-certificate-data: $(base64 -w0 "$PKI/$user.crt")
    client-key-data: $(base64 -w0 "$PKI/$user.key")"
  fi
  mkdir -p "$(dirname "$file")"
  cat >"$file.tmp" <<YAML
apiVersion: v1
kind: Config
clusters:
- name: decision-gate-local
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
- name: $user
  user:
    $credentials
contexts:
- name: $user@decision-gate-local
  context:
    cluster: decision-gate-local
    user: $user
    namespace: default
current-context: $user@decision-gate-local
YAML
  chmod 600 "$file.tmp" && mv "$file.tmp" "$file"
}

ensure_kubeconfigs() {
  kubeconfig "$ADMIN_KUBECONFIG" admin
  local c
  for c in kube-controller-manager kube-scheduler kwok; do kubeconfig "$CLUSTER_DIR/components/$c.kubeconfig" "$c"; done
  for c in "${PEOPLE[@]%%:*}"; do kubeconfig "$CLUSTER_DIR/users/$c.kubeconfig" "$c"; done
}

etcd_healthy() { curl -fsS "http://127.0.0.1:$ETCD_PORT/health" | grep -q '"health":"true"'; }
apiserver_ready() {
  curl -fsS --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
    "https://127.0.0.1:$APISERVER_PORT/readyz" | grep -q ok
}
nodes_ready() {
  [ "$(kubectl_admin get nodes -l type=kwok -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c True)" = 2 ]
}

# A network namespace joined to this host by a veth pair: the API server's service proxy
# refuses loopback addresses, so an operator running outside the cluster is reached
# through an address in this namespace (see tests/e2e). Needs root; skipped otherwise.
# A /30 of its own per cluster (by directory and port), so that two clusters never clash.
subnet_octet=$(( $(printf '%s' "$CLUSTER_DIR:$APISERVER_PORT" | cksum | cut -d' ' -f1) % 250 + 1 ))
OPERATOR_NETNS=dg-$subnet_octet
OPERATOR_HOST_ENV=$CLUSTER_DIR/operator-host.env
HOST_IP=10.213.$subnet_octet.1
NETNS_IP=10.213.$subnet_octet.2

# shellcheck source=node.sh
. "$REPO_ROOT/hack/node.sh"
# shellcheck source=argocd.sh
. "$REPO_ROOT/hack/argocd.sh"

ensure_operator_netns() {
  if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null; then
    rm -f "$OPERATOR_HOST_ENV"
    log "not root: no network namespace for reaching a local operator through the API server"
    return 0
  fi
  if ! ip netns list | grep -qw "$OPERATOR_NETNS"; then
    ip netns add "$OPERATOR_NETNS"
    ip link add "$OPERATOR_NETNS-h" type veth peer name "$OPERATOR_NETNS-n"
    ip link set "$OPERATOR_NETNS-n" netns "$OPERATOR_NETNS"
    ip addr add "$HOST_IP/30" dev "$OPERATOR_NETNS-h"
    ip link set "$OPERATOR_NETNS-h" up
    ip netns exec "$OPERATOR_NETNS" ip addr add "$NETNS_IP/30" dev "$OPERATOR_NETNS-n"
    ip netns exec "$OPERATOR_NETNS" ip link set "$OPERATOR_NETNS-n" up
    ip netns exec "$OPERATOR_NETNS" ip link set lo up
  fi
  printf 'OPERATOR_NETNS=%s\nHOST_IP=%s\nNETNS_IP=%s\n' "$OPERATOR_NETNS" "$HOST_IP" "$NETNS_IP" >"$OPERATOR_HOST_ENV"
}

remove_operator_netns() {
  rm -f "$OPERATOR_HOST_ENV"
  [ "$(id -u)" = 0 ] && command -v ip >/dev/null || return 0
  if ip netns list 2>/dev/null | grep -qw "$OPERATOR_NETNS"; then
    ip netns pids "$OPERATOR_NETNS" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
    ip link del "$OPERATOR_NETNS-h" 2>/dev/null || true
    ip netns del "$OPERATOR_NETNS" || true
  fi
}

up() {
  "$REPO_ROOT/hack/build-tools.sh" cluster
  command -v openssl >/dev/null || die "openssl is required (apt-get install openssl)"
  ensure_pki
  ensure_pki_additions
  ensure_witness_cert
  ensure_tokens
  ensure_kubeconfigs
  mkdir -p "$CLUSTER_DIR/etcd"

  if ! is_running etcd; then
    start etcd --name local --data-dir "$CLUSTER_DIR/etcd" \
      --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
      --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
      --initial-cluster "local=http://127.0.0.1:$ETCD_PEER_PORT" --log-level warn \
      --unsafe-no-fsync
  fi
  wait_until "etcd to be healthy" 60 etcd_healthy || { tail -n 20 "$LOGS/etcd.log" >&2; exit 1; }

  # The Node authorizer and NodeRestriction judge the real node's kubelet, as on any
  # cluster; the API server reaches kubelets with a client certificate of the local CA.
  # shellcheck disable=SC2046 # the advertise arguments are words of their own
  local apiserver_args=(
    --etcd-servers "http://127.0.0.1:$ETCD_PORT"
    --bind-address 127.0.0.1 --secure-port "$APISERVER_PORT" $(apiserver_advertise_args)
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key"
    --client-ca-file "$PKI/ca.crt" --token-auth-file "$TOKENS"
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction
    --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" --kubelet-client-key "$PKI/apiserver-kubelet-client.key"
    --kubelet-certificate-authority "$PKI/ca.crt" --kubelet-preferred-address-types InternalIP
    --service-account-issuer https://kubernetes.default.svc.cluster.local
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key"
    --service-cluster-ip-range 10.0.0.0/24
    --allow-privileged=true --profiling=false
  )
  # An API server started with other flags (before the people had tokens, or before the
  # real node) is started again with these.
  if is_running kube-apiserver && ! started_with kube-apiserver "${apiserver_args[@]}"; then
    log "restarting kube-apiserver: its flags have changed"
    stop kube-apiserver
  fi
  is_running kube-apiserver || start kube-apiserver "${apiserver_args[@]}"
  wait_until "kube-apiserver to be ready" 120 apiserver_ready || { tail -n 30 "$LOGS/kube-apiserver.log" >&2; exit 1; }

  if ! is_running kube-controller-manager; then
    start kube-controller-manager \
      --kubeconfig "$CLUSTER_DIR/components/kube-controller-manager.kubeconfig" \
      --authentication-kubeconfig "$CLUSTER_DIR/components/kube-controller-manager.kubeconfig" \
      --authorization-kubeconfig "$CLUSTER_DIR/components/kube-controller-manager.kubeconfig" \
      --use-service-account-credentials=true \
      --kube-api-qps 200 --kube-api-burst 400 --concurrent-job-syncs 20 \
      --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
      --leader-elect=false --secure-port 0 --profiling=false
  fi
  if ! is_running kube-scheduler; then
    start kube-scheduler \
      --kubeconfig "$CLUSTER_DIR/components/kube-scheduler.kubeconfig" \
      --authentication-kubeconfig "$CLUSTER_DIR/components/kube-scheduler.kubeconfig" \
      --authorization-kubeconfig "$CLUSTER_DIR/components/kube-scheduler.kubeconfig" \
      --kube-api-qps 200 --kube-api-burst 400 \
      --leader-elect=false --secure-port 0 --profiling=false
  fi
  if ! is_running kwok; then
    start kwok \
      --kubeconfig "$CLUSTER_DIR/components/kwok.kubeconfig" \
      --config "$REPO_ROOT/hack/cluster/kwok-stages.yaml" \
      --manage-all-nodes=false --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
      --node-ip 127.0.0.1 --cidr 10.244.0.0/16 --node-lease-duration-seconds 40
  fi

  kubectl_admin apply -f "$REPO_ROOT/hack/cluster/nodes.yaml" >/dev/null
  wait_until "the kwok nodes to be Ready" 90 nodes_ready || { tail -n 20 "$LOGS/kwok.log" >&2; exit 1; }
  ensure_operator_netns
  wait_until "the controller manager to create the default ServiceAccount" 90 \
    kubectl_admin get serviceaccount default -n default ||
    { tail -n 20 "$LOGS/kube-controller-manager.log" >&2; exit 1; }
  node_up
  log "local control plane is up: export KUBECONFIG=$ADMIN_KUBECONFIG"
}

# stop_process NAME PID: SIGTERM, then SIGKILL if it is still there after 30 seconds, then
# fails if it is still there 10 seconds after that. PID is signalled only while it runs
# NAME's program for this cluster; a pid that does not is left alone.
stop_process() {
  local name=$1 pid=$2 binary
  binary=$(binary_of "$name")
  runs "$binary" "$pid" || return 0
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  wait_until "$name to stop" 30 not_running "$binary" "$pid" 2>/dev/null && return 0
  if runs "$binary" "$pid"; then
    log "$name (pid $pid) still runs 30s after SIGTERM: sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait_until "$name (pid $pid) to exit after SIGKILL" 10 not_running "$binary" "$pid"
}

# Stops one component, by the pid its pid file records.
stop() {
  local name=$1
  stop_process "$name" "$(pid_of "$name")"
  rm -f "$PIDS/$name.pid"
}

# stop_in_reverse NAME...: stops the components, last first. A copy whose pid file was
# lost goes too, in the same order: found by what it runs, never by words on a command line.
stop_in_reverse() {
  local i name pid found names=("$@")
  for ((i = ${#names[@]} - 1; i >= 0; i--)); do
    name=${names[$i]}
    stop "$name"
    mapfile -t found < <(leftovers "$name")
    for pid in "${found[@]}"; do stop_process "$name" "${pid#* }"; done
  done
}

down() {
  argocd_down
  node_down
  stop_in_reverse "${COMPONENTS[@]}"
  wait_until "every control-plane process to exit" 30 no_leftovers
  remove_operator_netns
}

# Stops one component and starts it again (with whatever else is not running), as a
# crash and restart of that component would.
restart() {
  local name=$1
  [[ " ${COMPONENTS[*]} ${NODE_COMPONENTS[*]} " == *" $name "* ]] || die "no component $name; one of ${COMPONENTS[*]} ${NODE_COMPONENTS[*]}"
  stop "$name"
  up
}

# leftovers [COMPONENT...]: every process that runs the program of one of the components
# (default: all) for this cluster (see runs), pid file or not, as lines "NAME PID".
leftovers() {
  local name cmdline pid argv0
  local -A component_of=()
  for name in "${@:-${COMPONENTS[@]}}"; do component_of[$(binary_of "$name")]=$name; done
  for cmdline in /proc/[0-9]*/cmdline; do
    pid=${cmdline#/proc/} pid=${pid%/cmdline}
    # argv[0] first: a builtin read per process, and the full check only for candidates.
    IFS= read -r -d '' argv0 2>/dev/null <"$cmdline" || continue
    name=${component_of[$argv0]:-}
    if [ -n "$name" ] && runs "$argv0" "$pid"; then echo "$name $pid"; fi
  done
}
no_leftovers() { [ -z "$(leftovers)" ]; }

# show_running NAME...: a line per component, running (with its pid) or stopped; fails when
# one is stopped.
show_running() {
  local name rc=0
  for name in "$@"; do
    if is_running "$name"; then
      printf '%-30s running (pid %s)\n' "$name" "$(pid_of "$name")"
    else
      printf '%-30s stopped\n' "$name"
      rc=1
    fi
  done
  return $rc
}

status() {
  local rc=0
  local components=("${COMPONENTS[@]}")
  node_enabled && components+=("${NODE_COMPONENTS[@]}")
  show_running "${components[@]}" || rc=1
  if apiserver_ready 2>/dev/null; then
    printf '%-30s %s\n' "API server" "https://127.0.0.1:$APISERVER_PORT ($(kubectl_admin get --raw /version | grep -o '"gitVersion": *"[^"]*"' | cut -d'"' -f4))"
    kubectl_admin get nodes
    printf 'kubeconfigs: %s, %s/users/{alice,bob,carol,dave}.kubeconfig\n' "$ADMIN_KUBECONFIG" "$CLUSTER_DIR"
  fi
  # Argo CD, when it was started (make argocd-up).
  [ ! -f "$ARGOCD_ENV" ] || argocd_status || true
  return $rc
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  reset) down; node_forget; rm -rf "$CLUSTER_DIR" ;;
  residue) node_residue ;;
  restart) restart "${2:?which component}" ;;
  argocd)
    case "${2:-}" in
      up) argocd_up ;;
      down) argocd_down ;;
      status) argocd_status ;;
      *) die "usage: $0 argocd up|down|status" ;;
    esac ;;
  *) die "usage: $0 up|down|status|reset|residue|restart COMPONENT|argocd up|down|status" ;;
esac
