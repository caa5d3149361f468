# The real node of the local cluster, beside the kwok nodes: a kubelet on containerd and
# runc that runs real containers, kube-proxy for Services, CoreDNS for the cluster's names,
# and an image registry on loopback that containerd pulls from. Sourced by hack/cluster.sh,
# whose process helpers (start, stop, is_running) it uses. Needs root; everything it makes
# (mounts, interfaces, iptables rules, cgroups) goes again with `hack/cluster.sh down`.
#
# Pods meant for it select and tolerate it, as pods meant for any dedicated node do:
#   nodeSelector: {decisiongate.io/node: real}
#   tolerations: [{key: decisiongate.io/real-node, operator: Exists, effect: NoSchedule}]
# Every other pod goes to the kwok nodes.

# The node's configuration, its volumes and what down must put back live with the cluster;
# what the kubelet and containerd keep (mounts, sockets, images) lives under short paths of
# their own, keyed by the cluster's directory: a unix socket's path has at most 107
# characters, and the kubelet's sockets are deep in its directory.
NODE_DIR=$CLUSTER_DIR/node
NODE_ID=$(printf '%s' "$CLUSTER_DIR" | cksum | cut -d' ' -f1)
NODE_STATE=/var/lib/decision-gate/$NODE_ID
NODE_RUN=/run/decision-gate/$NODE_ID
NODE_NAME=${DECISION_GATE_NODE_NAME:-real-node}
NODE_LABEL=decisiongate.io/node=real
NODE_TAINT=decisiongate.io/real-node
NODE_STORAGE_CLASS=local-real-node
# The node's address, on a bridge of its own: the pods' gateway, the kubelet's address, and
# where pods reach the API server (through a relay) and CoreDNS. A /24 of its own per
# cluster (by directory and port, as the operator's network namespace).
NODE_BRIDGE=dgn-$subnet_octet
NODE_IP=10.214.$subnet_octet.1
POD_CIDR=10.214.$subnet_octet.0/24
KUBELET_PORT=${DECISION_GATE_KUBELET_PORT:-20250}
KUBELET_HEALTHZ_PORT=${DECISION_GATE_KUBELET_HEALTHZ_PORT:-20248}
KUBE_PROXY_HEALTHZ_PORT=${DECISION_GATE_KUBE_PROXY_HEALTHZ_PORT:-20256}
KUBE_PROXY_METRICS_PORT=${DECISION_GATE_KUBE_PROXY_METRICS_PORT:-20249}
SANDBOX_IMAGE=$REGISTRY/decision-gate/pause:1.0
CONTAINERD_SOCKET=$NODE_RUN/containerd.sock
CNI_BIN_DIR=/usr/lib/cni
NODE_COMPONENTS=(registry containerd kubelet kube-proxy apiserver-relay coredns)

# The real node runs where it can: as root with the iproute2 tools. Elsewhere the cluster
# has only the kwok nodes. DECISION_GATE_REAL_NODE=0 leaves it out on purpose.
node_enabled() {
  [ "${DECISION_GATE_REAL_NODE:-1}" != 0 ] && [ "$(id -u)" = 0 ] && command -v ip >/dev/null
}

node_binary_of() {
  case $1 in
    registry) echo "$REGISTRY_BIN/registry" ;;
    containerd) echo "$CONTAINERD_BIN/containerd" ;;
    containerd-shim) echo "$CONTAINERD_BIN/containerd-shim-runc-v2" ;;
    kubelet | kube-proxy) echo "$K8S_BIN/$1" ;;
    apiserver-relay) command -v socat ;;
    coredns) echo "$COREDNS_BIN/coredns" ;;
  esac
}

# The API server's address for pods: with a real node, the node's address, where a relay
# passes connections on to the API server on loopback (the endpoint of the Service
# kubernetes.default); the API server itself keeps listening on loopback only.
apiserver_advertise_args() {
  if node_enabled; then
    echo "--advertise-address $NODE_IP --endpoint-reconciler-type lease"
  else
    echo "--advertise-address 127.0.0.1 --endpoint-reconciler-type none"
  fi
}

