#!/usr/bin/env bash
# Makes sure the system tools the scripts use are present; installs the missing ones
# from Debian's packages when running as root, and says what to install otherwise.
. "$(dirname "$0")/lib.sh"

missing=()
for tool in openssl curl base64 setsid flock lua5.1 ip socat chromium chromedriver redis-server git; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
# The real node (hack/node.sh), which runs as root: kube-proxy's iptables and conntrack, the
# CNI plugins, busybox for the step image, and libseccomp's headers to build runc.
if [ "$(id -u)" = 0 ]; then
  for tool in iptables conntrack busybox pkg-config; do
    command -v "$tool" >/dev/null || missing+=("$tool")
  done
  [ -x /usr/lib/cni/bridge ] || missing+=(cni-plugins)
  [ -f /usr/include/seccomp.h ] || missing+=(seccomp.h)
fi
command -v go >/dev/null || die "Go is required to build the local control plane: install it from https://go.dev/dl"
command -v cargo >/dev/null || die "Rust is required: install it with rustup (https://rustup.rs)"
[ ${#missing[@]} -eq 0 ] && exit 0

packages=()
for tool in "${missing[@]}"; do
  case $tool in
    openssl) packages+=(openssl) ;;
    curl) packages+=(curl ca-certificates) ;;
    base64) packages+=(coreutils) ;;
    setsid | flock) packages+=(util-linux) ;;
    lua5.1) packages+=(lua5.1) ;; # runs the Argo CD health checks in the tests
    ip) packages+=(iproute2) ;;
    socat) packages+=(socat) ;; # relays the API server's service proxy to a test operator
    chromium) packages+=(chromium) ;; # the browser test of the review page (kubectl decision ui)
    chromedriver) packages+=(chromium-driver) ;;
    redis-server) packages+=(redis-server) ;; # Argo CD's cache (hack/argocd.sh)
    git) packages+=(git) ;; # the repositories Argo CD syncs from, served by git daemon
    iptables) packages+=(iptables) ;;
    conntrack) packages+=(conntrack) ;;
    busybox) packages+=(busybox-static) ;;
    pkg-config) packages+=(pkg-config) ;;
    cni-plugins) packages+=(containernetworking-plugins) ;;
    seccomp.h) packages+=(libseccomp-dev) ;;
  esac
done
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  log "installing ${packages[*]} (missing: ${missing[*]})"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null 2>&1 ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null; }
else
  die "missing ${missing[*]}: install the packages ${packages[*]}"
fi
