#!/usr/bin/env bash
# Builds the pinned control-plane binaries (kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, etcd, kwok) and helm from their published Go modules, fetched by
# the go command (so GOPROXY and the other go settings apply), into a cache outside the
# repository keyed by version. A component already in the cache is skipped.
#
#   hack/build-tools.sh [cluster|node|helm|all]     (default: cluster)
. "$(dirname "$0")/lib.sh"

command -v go >/dev/null || die "Go is required to build the local control plane (https://go.dev/dl)"
command -v flock >/dev/null || die "flock is required to share the build cache (apt-get install util-linux)"

export GOFLAGS=-mod=mod
export GOTOOLCHAIN=local
export CGO_ENABLED=0

# locked NAME COMMAND...: runs COMMAND holding the cache's lock for component NAME, so that
# two runs never build or install the same component at once: the later one waits, then
# finds it in the cache.
locked() {
  local name=$1 lock=$CACHE_DIR/locks/$1.lock
  shift
  mkdir -p "$CACHE_DIR/locks"
  (
    if ! flock --nonblock 9; then
      log "waiting for another run building $name (lock: $lock)"
      flock 9
    fi
    "$@"
  ) 9>"$lock"
}

# in_dir DIR COMMAND...: runs COMMAND in DIR, in a subshell, so the caller stays where it is.
in_dir() (
  cd "$1" && shift && "$@"
)