ensure_node_pki() {
  local node_ext="basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:$NODE_IP,DNS:$NODE_NAME"
  [ -f "$PKI/kubelet-$NODE_NAME.crt" ] || issue "kubelet-$NODE_NAME" "/O=system:nodes/CN=system:node:$NODE_NAME" "$CLIENT_EXT"
  [ -f "$PKI/kubelet-serving-$NODE_NAME.crt" ] || issue "kubelet-serving-$NODE_NAME" "/CN=$NODE_NAME" "$node_ext"
  [ -f "$PKI/kube-proxy.crt" ] || issue kube-proxy "/CN=system:kube-proxy" "$CLIENT_EXT"
  [ -f "$PKI/coredns.crt" ] || issue coredns "/CN=decision-gate:coredns" "$CLIENT_EXT"
  return 0
}

# The node's own network: a bridge that holds the node's address and that the CNI bridge
# plugin attaches every pod to. Forwarding and bridge netfilter are turned on (kube-proxy
# needs both for Services between pods); their values before are kept and put back by down.
NODE_SYSCTLS=(net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables)
ensure_node_network() {
  if ! ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
    ip link add "$NODE_BRIDGE" type bridge
    ip addr add "$NODE_IP/24" dev "$NODE_BRIDGE"
  fi
  ip link set "$NODE_BRIDGE" up
  local key file
  if [ ! -f "$NODE_DIR/sysctl.before" ]; then
    for key in "${NODE_SYSCTLS[@]}"; do printf '%s=%s\n' "$key" "$(cat "/proc/sys/${key//.//}")"; done >"$NODE_DIR/sysctl.before"
  fi
  for key in "${NODE_SYSCTLS[@]}"; do
    file=/proc/sys/${key//.//}
    [ "$(cat "$file")" = 1 ] || echo 1 >"$file"
  done
}

write_node_configs() {
  local conf=$NODE_DIR/config
  mkdir -p "$conf" "$NODE_DIR/cni" "$NODE_DIR/containerd/certs.d/$REGISTRY"
  # A registry on loopback, served over plain HTTP to this host only.
  cat >"$conf/registry.yaml" <<YAML
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $CLUSTER_DIR/registry}
  delete: {enabled: true}
http:
  addr: $REGISTRY
YAML
  cat >"$NODE_DIR/containerd/certs.d/$REGISTRY/hosts.toml" <<TOML
server = "http://$REGISTRY"

[host."http://$REGISTRY"]
  capabilities = ["pull", "resolve"]
TOML
  # restrict_oom_score_adj: no process here may lower its oom_score_adj (the VM withholds
  # CAP_SYS_RESOURCE), so sandboxes get containerd's own instead of the kubelet's -998.
  # cgroup v1 with the cgroupfs driver; network namespaces, runc's state and everything
  # else under the node's directory, so that down can find and remove all of it.
  cat >"$conf/containerd.toml" <<TOML
version = 3
root = "$NODE_STATE/containerd"
state = "$NODE_RUN/containerd"

[grpc]
  address = "$CONTAINERD_SOCKET"

[ttrpc]
  address = "$CONTAINERD_SOCKET.ttrpc"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "$SANDBOX_IMAGE"
  [plugins."io.containerd.cri.v1.images".registry]
    config_path = "$NODE_DIR/containerd/certs.d"

[plugins."io.containerd.transfer.v1.local"]
  config_path = "$NODE_DIR/containerd/certs.d"

[plugins."io.containerd.cri.v1.runtime"]
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "$RUNC_BIN/runc"
        Root = "$NODE_RUN/runc"
        SystemdCgroup = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["$CNI_BIN_DIR"]
    conf_dir = "$NODE_DIR/cni"
TOML
  # Every pod on the node's bridge, addresses from the node's /24, no masquerading: pods
  # talk to each other, the node and Services, never past this host.
  cat >"$NODE_DIR/cni/10-decision-gate.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "decision-gate",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$NODE_BRIDGE",
      "isGateway": true,
      "isDefaultGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$NODE_IP"}]],
        "dataDir": "$NODE_STATE/ipam"
      }
    }
  ]
}
JSON
  # cgroup v1 (failCgroupV1: false, the cgroupfs driver), no swap to fail on. The kubelet
  # serves on the node's address with a certificate of the local CA and asks the API
  # server who may use it.
  cat >"$conf/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
