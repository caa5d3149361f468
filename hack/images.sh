#!/usr/bin/env bash
# The images the real node runs, built here without Docker and without the internet, and
# pushed to the local registry (hack/node.sh) that containerd pulls from:
#
#   pause         the pods' sandbox, from hack/node/pause.go
#   busybox       a small step image (Debian's busybox-static) for tests and examples
#   python        Debian's Python 3 with its standard library and nothing else, from
#                 Debian's packages (the agents' example plans run their steps with it)
#   kubectl       busybox and the pinned kubectl, for steps that act on the cluster
#   decision-gate the operator: the release binary in the layout of the Dockerfile's
#                 runtime stage (its path, user 65532, entrypoint and command), with the few
#                 runtime files of the distroless base it needs (the C library it links,
#                 the users, CA certificates)
#
#   hack/images.sh [pause|busybox|python|kubectl|operator|all]   (default: all)
#
# Each is one layer, made reproducible (sorted, owners by number, mtime 0), appended to an
# empty OCI image and configured by crane (go-containerregistry): a single static program
# that writes to a registry directly, needs no daemon and no root, and is kept by Google's
# container tooling team. The operator's reference, by digest, is written to
# .local/cluster/images/decision-gate.ref for the tests and the README's commands.
. "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

IMAGES_DIR=$CLUSTER_DIR/images
crane() { "$CRANE_BIN/crane" --insecure "$@"; }

"$REPO_ROOT/hack/build-tools.sh" node >/dev/null
curl -fsS "http://$REGISTRY/v2/" >/dev/null || die "no registry answers at $REGISTRY: start the local cluster first (make cluster-up)"
mkdir -p "$IMAGES_DIR"

# push NAME TAG ROOTFS [crane mutate flags...]: the directory ROOTFS as the one layer of
# $REGISTRY/decision-gate/NAME:TAG, configured by the flags; prints the reference by digest.
push() {
  local name=$1 tag=$2 root=$3 ref
  shift 3
  ref=$REGISTRY/decision-gate/$name:$tag
  tar -C "$root" --sort=name --numeric-owner --mtime=@0 --format=posix \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime -cf "$IMAGES_DIR/$name.tar" .
  crane append --oci-empty-base -f "$IMAGES_DIR/$name.tar" -t "$ref" >/dev/null 2>"$IMAGES_DIR/$name.log" ||
    { cat "$IMAGES_DIR/$name.log" >&2; die "crane could not push $ref"; }
  crane mutate "$ref" --set-platform linux/amd64 "$@" -t "$ref" >/dev/null 2>>"$IMAGES_DIR/$name.log" ||
    { cat "$IMAGES_DIR/$name.log" >&2; die "crane could not configure $ref"; }
  rm -rf "$IMAGES_DIR/$name.tar" "$root"
  echo "$REGISTRY/decision-gate/$name@$(crane digest "$ref")"
}

# A fresh staging directory for an image's root filesystem.
stage() {
  local dir=$IMAGES_DIR/$1.root
  rm -rf "$dir" && mkdir -p "$dir"
  echo "$dir"
}

pause_image() {
  local src=hack/node/pause.go sum bin root
  sum=$(sha256sum "$src" | cut -c1-16)
  bin=$CACHE_DIR/bin/pause-$sum/pause
  if [ ! -x "$bin" ]; then
    mkdir -p "$(dirname "$bin")"
    CGO_ENABLED=0 GOTOOLCHAIN=local go build -trimpath -ldflags "-s -w" -o "$bin" "$src"
  fi
  root=$(stage pause)
  install -m 0755 "$bin" "$root/pause"
  push pause 1.0 "$root" --entrypoint /pause >"$IMAGES_DIR/pause.ref"
}

busybox_image() {
  local root version=
  [ -x /bin/busybox ] && version=$(/bin/busybox --help 2>&1 | awk 'NR == 1 && $1 == "BusyBox" {sub(/^v/, "", $2); print $2}')
  [ -n "$version" ] && ! ldd /bin/busybox >/dev/null 2>&1 ||
    die "a static busybox is required, Debian's busybox-static (apt-get install busybox-static)"
  root=$(stage busybox)
  busybox_root "$root"
  push busybox "$version" "$root" --entrypoint /bin/sh --env PATH=/bin >"$IMAGES_DIR/busybox.ref"
}

