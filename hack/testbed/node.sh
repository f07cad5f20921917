#!/usr/bin/env bash
# The testbed's real worker node, beside kwok's fake GPU nodes: a kubelet that runs containers
# through containerd and runc on a CNI bridge, kube-proxy for ClusterIPs, CoreDNS for
# NAME.NAMESPACE.svc and metrics-server for resource metrics. Sourced by hack/cluster.sh
# (`up` starts it, `down` stops it, `status` reports it); all of it runs as host processes.
#
# Network rule of this workplace: Pods are hosts in network namespaces the CNI makes on the
# bridge $NODE_BRIDGE; nothing they send may leave the machine. So: no IP masquerade (CNI ipMasq
# false, kube-proxy only masquerades service traffic that stays on the bridge), forwarding only
# from the bridge to the bridge (iptables), no forwarding on any other interface, NodePorts only on
# the node IP, and a DNS server that answers the cluster domain and nothing else (no upstream).
#
# Pods land here only when they ask: the node carries the label $REAL_NODE_LABEL and the taint
# $REAL_NODE_TAINT:NoSchedule. Needs root (kubelet, containerd, iptables).

NODE_NAME="${LLMOP_NODE_NAME:-real-0}"
NODE_DIR="$CLUSTER_DIR/node"
NODE_RUN=/run/llm-operator-node
NODE_BRIDGE=llmop0
POD_CIDR=10.244.0.0/24
# The fake Pods' IPs (kwok hands them out; nothing answers there). Services may list them as
# endpoints, so the host routes them nowhere ("unreachable": the sender is told at once): a packet
# to one must not leave by the default route.
FAKE_POD_CIDR=10.245.0.0/16
FAKE_POD_CIDR_GATEWAY=10.245.0.1/16
NODE_IP=10.244.0.1
SERVICE_CIDR=10.96.0.0/16
KUBERNETES_SERVICE_IP=10.96.0.1
CLUSTER_DOMAIN=cluster.local
REAL_NODE_LABEL="llm-operator.io/node=real"
REAL_NODE_TAINT="llm-operator.io/real-node=true"
METRICS_SERVER_PORT=4443
CONTAINERD_SOCK="$NODE_RUN/containerd.sock"
# Images survive `down`: containerd's root is in the cache, not in the cluster's folder.
CONTAINERD_ROOT="$LLMOP_CACHE/containerd"
NODE_COMPONENTS="containerd kubelet kube-proxy coredns metrics-server"

node_pki() { echo "$CLUSTER_DIR/clusters/$CLUSTER_NAME/pki"; }

# Prints a line per component that is not running.
node_missing() {
  local c
  for c in $NODE_COMPONENTS; do
    [ -f "$NODE_DIR/$c.pid" ] && kill -0 "$(cat "$NODE_DIR/$c.pid")" 2>/dev/null || echo "$c"
  done
}

node_start_process() {
  local name=$1; shift
  [ -f "$NODE_DIR/$name.pid" ] && kill -0 "$(cat "$NODE_DIR/$name.pid")" 2>/dev/null && return 0
  setsid "$@" >>"$NODE_DIR/logs/$name.log" 2>&1 < /dev/null &
  echo $! > "$NODE_DIR/$name.pid"
}