failSwapOn: false
containerRuntimeEndpoint: unix://$CONTAINERD_SOCKET
address: $NODE_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
tlsCertFile: $PKI/kubelet-serving-$NODE_NAME.crt
tlsPrivateKeyFile: $PKI/kubelet-serving-$NODE_NAME.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
clusterDomain: cluster.local
clusterDNS: [$NODE_IP]
podLogsDir: $NODE_STATE/pod-logs
registerWithTaints:
- {key: $NODE_TAINT, effect: NoSchedule}
# A build machine's disk is often fuller than a node's: evict only when it is nearly full.
evictionHard: {memory.available: 100Mi, nodefs.available: 2%, imagefs.available: 2%}
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
serializeImagePulls: false
YAML
  cat >"$conf/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: $CLUSTER_DIR/components/kube-proxy.kubeconfig
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $POD_CIDR
healthzBindAddress: 127.0.0.1:$KUBE_PROXY_HEALTHZ_PORT
metricsBindAddress: 127.0.0.1:$KUBE_PROXY_METRICS_PORT
nodePortAddresses: [primary]
conntrack:
  # Leave the host's conntrack table size as it is.
  maxPerCore: 0
YAML
  cat >"$conf/Corefile" <<COREFILE
cluster.local:53 in-addr.arpa:53 ip6.arpa:53 {
  bind $NODE_IP
  errors
  kubernetes cluster.local in-addr.arpa ip6.arpa {
    kubeconfig $CLUSTER_DIR/components/coredns.kubeconfig
    pods insecure
    fallthrough in-addr.arpa ip6.arpa
  }
}
.:53 {
  bind $NODE_IP
  errors
  forward . /etc/resolv.conf
}
COREFILE
}

node_ready() {
  [ "$(kubectl_admin get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]
}
registry_ready() { curl -fsS "http://$REGISTRY/v2/" >/dev/null; }
containerd_ready() { "$CRI_TOOLS_BIN/crictl" --runtime-endpoint "unix://$CONTAINERD_SOCKET" info >/dev/null; }
kube_proxy_ready() { curl -fsS "http://127.0.0.1:$KUBE_PROXY_HEALTHZ_PORT/healthz" >/dev/null; }
coredns_ready() { [ -n "$(dig_kubernetes)" ]; }
# The address CoreDNS gives kubernetes.default, by a query of its own (busybox nslookup).
dig_kubernetes() {
  busybox nslookup kubernetes.default.svc.cluster.local "$NODE_IP" 2>/dev/null | awk '/^Name:/ {found = 1} found && /^Address/ {print $NF}'
}

# Who CoreDNS is: it reads Services, EndpointSlices, namespaces and pods, nothing else. And
# the StorageClass of the node's local volumes: PersistentVolumes made by hand (a directory
# of the node, see the README), bound when a pod that uses the claim is scheduled.
apply_node_objects() {
  kubectl_admin apply -f - >/dev/null <<YAML
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "decision-gate:coredns"}
rules:
- apiGroups: [""]
  resources: [services, namespaces, pods]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "decision-gate:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "decision-gate:coredns"}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: "decision-gate:coredns"}
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: $NODE_STORAGE_CLASS}
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
reclaimPolicy: Retain
YAML
}