# A root filesystem of busybox (its applets linked beside it) in DIR, with /tmp and the
# users root and nobody.
busybox_root() {
  local root=$1 applet
  mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/root"
  chmod 1777 "$root/tmp"
  install -m 0755 /bin/busybox "$root/bin/busybox"
  # Each applet a link beside busybox (its own --install links to the host's path).
  for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
}

# Python from Debian's packages: the interpreter, its standard library and the libraries
# they link, unpacked (not installed: no maintainer scripts run) into one layer. The
# packages are downloaded once into the cache.
python_image() {
  local version debs root deb
  candidate() { apt-cache policy python3.11-minimal | awk '/Candidate:/ && $2 != "(none)" {print $2}'; }
  version=$(candidate)
  if [ -z "$version" ] && [ "$(id -u)" = 0 ]; then
    log "apt knows no python3.11-minimal yet: apt-get update"
    apt-get update -qq && version=$(candidate)
  fi
  [ -n "$version" ] || die "apt knows no python3.11-minimal: run apt-get update"
  debs=$CACHE_DIR/debs/python-$version
  if [ ! -f "$debs/done" ]; then
    log "downloading Debian's Python $version and what it needs"
    rm -rf "$debs" && mkdir -p "$debs"
    # What the interpreter and its standard library depend on, without the tools that
    # only install packages (dpkg, tar) and mailcap's perl.
    local packages
    packages=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
      --no-replaces --no-enhances --no-pre-depends python3-minimal python3.11-minimal libpython3.11-stdlib |
      grep '^[a-z0-9]' | grep -vE '^(perl.*|libperl.*|mailcap|mime-support|dpkg|install-info|tar)$' | sort -u)
    # shellcheck disable=SC2086 # one package per word
    (cd "$debs" && apt-get download $packages >download.log 2>&1) || { cat "$debs/download.log" >&2; die "apt-get download failed"; }
    touch "$debs/done"
  fi
  root=$(stage python)
  for deb in "$debs"/*.deb; do dpkg-deb -x "$deb" "$root"; done
  mkdir -p "$root/tmp" "$root/root"
  chmod 1777 "$root/tmp"
  printf 'root:x:0:0:root:/root:/bin/false\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
  push python "${version%%-*}" "$root" --entrypoint /usr/bin/python3 \
    --env PATH=/usr/local/bin:/usr/bin:/bin >"$IMAGES_DIR/python.ref"
}

# busybox and the pinned kubectl (a static Go binary built with the control plane).
kubectl_image() {
  local root
  root=$(stage kubectl)
  busybox_root "$root"
  install -D -m 0755 "$K8S_BIN/kubectl" "$root/usr/local/bin/kubectl"
  push kubectl "$KUBERNETES_VERSION" "$root" --entrypoint /usr/local/bin/kubectl \
    --env PATH=/usr/local/bin:/bin >"$IMAGES_DIR/kubectl.ref"
}

# The release binary and, from this (Debian) host, what the distroless base gives it.
operator_image() {
  log "building the operator's release binary (cargo build --release)"
  cargo build --release --locked --bin decision-gate
  local binary=target/release/decision-gate root lib tag
  root=$(stage decision-gate)
  install -D -m 0755 "$binary" "$root/usr/local/bin/decision-gate"
  for lib in $(ldd "$binary" | grep -o '/[^ ]*'); do
    install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
  done
  mkdir -p "$root/etc/ssl/certs" "$root/tmp" "$root/home/nonroot"
  chmod 1777 "$root/tmp"
  chown 65532:65532 "$root/home/nonroot"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\nnonroot:x:65532:\n' >"$root/etc/group"
  printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$root/etc/nsswitch.conf"
  [ -r /etc/ssl/certs/ca-certificates.crt ] && install -m 0644 /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
  tag=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' charts/decision-gate/Chart.yaml)
  # The Dockerfile's runtime stage: USER 65532:65532, its ENTRYPOINT and CMD.
  push decision-gate "$tag" "$root" --user 65532:65532 --workdir /home/nonroot \
    --entrypoint /usr/local/bin/decision-gate --cmd run \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt >"$IMAGES_DIR/decision-gate.ref"
  log "operator image: $(cat "$IMAGES_DIR/decision-gate.ref")"
}

case "${1:-all}" in
  pause) pause_image ;;
  busybox) busybox_image ;;
  python) python_image ;;
  kubectl) kubectl_image ;;
  operator) operator_image ;;
  all) pause_image; busybox_image; python_image; kubectl_image; operator_image ;;
  *) die "usage: $0 [pause|busybox|python|kubectl|operator|all]" ;;
esac