node_network() {
  modprobe br_netfilter 2>/dev/null || true
  if ! ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
    ip link add "$NODE_BRIDGE" type bridge
  fi
  # (no pipe into grep -q: with pipefail, ip's SIGPIPE would read as "not found")
  case "$(ip -4 addr show dev "$NODE_BRIDGE")" in
    *"inet $NODE_IP/"*) ;;
    *) ip addr add "$NODE_IP/${POD_CIDR#*/}" dev "$NODE_BRIDGE" ;;
  esac
  ip link set "$NODE_BRIDGE" up
  # Replies between Pods on the bridge must pass conntrack, or a ClusterIP's DNAT is not undone.
  sysctl -qw net.bridge.bridge-nf-call-iptables=1
  # Forwarding is needed for Pod -> ClusterIP -> Pod; it is on for the bridge only.
  local dev
  sysctl -qw net.ipv4.ip_forward=1
  for dev in $(ls /proc/sys/net/ipv4/conf); do
    case "$dev" in all|default|lo|"$NODE_BRIDGE"|veth*) ;; *) sysctl -qw "net.ipv4.conf.$dev.forwarding=0" ;; esac
  done
  sysctl -qw "net.ipv4.conf.default.forwarding=1"  # the Pods' veths, made later
  # Bridge to bridge goes on to kube-proxy's chains (which refuse a Service without endpoints); a Pod's
  # packet for anywhere else is refused at once (so a client fails fast instead of hanging), and
  # nothing from elsewhere is forwarded to the Pods.
  iptables -N LLMOP-FORWARD 2>/dev/null || iptables -F LLMOP-FORWARD
  iptables -A LLMOP-FORWARD -i "$NODE_BRIDGE" ! -o "$NODE_BRIDGE" -p tcp -j REJECT --reject-with tcp-reset
  iptables -A LLMOP-FORWARD -i "$NODE_BRIDGE" ! -o "$NODE_BRIDGE" -j REJECT --reject-with icmp-port-unreachable
  iptables -A LLMOP-FORWARD -o "$NODE_BRIDGE" ! -i "$NODE_BRIDGE" -j DROP
  iptables -C FORWARD -j LLMOP-FORWARD 2>/dev/null || iptables -I FORWARD 1 -j LLMOP-FORWARD
  ip route replace unreachable "$FAKE_POD_CIDR"
  # ClusterIPs are DNATed by kube-proxy; one that is not (no rule yet, kube-proxy down) must not
  # follow the default route off the machine: the Service range is routed onto the bridge.
  ip route replace "$SERVICE_CIDR" dev "$NODE_BRIDGE"
}

# kube-proxy exits when its configuration file changes, even to the same content: write only what differs.
write_if_changed() {
  local target=$1 tmp; tmp=$(mktemp "$target.XXXXXX")
  cat > "$tmp"
  if cmp -s "$tmp" "$target"; then rm -f "$tmp"; else mv -f "$tmp" "$target"; fi
}

node_write_configs() {
  local pki; pki=$(node_pki)
  mkdir -p "$NODE_DIR/cni" "$NODE_DIR/logs" "$NODE_RUN" "$CONTAINERD_ROOT"
  write_if_changed "$NODE_DIR/cni/10-llmop.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "llmop",
  "plugins": [
    {
      "type": "bridge", "bridge": "$NODE_BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$NODE_IP"}]],
               "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$NODE_RUN/cni-ipam"}
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
JSON
  # containerd 1.6: the CRI plugin with runc under the cgroupfs driver. restrict_oom_score_adj,
  # because the sandbox asks for oom_score_adj -998, which needs CAP_SYS_RESOURCE (absent here).
  write_if_changed "$NODE_DIR/containerd.toml" <<TOML
version = 2
root = "$CONTAINERD_ROOT"
state = "$NODE_RUN/containerd"
[grpc]
  address = "$CONTAINERD_SOCK"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE_REF"
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$NODE_DIR/cni"
TOML
  # Pods resolve through the cluster DNS only; the host's resolvers are never handed to them.
  : | write_if_changed "$NODE_DIR/resolv.conf"
  write_if_changed "$NODE_DIR/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This machine has hybrid cgroups (v1); v1.36 refuses them unless told.
failCgroupV1: false
cgroupDriver: cgroupfs
failSwapOn: false
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
address: $NODE_IP
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
clusterDNS: [$NODE_IP]
clusterDomain: $CLUSTER_DOMAIN
resolvConf: $NODE_DIR/resolv.conf
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: Webhook}
registerWithTaints:
  - {key: ${REAL_NODE_TAINT%=*}, value: "${REAL_NODE_TAINT#*=}", effect: NoSchedule}
serializeImagePulls: false
# Images are loaded by hand and never pulled: keep them, and evict only on a really full disk.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "200Mi", nodefs.available: "2%", imagefs.available: "2%"}
maxPods: 60
YAML
  write_if_changed "$NODE_DIR/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clusterCIDR: $POD_CIDR
hostnameOverride: $NODE_NAME
clientConnection: {kubeconfig: $KUBECONFIG_PATH}
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: [$NODE_IP/32]
# Leave the host's conntrack table size alone (it needs CAP_SYS_RESOURCE-like sysfs writes).
conntrack: {maxPerCore: 0}
YAML
  # The cluster domain only; any other name is NXDOMAIN, so no query leaves the machine.
  write_if_changed "$NODE_DIR/Corefile" <<COREFILE
