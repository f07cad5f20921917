# Shared paths for the hack/ scripts. Source it; it defines no side effects.
HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$HACK_DIR/.." && pwd)"
# shellcheck source=versions.env
. "$HACK_DIR/versions.env"
LLMOP_CACHE="${LLMOP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/llm-operator}"
TOOLS_TAG="k8s-${KUBE_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}_helm-${HELM_VERSION}"
TOOLS_DIR="$LLMOP_CACHE/tools/$TOOLS_TAG"
TOOLS_BIN="$TOOLS_DIR/bin"
CLUSTER_NAME="${LLMOP_CLUSTER_NAME:-llm-operator}"
CLUSTER_DIR="$LLMOP_CACHE/cluster"
TOOL_BINARIES="kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy etcd kwok kwokctl helm coredns metrics-server lws-controller-$LWS_VERSION"
# The LeaderWorkerSet controller (sigs.k8s.io/lws cmd/); versioned by its name, not by TOOLS_DIR.
LWS_CONTROLLER="$TOOLS_BIN/lws-controller-$LWS_VERSION"
export PATH="$TOOLS_BIN:$PATH"
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# with_heartbeat WHAT CMD...: runs a long build, logging every 30 s that it is alive, then its time.
with_heartbeat() {
  local what=$1; shift
  local t0=$SECONDS
  "$@" &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 30
    kill -0 "$pid" 2>/dev/null && log "  still building $what ($((SECONDS - t0))s)"
  done
  wait "$pid"
  log "  built $what in $((SECONDS - t0))s"
}