node_up() {
  if ! node_enabled; then
    log "no real node: it needs root and iproute2 (only the kwok nodes run pods, none of them for real)"
    return 0
  fi
  command -v socat >/dev/null || die "socat is required (apt-get install socat)"
  [ -x "$CNI_BIN_DIR/bridge" ] || die "the CNI plugins are missing from $CNI_BIN_DIR (apt-get install containernetworking-plugins)"
  command -v iptables-restore >/dev/null || die "kube-proxy needs iptables (apt-get install iptables)"
  "$REPO_ROOT/hack/build-tools.sh" node
  mkdir -p "$NODE_DIR" "$NODE_STATE" "$NODE_RUN" "$LOGS"
  ensure_node_pki
  local c
  for c in "kubelet-$NODE_NAME" kube-proxy coredns; do kubeconfig "$CLUSTER_DIR/components/$c.kubeconfig" "$c"; done
  ensure_node_network
  write_node_configs
  apply_node_objects

  is_running registry || start registry serve "$NODE_DIR/config/registry.yaml"
  wait_until "the image registry to answer" 30 registry_ready || { tail -n 20 "$LOGS/registry.log" >&2; exit 1; }
  "$REPO_ROOT/hack/images.sh" pause

  if ! is_running containerd; then
    # containerd finds its shim on PATH.
    PATH="$CONTAINERD_BIN:$PATH" start containerd --config "$NODE_DIR/config/containerd.toml"
  fi
  wait_until "containerd to serve the CRI" 60 containerd_ready || { tail -n 30 "$LOGS/containerd.log" >&2; exit 1; }

  if ! is_running kubelet; then
    start kubelet --config "$NODE_DIR/config/kubelet.yaml" \
      --kubeconfig "$CLUSTER_DIR/components/kubelet-$NODE_NAME.kubeconfig" \
      --root-dir "$NODE_STATE/kubelet" --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" \
      --node-labels "$NODE_LABEL,type=real"
  fi
  is_running kube-proxy || start kube-proxy --config "$NODE_DIR/config/kube-proxy.yaml"
  is_running apiserver-relay || start apiserver-relay -lf "$LOGS/apiserver-relay.log" \
    "TCP-LISTEN:$APISERVER_PORT,bind=$NODE_IP,fork,reuseaddr" "TCP:127.0.0.1:$APISERVER_PORT"
  is_running coredns || start coredns -conf "$NODE_DIR/config/Corefile"

  wait_until "the real node $NODE_NAME to be Ready" 120 node_ready || { tail -n 30 "$LOGS/kubelet.log" >&2; exit 1; }
  wait_until "kube-proxy to be healthy" 60 kube_proxy_ready || { tail -n 20 "$LOGS/kube-proxy.log" >&2; exit 1; }
  wait_until "CoreDNS to answer for kubernetes.default" 60 coredns_ready || { tail -n 20 "$LOGS/coredns.log" >&2; exit 1; }
  log "real node $NODE_NAME is up at $NODE_IP; images from $REGISTRY"
}

# Stops the node and takes away everything it made: pods first (through the CRI, so that
# the CNI plugin releases their interfaces and addresses), then the programs, then
# whatever a crash may have left: containers, mounts, interfaces, iptables rules, cgroups.
node_down() {
  local name
  stop kubelet
  if is_running containerd; then
    timeout 60 "$CRI_TOOLS_BIN/crictl" --runtime-endpoint "unix://$CONTAINERD_SOCKET" rmp --all --force >/dev/null 2>&1 ||
      log "some pods of the real node did not stop through the CRI: removing them by hand"
  fi
  for name in coredns apiserver-relay kube-proxy containerd registry; do stop "$name"; done
  node_sweep
}

