#!/usr/bin/env bash
# A local Kubernetes control plane of real processes (etcd, kube-apiserver with RBAC,
# kube-controller-manager, kube-scheduler) run by kwokctl's binary runtime, with kwok
# playing the kubelet for six fake Nodes (four 8x H100, one RTX 4090, one CPU-only), the
# LeaderWorkerSet controller with its webhooks (hack/testbed/lws.sh), and one real node (real-0:
# kubelet, containerd and runc, kube-proxy, CoreDNS, metrics-server; see hack/testbed/node.sh) that
# runs containers, with the operator's image loaded.
#
#   hack/cluster.sh up          build the binaries if needed, start the cluster, register the Nodes
#   hack/cluster.sh down        delete the cluster and its data (harmless when there is none)
#   hack/cluster.sh status      where data, logs and kubeconfig live, and whether it answers
#   hack/cluster.sh kubeconfig  print the kubeconfig path (for KUBECONFIG=$(hack/cluster.sh kubeconfig))
#   hack/cluster.sh load IMAGE  load a podman image into the real node's containerd
#
# LLMOP_REAL_NODE=0 leaves the real node out (no root needed then).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export KWOK_WORKDIR="$CLUSTER_DIR"
export KWOK_KUBE_VERSION="$KUBE_VERSION"
KUBECONFIG_PATH="$CLUSTER_DIR/clusters/$CLUSTER_NAME/kubeconfig.yaml"

kctl() { kubectl --kubeconfig "$KUBECONFIG_PATH" "$@"; }

# shellcheck source=testbed/node.sh
. "$HACK_DIR/testbed/node.sh"
REAL_NODE="${LLMOP_REAL_NODE:-1}"
# shellcheck source=testbed/lws.sh
. "$HACK_DIR/testbed/lws.sh"

# kwok manages only the Nodes annotated as fake (kwokctl's default is all Nodes, the real one too);
# the apiserver reaches the kubelet by its InternalIP with a client certificate (logs, exec,
# port-forward, metrics), and serves the kubernetes Service's ClusterIP under its certificate.
kwokctl_config() {
  local pki="$CLUSTER_DIR/clusters/$CLUSTER_NAME/pki"
  cat <<YAML
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokctlConfiguration
options:
  kubeApiserverCertSANs: ["$KUBERNETES_SERVICE_IP", "$NODE_IP"]
componentsPatches:
  - name: kwok-controller
    extraArgs:
      - {key: manage-all-nodes, value: "false", override: true}
      - {key: manage-nodes-with-annotation-selector, value: "kwok.x-k8s.io/node=fake"}
      - {key: cidr, value: "$FAKE_POD_CIDR_GATEWAY"}
  - name: kube-apiserver
    extraArgs:
      - {key: service-cluster-ip-range, value: "$SERVICE_CIDR"}
      - {key: kubelet-preferred-address-types, value: "InternalIP"}
      - {key: kubelet-client-certificate, value: "$pki/admin.crt"}
      - {key: kubelet-client-key, value: "$pki/admin.key"}
  - name: kube-controller-manager
    extraArgs:
      - {key: service-cluster-ip-range, value: "$SERVICE_CIDR"}
      # One instance each: nothing to elect. With leader election, a lease renewal that misses its
      # deadline while engines load the 2 cores makes the component exit, and nothing restarts it.
      - {key: leader-elect, value: "false"}
      # Each controller's client may send 200 requests/s (default 20): at 20 the Deployment controller
      # alone held 1000 new Deployments to about 2 per second (bench/results/operator_scale.md).
      - {key: kube-api-qps, value: "200"}
      - {key: kube-api-burst, value: "400"}
  - name: kube-scheduler
    extraArgs:
      - {key: leader-elect, value: "false"}
  # A disposable test cluster: an fsync that stalls behind the page cache's writeback (an engine loading
  # weights, pip writing a venv) can hold etcd's writes past the apiserver's 60 s request timeout, and every
  # write meanwhile fails with 504.
  - name: etcd
    extraArgs:
      - {key: unsafe-no-fsync, value: "true"}
YAML
}

answers() { [ -f "$KUBECONFIG_PATH" ] && kctl get --raw /readyz >/dev/null 2>&1; }

exists() { [ -d "$CLUSTER_DIR/clusters/$CLUSTER_NAME" ]; }