# module_go_mod MODULE VERSION: prints the go.mod of MODULE at VERSION. The go command
# fetches it (into its module cache), so GOPROXY, GONOPROXY, GOPRIVATE and GOSUMDB apply.
module_go_mod() {
  local json gomod
  mkdir -p "$CACHE_DIR/build"
  # Outside any module, so that no go.mod of ours is read or changed.
  if ! json=$(in_dir "$CACHE_DIR/build" go mod download -json "$1@$2"); then
    printf '%s\n' "$json" >&2
    die "go mod download $1@$2 failed"
  fi
  gomod=$(sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p' <<<"$json")
  if [ -z "$gomod" ] || [ ! -r "$gomod" ]; then
    die "go mod download $1@$2 named no readable go.mod: $json"
  fi
  cat "$gomod"
}

build_kubernetes() {
  # The node's programs (kubelet, kube-proxy) come from the same module as the control plane.
  local bins=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy)
  local missing=0 b
  for b in "${bins[@]}"; do [ -x "$K8S_BIN/$b" ] || missing=1; done
  [ $missing = 1 ] || return 0

  local minor=${KUBERNETES_VERSION#v1.}; minor=${minor%%.*}
  local staging_version=v0.${KUBERNETES_VERSION#v1.}
  local work=$CACHE_DIR/build/kubernetes-$KUBERNETES_VERSION
  mkdir -p "$work" "$K8S_BIN"

  # k8s.io/kubernetes points its staging modules at ./staging; a module that
  # requires it must replace each of them with the published v0.X.Y instead.
  local modfile
  modfile=$(module_go_mod k8s.io/kubernetes "$KUBERNETES_VERSION")
  {
    echo "module decisiongate.local/kubernetes"
    echo
    echo "go $(go env GOVERSION | sed 's/^go//; s/^\([0-9]*\.[0-9]*\).*/\1/')"
    echo
    echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
    echo
    echo "replace ("
    printf '%s\n' "$modfile" | sed -n '/^replace (/,/^)/p' | awk '/=> \.\/staging/ {print $1}' |
      grep -v -e sample- -e code-generator | while read -r m; do echo "	$m => $m $staging_version"; done
    echo ")"
  } >"$work/go.mod"
  {
    printf '//go:build tools\n\npackage tools\n\nimport (\n'
    for b in "${bins[@]}"; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$b"; done
    printf ')\n'
  } >"$work/tools.go"
  with_progress "resolving Kubernetes $KUBERNETES_VERSION modules" "$CACHE_DIR/logs/kubernetes-mod.log" \
    in_dir "$work" go mod tidy

  # One argument for -ldflags: the go command splits it, the shell never parses it again.
  local ld="-s -w"
  local pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  local targets=()
  for b in "${bins[@]}"; do targets+=("k8s.io/kubernetes/cmd/$b"); done
  with_progress "building ${bins[*]} $KUBERNETES_VERSION (the first build takes 10-20 minutes on 2 cores)" \
    "$CACHE_DIR/logs/kubernetes-build.log" \
    in_dir "$work" go build -trimpath -ldflags "$ld" -o "$K8S_BIN.tmp/" "${targets[@]}"
  mv "$K8S_BIN.tmp"/* "$K8S_BIN/" && rmdir "$K8S_BIN.tmp"
}

build_etcd() {
  [ -x "$ETCD_BIN/etcd" ] && return 0
  local work=$CACHE_DIR/build/etcd-$ETCD_VERSION
  mkdir -p "$work" "$ETCD_BIN"
  cat >"$work/go.mod" <<MOD
module decisiongate.local/etcd

go $(go env GOVERSION | sed 's/^go//; s/^\([0-9]*\.[0-9]*\).*/\1/')

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
MOD
  cat >"$work/main.go" <<'GO'
// The etcd server, built from its published module.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  with_progress "building etcd $ETCD_VERSION" "$CACHE_DIR/logs/etcd-build.log" \
    in_dir "$work" tidy_and_build "$ETCD_BIN/etcd"
}

# tidy_and_build OUTPUT: resolves the module in the current directory and builds its main
# package into OUTPUT.
tidy_and_build() {
  go mod tidy && go build -trimpath -ldflags '-s -w' -o "$1" .
}

go_install() { # name version module-path/cmd dest
  local name=$1 version=$2 pkg=$3 dest=$4
  [ -x "$dest/$name" ] && return 0
  mkdir -p "$dest"
  with_progress "building $name $version" "$CACHE_DIR/logs/$name-build.log" \
    env GOBIN="$dest" go install -trimpath -ldflags "-s -w $5" "$pkg@$version"
}

build_kwok() { go_install kwok "$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwok "$KWOK_BIN" ""; }
build_helm() {
  go_install helm "$HELM_VERSION" helm.sh/helm/v3/cmd/helm "$HELM_BIN" \
    "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
}
build_kubeconform() {
  go_install kubeconform "$KUBECONFORM_VERSION" github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_BIN" ""
}
# Argo CD's own health-check code (hack/argocd/health), built once from the module proxy
# (about two minutes and a few hundred MB of modules the first time).
build_argocd_health() {
  local dir=$REPO_ROOT/hack/argocd
  [ -x "$ARGOCD_HEALTH_BIN/argocd-health" ] && return 0
  grep -q "github.com/argoproj/argo-cd/v3 $ARGOCD_VERSION\$" "$dir/go.mod" ||
    die "hack/argocd/go.mod does not require Argo CD $ARGOCD_VERSION (hack/versions.env)"
  mkdir -p "$ARGOCD_HEALTH_BIN"
  with_progress "building Argo CD $ARGOCD_VERSION's health checks" "$CACHE_DIR/logs/argocd-health-build.log" \
    go build -C "$dir" -trimpath -ldflags "-s -w" -o "$ARGOCD_HEALTH_BIN/argocd-health" ./health
}

# Argo CD's application controller and repo server (hack/argocd), with the manifests of the
# same release that hack/argocd.sh applies. The module as published does not build:
# controller/cache calls settings.ValidateExternalURL, which its util/settings does not
# export. The build uses a copy of the module with one file added that exports it
# (hack/argocd/_patch; go build -overlay may not touch the module cache).
build_argocd() {
  local dir=$REPO_ROOT/hack/argocd module work=$CACHE_DIR/build/argocd-$ARGOCD_VERSION
  [ -x "$ARGOCD_BIN/argocd" ] && [ -d "$ARGOCD_BIN/manifests" ] && return 0
  grep -q "github.com/argoproj/argo-cd/v3 $ARGOCD_VERSION\$" "$dir/go.mod" ||
    die "hack/argocd/go.mod does not require Argo CD $ARGOCD_VERSION (hack/versions.env)"
  module=$(go -C "$dir" mod download -json "github.com/argoproj/argo-cd/v3@$ARGOCD_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -d "$module" ] || die "cannot download Argo CD $ARGOCD_VERSION from the module proxy"
  rm -rf "$work" && mkdir -p "$work/argo-cd" "$ARGOCD_BIN"
  cp "$dir/go.mod" "$dir/go.sum" "$dir/main.go" "$work/"
  tar -C "$module" --exclude=./ui --exclude=./docs --exclude=./test --exclude=./hack -cf - . | tar -C "$work/argo-cd" -xf -
  chmod -R u+w "$work/argo-cd"
  cp "$dir/_patch/external_url.go" "$work/argo-cd/util/settings/"
  go -C "$work" mod edit -replace "github.com/argoproj/argo-cd/v3=./argo-cd"
  with_progress "building Argo CD $ARGOCD_VERSION's application controller and repo server" "$CACHE_DIR/logs/argocd-build.log" \
    go build -C "$work" -trimpath -ldflags "-s -w -X github.com/argoproj/argo-cd/v3/common.version=${ARGOCD_VERSION#v}" -o "$ARGOCD_BIN/argocd.new" .
  rm -rf "$ARGOCD_BIN/manifests" && mkdir -p "$ARGOCD_BIN/manifests/crds" "$ARGOCD_BIN/manifests/rbac"
  cp "$module/manifests/crds/application-crd.yaml" "$module/manifests/crds/appproject-crd.yaml" "$ARGOCD_BIN/manifests/crds/"
  cp "$module"/manifests/cluster-rbac/application-controller/argocd-application-controller-cluster*.yaml "$ARGOCD_BIN/manifests/rbac/"
  mv "$ARGOCD_BIN/argocd.new" "$ARGOCD_BIN/argocd"
  rm -rf "$work"
}

# The real node's runtime: containerd, its runc shim and ctr (pure Go), and runc itself,
# which needs cgo and libseccomp (Debian's libseccomp-dev and pkg-config) for the seccomp
# profiles pods ask for.
build_containerd() {
  local b
  for b in containerd containerd-shim-runc-v2 ctr; do
    go_install "$b" "$CONTAINERD_VERSION" "github.com/containerd/containerd/v2/cmd/$b" "$CONTAINERD_BIN" \
      "-X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION"
  done
}
build_runc() {
  pkg-config --exists libseccomp || die "runc needs libseccomp's headers: apt-get install libseccomp-dev pkg-config"
  CGO_ENABLED=1 GOFLAGS="$GOFLAGS -tags=seccomp" go_install runc "$RUNC_VERSION" github.com/opencontainers/runc "$RUNC_BIN" ""
}
build_crictl() { go_install crictl "$CRI_TOOLS_VERSION" sigs.k8s.io/cri-tools/cmd/crictl "$CRI_TOOLS_BIN" ""; }
build_coredns() { go_install coredns "$COREDNS_VERSION" github.com/coredns/coredns "$COREDNS_BIN" ""; }
build_registry() {
  go_install registry "$DISTRIBUTION_VERSION" github.com/distribution/distribution/v3/cmd/registry "$REGISTRY_BIN" ""
}
build_crane() { go_install crane "$CRANE_VERSION" github.com/google/go-containerregistry/cmd/crane "$CRANE_BIN" ""; }
node_tools() {
  locked containerd build_containerd; locked runc build_runc; locked crictl build_crictl
  locked coredns build_coredns; locked registry build_registry; locked crane build_crane
}

case "${1:-cluster}" in
  cluster) locked etcd build_etcd; locked kwok build_kwok; locked kubernetes build_kubernetes ;;
  node) locked kubernetes build_kubernetes; node_tools ;;
  helm) locked helm build_helm ;;
  argocd) locked helm build_helm; locked argocd build_argocd ;;
  all) locked etcd build_etcd; locked kwok build_kwok; locked kubernetes build_kubernetes; locked helm build_helm
    locked kubeconform build_kubeconform; locked argocd-health build_argocd_health
    locked argocd build_argocd; node_tools ;;
  *) die "usage: $0 [cluster|node|helm|argocd|all]" ;;
esac