$CLUSTER_DOMAIN:53 in-addr.arpa:53 ip6.arpa:53 {
    bind $NODE_IP
    errors
    kubernetes $CLUSTER_DOMAIN in-addr.arpa ip6.arpa {
        kubeconfig $KUBECONFIG_PATH
        pods insecure
    }
    cache 5
}
.:53 {
    bind $NODE_IP
    template ANY ANY {
        rcode NXDOMAIN
    }
}
COREFILE
}

# kube-proxy inserts its own jumps at the top of FORWARD, some of which accept established or
# marked packets: once they are there, ours goes back in front, so it decides first (kube-proxy
# only re-adds a jump that is missing, so the order holds).
node_firewall_first() {
  for _ in $(seq 1 30); do [[ "$(iptables -S FORWARD)" == *"-j KUBE-FORWARD"* ]] && break; sleep 1; done
  iptables -D FORWARD -j LLMOP-FORWARD 2>/dev/null || true
  iptables -I FORWARD 1 -j LLMOP-FORWARD
}

# metrics-server runs on loopback; the aggregator reaches it through an ExternalName Service.
node_register_metrics_api() {
  kctl apply --server-side --force-conflicts -f - >/dev/null <<YAML
apiVersion: v1
kind: Service
metadata: {name: metrics-server, namespace: kube-system, labels: {k8s-app: metrics-server}}
spec:
  type: ExternalName
  externalName: localhost
  ports: [{name: https, port: $METRICS_SERVER_PORT, protocol: TCP}]
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1beta1.metrics.k8s.io, labels: {k8s-app: metrics-server}}
spec:
  group: metrics.k8s.io
  version: v1beta1
  service: {name: metrics-server, namespace: kube-system, port: $METRICS_SERVER_PORT}
  insecureSkipTLSVerify: true
  groupPriorityMinimum: 100
  versionPriority: 100
YAML
}

# containerd (like podman and `ip netns`) keeps network namespaces as bind mounts under /run/netns and
# turns /run/netns into a shared bind mount of itself the first time it finds it is not one. If that
# happens while Pods' namespaces are already mounted there (another tool's first use, or a restart),
# those mounts end up under the new one, unreachable by path: removing them then fails with "unlinkat
# /run/netns/cni-...: device or resource busy" and every Pod of the node stays Terminating.
# Made once, before containerd starts, nothing remounts it later.
node_netns_dir() {
  mkdir -p /run/netns
  mountpoint -q /run/netns || mount --bind /run/netns /run/netns
  mount --make-shared /run/netns
}

# Unmounts the Pods' network namespaces, however stacked, and the /run/netns bind mount itself.
node_netns_cleanup() {
  local round
  for round in 1 2 3 4 5; do
    awk '$5 ~ "^/run/netns/cni-" {print $5}' /proc/self/mountinfo | sort -u | xargs -r -n1 umount -l 2>/dev/null || true
    mountpoint -q /run/netns && umount -l /run/netns 2>/dev/null || true
    awk '$5 ~ "^/run/netns(/cni-|$)"' /proc/self/mountinfo | grep -q . || break
  done
  rm -f /run/netns/cni-* 2>/dev/null || true
}