create_cluster() {
  log "creating cluster '$CLUSTER_NAME' under $CLUSTER_DIR"
  mkdir -p "$CLUSTER_DIR"
  kwokctl_config > "$CLUSTER_DIR/kwokctl.yaml"
  kwokctl create cluster --name "$CLUSTER_NAME" --runtime binary --config "$CLUSTER_DIR/kwokctl.yaml" \
    --kubeconfig "$CLUSTER_DIR/kubeconfig-merged.yaml" \
    --kube-authorization=true --kube-admission=true \
    --kube-apiserver-binary "$TOOLS_BIN/kube-apiserver" \
    --kube-controller-manager-binary "$TOOLS_BIN/kube-controller-manager" \
    --kube-scheduler-binary "$TOOLS_BIN/kube-scheduler" \
    --etcd-binary "$TOOLS_BIN/etcd" \
    --kwok-controller-binary "$TOOLS_BIN/kwok" \
    --wait 3m
}

wait_for_apiserver() {
  for _ in $(seq 1 120); do answers && return 0; sleep 1; done
  log "the apiserver did not answer within 120s; logs: $CLUSTER_DIR/clusters/$CLUSTER_NAME/logs"
  return 1
}

register_nodes() {
  log "registering the fake Nodes"
  kctl apply --server-side --force-conflicts -f "$HACK_DIR/testbed/nodes.yaml" >/dev/null
  kctl wait --for=condition=Ready node -l type=kwok --timeout=120s >/dev/null
  # Servers in RBAC tests and the operator's default ServiceAccount need the namespace ready.
  kctl get serviceaccount default -n default >/dev/null 2>&1 || sleep 2
}

# No storage provisioner runs here, so a default StorageClass is backed by a pool of static
# PersistentVolumes; the real PV controller binds claims to them. Released volumes (their
# claim was deleted) are recreated so the pool does not drain across runs.
register_storage() {
  local pool=${LLMOP_PV_POOL:-40}
  kctl get pv -o jsonpath='{range .items[?(@.status.phase=="Released")]}{.metadata.name}{"\n"}{end}' \
    | xargs -r kubectl --kubeconfig "$KUBECONFIG_PATH" delete pv --wait=false >/dev/null
  {
    cat <<YAML
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: Immediate
reclaimPolicy: Retain
allowVolumeExpansion: true
YAML
    for i in $(seq -w 1 "$pool"); do
      cat <<YAML
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: testbed-pv-$i, labels: {testbed.llm-operator.io/pool: "true"}}
spec:
  capacity: {storage: 1Ti}
  accessModes: [ReadWriteOnce, ReadWriteMany, ReadOnlyMany]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: standard
  hostPath: {path: /tmp/testbed-pv-$i}
YAML
    done
  } | kctl apply -f - >/dev/null
}

cmd_up() {
  local t0=$SECONDS
  bash "$HACK_DIR/build-tools.sh"
  if answers; then
    log "cluster '$CLUSTER_NAME' is already running"
  elif exists; then
    log "starting the stopped cluster '$CLUSTER_NAME'"
    kwokctl start cluster --name "$CLUSTER_NAME" || { log "start failed; recreating"; cmd_down; create_cluster; }
  else
    create_cluster
  fi
  wait_for_apiserver
  register_nodes
  register_storage
  lws_start
  if [ "$REAL_NODE" = 1 ]; then
    node_start
    node_load_image "$(bash "$HACK_DIR/build-images.sh" operator | tail -n1)"
  fi
  log "cluster '$CLUSTER_NAME' ready in $((SECONDS - t0))s; KUBECONFIG=$KUBECONFIG_PATH"
  kctl get nodes -L nvidia.com/gpu.product -L llm-operator.io/node
}

cmd_down() {
  node_stop
  lws_stop
  if exists; then
    kwokctl delete cluster --name "$CLUSTER_NAME" || true
    rm -rf "$CLUSTER_DIR/clusters/$CLUSTER_NAME"
    log "cluster '$CLUSTER_NAME' deleted"
  else
    log "no cluster '$CLUSTER_NAME' to delete"
  fi
}

cmd_status() {
  echo "cluster:    $CLUSTER_NAME"
  echo "data/logs:  $CLUSTER_DIR/clusters/$CLUSTER_NAME"
  echo "kubeconfig: $KUBECONFIG_PATH"
  echo "binaries:   $TOOLS_BIN"
  if answers; then
    echo "state:      running"
    lws_status
    node_status
    kctl get nodes -L nvidia.com/gpu.product -L llm-operator.io/node
  elif exists; then
    echo "state:      stopped (hack/cluster.sh up starts it)"
  else
    echo "state:      absent (hack/cluster.sh up creates it)"
  fi
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  kubeconfig) echo "$KUBECONFIG_PATH" ;;
  load) node_load_image "${2:?usage: $0 load IMAGE}" ;;
  *) echo "usage: $0 up|down|status|kubeconfig|load IMAGE" >&2; exit 2 ;;
esac