node_sweep() {
  local name pid found id mountpoint link
  for name in "${NODE_COMPONENTS[@]}" containerd-shim; do
    mapfile -t found < <(leftovers "$name")
    for pid in "${found[@]}"; do stop_process "$name" "${pid#* }"; done
  done
  [ "$(id -u)" = 0 ] || return 0
  # Containers whose shim is gone still run under runc.
  if [ -d "$NODE_RUN/runc" ] && [ -x "$RUNC_BIN/runc" ]; then
    for dir in "$NODE_RUN"/runc/*/; do
      [ -d "$dir" ] || continue
      for id in $("$RUNC_BIN/runc" --root "$dir" list -q 2>/dev/null); do
        "$RUNC_BIN/runc" --root "$dir" delete --force "$id" >/dev/null 2>&1 || true
      done
    done
  fi
  # Mounts under the node's directories, deepest first.
  node_mounts | sort -r | while read -r mountpoint; do
    umount "$mountpoint" 2>/dev/null || umount -l "$mountpoint" 2>/dev/null || true
  done
  # The pods' interfaces, then the bridge.
  if ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
    for link in $(ip -o link show master "$NODE_BRIDGE" | awk -F': ' '{print $2}' | cut -d@ -f1); do
      ip link del "$link" 2>/dev/null || true
    done
    ip link del "$NODE_BRIDGE" 2>/dev/null || true
  fi
  # kube-proxy's chains (it removes its own rules and exits), then the kubelet's and any a
  # CNI plugin made: every KUBE- and CNI- chain and each rule that jumps to one, in both
  # address families, leaving every other rule as it was.
  if [ -x "$K8S_BIN/kube-proxy" ] && [ -n "$(iptables_residue)" ]; then
    "$K8S_BIN/kube-proxy" --cleanup >>"$LOGS/kube-proxy.log" 2>&1 || true
  fi
  local family
  for family in iptables ip6tables; do
    command -v "$family-save" >/dev/null || continue
    if "$family-save" | grep -qE "$NODE_CHAINS"; then
      "$family-save" | grep -vE "$NODE_CHAINS" | "$family-restore" || log "could not remove the node's $family rules"
    fi
  done
  # The kubelet's cgroups, deepest first, once nothing runs in them.
  find /sys/fs/cgroup/*/kubepods -depth -type d -exec rmdir {} \; 2>/dev/null || true
  rm -rf "$NODE_STATE/ipam" "$NODE_RUN"
  if [ -f "$NODE_DIR/sysctl.before" ]; then
    local key value
    while IFS== read -r key value; do echo "$value" >"/proc/sys/${key//.//}" || true; done <"$NODE_DIR/sysctl.before"
    rm -f "$NODE_DIR/sysctl.before"
  fi
}

# The mount points under the node's directories.
node_mounts() {
  awk -v a="$NODE_DIR/" -v b="$NODE_STATE/" -v c="$NODE_RUN/" \
    'index($5, a) == 1 || index($5, b) == 1 || index($5, c) == 1 {print $5}' /proc/self/mountinfo
}

# Forgets the node's state (images, the kubelet's directory) once it is down.
node_forget() {
  [ -z "$(node_mounts)" ] || die "the node's directories still have mounts: $(node_mounts | head -n 3)"
  rm -rf "$NODE_STATE" "$NODE_RUN"
}

# Lines of an iptables-save dump that belong to the node: its chains and the rules in them
# or jumping to them.
NODE_CHAINS='^:(KUBE|CNI)-|^-A (KUBE|CNI)-|-[jg] (KUBE|CNI)-'
iptables_residue() {
  local family
  for family in iptables ip6tables; do
    command -v "$family-save" >/dev/null || continue
    "$family-save" 2>/dev/null | awk -v f="$family" '/^:(KUBE|CNI)-/ {print f " chain " substr($1, 2)}'
  done
}

# Prints what the node left behind (nothing when down cleaned up), one line each.
node_residue() {
  node_mounts | sed 's/^/mount /'
  ip -o link show 2>/dev/null | awk -F': ' -v br="$NODE_BRIDGE" '$2 == br || $0 ~ ("master " br " ") {print "interface " $2}'
  iptables_residue
  ls -d /sys/fs/cgroup/*/kubepods 2>/dev/null | sed 's/^/cgroup /' || true
  local name
  for name in "${NODE_COMPONENTS[@]}" containerd-shim; do leftovers "$name" | sed 's/^/process /'; done
}