node_start() {
  local t0=$SECONDS pki; pki=$(node_pki)
  [ "$(id -u)" = 0 ] || { log "the real node needs root (kubelet, containerd, iptables)"; return 1; }
  bash "$HACK_DIR/install-node-deps.sh"
  PAUSE_IMAGE_REF=$(bash "$HACK_DIR/build-images.sh" pause | tail -n1)
  node_write_configs
  node_network
  node_netns_dir
  node_start_process containerd containerd --config "$NODE_DIR/containerd.toml"
  for _ in $(seq 1 30); do ctr --address "$CONTAINERD_SOCK" version >/dev/null 2>&1 && break; sleep 1; done
  node_load_image "$PAUSE_IMAGE_REF"
  node_start_process kubelet "$TOOLS_BIN/kubelet" --config "$NODE_DIR/kubelet.yaml" \
    --kubeconfig "$KUBECONFIG_PATH" --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" \
    --node-labels "$REAL_NODE_LABEL" \
    --root-dir "$NODE_DIR/kubelet" --cert-dir "$NODE_DIR/kubelet-pki" --v=1
  node_start_process kube-proxy "$TOOLS_BIN/kube-proxy" --config "$NODE_DIR/kube-proxy.yaml" --v=1
  node_firewall_first
  node_start_process coredns "$TOOLS_BIN/coredns" -conf "$NODE_DIR/Corefile"
  node_start_process metrics-server "$TOOLS_BIN/metrics-server" \
    --bind-address 127.0.0.1 --secure-port "$METRICS_SERVER_PORT" \
    --kubeconfig "$KUBECONFIG_PATH" --authentication-kubeconfig "$KUBECONFIG_PATH" \
    --authorization-kubeconfig "$KUBECONFIG_PATH" --cert-dir "$NODE_DIR/metrics-server-pki" \
    --tls-cert-file "$pki/admin.crt" --tls-private-key-file "$pki/admin.key" \
    --kubelet-preferred-address-types InternalIP --kubelet-insecure-tls \
    --node-selector "$REAL_NODE_LABEL" --metric-resolution 15s
  node_register_metrics_api
  local registered=""
  for _ in $(seq 1 60); do kctl get node "$NODE_NAME" >/dev/null 2>&1 && { registered=1; break; }; sleep 1; done
  if [ -z "$registered" ] || ! kctl wait --for=condition=Ready "node/$NODE_NAME" --timeout=120s >/dev/null; then
    log "node $NODE_NAME did not become Ready; logs: $NODE_DIR/logs"; tail -n 20 "$NODE_DIR/logs/kubelet.log" >&2
    return 1
  fi
  # Until metrics-server answers, its APIService is unavailable and every client's API discovery
  # (kubectl, the operator's dynamic client) stalls on the metrics.k8s.io group: wait for it here.
  if ! kctl wait --for=condition=Available apiservice/v1beta1.metrics.k8s.io --timeout=180s >/dev/null; then
    log "metrics-server's APIService is not Available; logs: $NODE_DIR/logs/metrics-server.log"; return 1
  fi
  log "real node $NODE_NAME Ready in $((SECONDS - t0))s (Pods on $POD_CIDR, Services on $SERVICE_CIDR, DNS $NODE_IP)"
}

# Loads a podman image into the node's containerd, unless it is there already.
node_load_image() {
  local ref=$1
  if [ -z "$(ctr --address "$CONTAINERD_SOCK" -n k8s.io images ls -q "name==$ref")" ]; then
    podman save --format docker-archive "$ref" | ctr --address "$CONTAINERD_SOCK" -n k8s.io images import - >/dev/null
    log "loaded $ref into the node's containerd"
  fi
}

node_stop() {
  local c pidfile
  # kubelet first, so it does not restart what is being stopped; the containers go with their shims.
  for c in kubelet kube-proxy coredns metrics-server; do
    pidfile="$NODE_DIR/$c.pid"
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
    rm -f "$pidfile"
  done
  pkill -f "containerd-shim-runc-v2 -namespace k8s.io -id .* -address $CONTAINERD_SOCK" 2>/dev/null || true
  pidfile="$NODE_DIR/containerd.pid"
  [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
  rm -f "$pidfile"
  sleep 1
  # The kubelet's volume mounts (tmpfs for tokens, emptyDirs) and the Pods' network namespaces.
  grep -o " $NODE_DIR/kubelet[^ ]*" /proc/mounts 2>/dev/null | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  grep -o " $NODE_RUN[^ ]*" /proc/mounts 2>/dev/null | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  node_netns_cleanup
  [ -x "$TOOLS_BIN/kube-proxy" ] && "$TOOLS_BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true
  iptables -D FORWARD -j LLMOP-FORWARD 2>/dev/null || true
  iptables -F LLMOP-FORWARD 2>/dev/null && iptables -X LLMOP-FORWARD 2>/dev/null || true
  ip link delete "$NODE_BRIDGE" 2>/dev/null || true
  ip route delete unreachable "$FAKE_POD_CIDR" 2>/dev/null || true
  ip route delete "$SERVICE_CIDR" dev "$NODE_BRIDGE" 2>/dev/null || true
  rm -rf "$NODE_RUN" "$NODE_DIR"
}

node_status() {
  local missing; missing=$(node_missing | tr '\n' ' ')
  if [ -z "$missing" ]; then
    echo "real node:  $NODE_NAME running (logs: $NODE_DIR/logs)"
  elif [ -d "$NODE_DIR" ]; then
    echo "real node:  $NODE_NAME not running: $missing(logs: $NODE_DIR/logs)"
  else
    echo "real node:  absent"
  fi
}
