#!/usr/bin/env bash
# Builds the testbed's binaries from the Go module proxy into a versioned cache folder
# outside the checkout: kube-apiserver, kube-controller-manager, kube-scheduler, kubectl,
# kubelet, kube-proxy (k8s.io/kubernetes), etcd, kwok, kwokctl, helm, CoreDNS, metrics-server and the
# LeaderWorkerSet controller (lws-controller-$LWS_VERSION). Skips every binary that is already
# there, so a warm run takes a second. Remove $TOOLS_DIR to force a rebuild.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

started=$SECONDS
mkdir -p "$TOOLS_BIN"
# GOTOOLCHAIN stays "auto": an older local Go fetches the toolchain the modules ask for from the module proxy.
export CGO_ENABLED=0 GOFLAGS="-trimpath"

missing() { for b in "$@"; do [ -x "$TOOLS_BIN/$b" ] || return 0; done; return 1; }

build_kubernetes() {
  local work="$TOOLS_DIR/src/kubernetes"
  mkdir -p "$work"
  local upstream_mod="$work/upstream.go.mod"
  log "kubernetes $KUBE_VERSION: reading upstream go.mod"
  (cd "$work" && go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" >/dev/null)
  cp "$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/$KUBE_VERSION.mod" "$upstream_mod"
  local staging_version="v0.${KUBE_VERSION#v1.}"
  {
    echo "module llm-operator.local/kube-tools"
    echo
    grep -E '^go [0-9.]+$' "$upstream_mod"
    grep -E '^godebug ' "$upstream_mod" || true
    echo
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    echo
    echo "replace ("
    # Every staging module that k8s.io/kubernetes requires at v0.0.0 is published as v0.MINOR.PATCH.
    grep -E '^\s+k8s\.io/[a-z0-9-]+ v0\.0\.0$' "$upstream_mod" | awk -v v="$staging_version" '{print "\t" $1 " => " $1 " " v}'
    echo ")"
  } > "$work/go.mod"
  log "kubernetes: $(grep -c '=>' "$work/go.mod") staging modules pinned to $staging_version"
  local pkg=k8s.io/component-base/version cpkg=k8s.io/client-go/pkg/version
  local minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
  local date; date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  local ldflags="-s -w"
  for p in $pkg $cpkg; do
    ldflags+=" -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=$date"
  done
  log "kubernetes: building kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy (10-35 min cold)"
  # One go build for all six, so the packages they share compile once.
  (cd "$work" && with_heartbeat "kubernetes binaries" go build -mod=mod -o "$TOOLS_BIN/" \
    -tags selinux,notest,grpcnotrace -ldflags "$ldflags" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl \
    k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy)
}

build_etcd() {
  local work="$TOOLS_DIR/src/etcd"
  mkdir -p "$work"
  printf 'module llm-operator.local/etcd-tools\n\ngo 1.24\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" > "$work/go.mod"
  log "etcd $ETCD_VERSION: building"
  (cd "$work" && with_heartbeat etcd go build -mod=mod -o "$TOOLS_BIN/etcd" -ldflags "-s -w" go.etcd.io/etcd/server/v3)
}

# The LeaderWorkerSet controller: sigs.k8s.io/lws's main package is its cmd/ folder, so `go install`
# would name the binary "cmd"; a wrapper module builds it under a versioned name instead (the version is
# not part of TOOLS_DIR, so a bump rebuilds this binary alone), with the version stamped as upstream does.
build_lws() {
  local work="$TOOLS_DIR/src/lws-$LWS_VERSION"
  mkdir -p "$work"
  log "lws $LWS_VERSION: reading upstream go.mod"
  (cd "$work" && go mod download -json "sigs.k8s.io/lws@$LWS_VERSION" >/dev/null)
  local dl; dl="$(go env GOMODCACHE)/cache/download/sigs.k8s.io/lws/@v/$LWS_VERSION"
  local upstream_mod="$dl.mod" commit
  commit=$(grep -o '"Hash":"[0-9a-f]*"' "$dl.info" | cut -d'"' -f4 || true)
  {
    echo "module llm-operator.local/lws-tools"
    echo
    grep -E '^go [0-9.]+$' "$upstream_mod"
    grep -E '^godebug ' "$upstream_mod" || true
    echo
    echo "require sigs.k8s.io/lws $LWS_VERSION"
  } > "$work/go.mod"
  local v=sigs.k8s.io/lws/pkg/version
  local ldflags="-s -w -X $v.GitVersion=$LWS_VERSION -X $v.GitCommit=${commit:-unknown}"
  ldflags+=" -X $v.BuildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  log "lws $LWS_VERSION: building the controller (2-6 min cold)"
  (cd "$work" && with_heartbeat "lws controller" go build -mod=mod -o "$LWS_CONTROLLER.tmp" -ldflags "$ldflags" \
    sigs.k8s.io/lws/cmd)
  mv -f "$LWS_CONTROLLER.tmp" "$LWS_CONTROLLER"
}

build_go_install() {
  local what=$1; shift
  log "$what: go install $*"
  with_heartbeat "$what" env GOBIN="$TOOLS_BIN" go install -ldflags "-s -w" "$@"
}

log "tool cache: $TOOLS_DIR"
missing kwok kwokctl && build_go_install kwok "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" "sigs.k8s.io/kwok/cmd/kwokctl@$KWOK_VERSION"
missing helm && build_go_install helm "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
missing etcd && build_etcd
missing kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy && build_kubernetes
# The real node's cluster DNS and resource metrics (hack/testbed/node.sh runs both as host processes).
missing coredns && build_go_install coredns "github.com/coredns/coredns@$COREDNS_VERSION"
missing metrics-server && build_go_install metrics-server "sigs.k8s.io/metrics-server/cmd/metrics-server@$METRICS_SERVER_VERSION"
# LeaderWorkerSet's controller and webhooks (hack/cluster.sh runs it as a host process).
missing "lws-controller-$LWS_VERSION" && build_lws

for b in $TOOL_BINARIES; do
  [ -x "$TOOLS_BIN/$b" ] || { log "missing $b after the build"; exit 1; }
done
log "tools ready in $TOOLS_BIN (total $((SECONDS - started))s)"
