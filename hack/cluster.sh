#!/usr/bin/env bash
# A local Kubernetes control plane of real processes (etcd, kube-apiserver with RBAC,
# kube-controller-manager, kube-scheduler) run by kwokctl's binary runtime, with kwok
# playing the kubelet for four fake Nodes: two 8x H100, one RTX 4090, one CPU-only.
#
#   hack/cluster.sh up          build the binaries if needed, start the cluster, register the Nodes
#   hack/cluster.sh down        delete the cluster and its data (harmless when there is none)
#   hack/cluster.sh status      where data, logs and kubeconfig live, and whether it answers
#   hack/cluster.sh kubeconfig  print the kubeconfig path (for KUBECONFIG=$(hack/cluster.sh kubeconfig))
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export KWOK_WORKDIR="$CLUSTER_DIR"
export KWOK_KUBE_VERSION="$KUBE_VERSION"
KUBECONFIG_PATH="$CLUSTER_DIR/clusters/$CLUSTER_NAME/kubeconfig.yaml"

kctl() { kubectl --kubeconfig "$KUBECONFIG_PATH" "$@"; }

answers() { [ -f "$KUBECONFIG_PATH" ] && kctl get --raw /readyz >/dev/null 2>&1; }

exists() { [ -d "$CLUSTER_DIR/clusters/$CLUSTER_NAME" ]; }

create_cluster() {
  log "creating cluster '$CLUSTER_NAME' under $CLUSTER_DIR"
  kwokctl create cluster --name "$CLUSTER_NAME" --runtime binary \
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
  kctl wait --for=condition=Ready node --all --timeout=120s >/dev/null
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
  log "cluster '$CLUSTER_NAME' ready in $((SECONDS - t0))s; KUBECONFIG=$KUBECONFIG_PATH"
  kctl get nodes -L nvidia.com/gpu.product
}

cmd_down() {
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
    kctl get nodes -L nvidia.com/gpu.product
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
  *) echo "usage: $0 up|down|status|kubeconfig" >&2; exit 2 ;;
esac
