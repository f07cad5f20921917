#!/usr/bin/env bash
# The LeaderWorkerSet controller (sigs.k8s.io/lws, $LWS_VERSION) as a host process beside the control
# plane, with its webhooks: the Pod mutating webhook writes the labels (group index, worker index, group
# key) and the env vars (LWS_LEADER_ADDRESS, LWS_GROUP_SIZE, LWS_WORKER_INDEX) that multi-node workloads
# read, and the LeaderWorkerSet defaulting and validating webhooks fill in and check the spec. Sourced by
# hack/cluster.sh (`up` starts it, `down` stops it, `status` reports it); needs no root.
#
# Upstream runs it in a Pod behind a Service and rotates its own certificates into a Secret. Here the
# apiserver reaches it on loopback: internal cert management is off, `up` makes a CA and a serving
# certificate (SAN 127.0.0.1) with openssl, and the webhook configurations of the module's
# config/webhook/manifests.yaml point at https://127.0.0.1:$LWS_WEBHOOK_PORT with that CA.

LWS_DIR="$CLUSTER_DIR/clusters/$CLUSTER_NAME/lws"
LWS_PIDFILE="$LWS_DIR/lws-controller.pid"
# Next to kwokctl's logs of the control plane's components.
LWS_LOG="$CLUSTER_DIR/clusters/$CLUSTER_NAME/logs/lws-controller.log"
# Loopback only, below the ephemeral range (tests' free ports) and far from kwokctl's ports (it counts
# down from 32767); upstream's defaults (9443, 8443, 8081) are left to whatever else a machine runs.
LWS_WEBHOOK_PORT=19443
LWS_METRICS_ADDRESS=127.0.0.1:18443
LWS_HEALTH_ADDRESS=127.0.0.1:18081

# The module's source in Go's module cache (build-tools.sh downloaded it; this is a cache hit).
lws_module_dir() {
  (cd "$LWS_DIR" && GOFLAGS= GOWORK=off go mod download "sigs.k8s.io/lws@$LWS_VERSION") >&2
  echo "$(go env GOMODCACHE)/sigs.k8s.io/lws@$LWS_VERSION"
}

# The pid in the pidfile, if it is a live LWS controller of this testbed (of any version).
lws_any_pid() {
  local pid exe
  [ -f "$LWS_PIDFILE" ] || return 1
  pid=$(cat "$LWS_PIDFILE")
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  [[ "$(basename "$exe")" == lws-controller-* ]] && echo "$pid"
}

# The running controller's pid, if it runs this version's binary.
lws_pid() {
  local pid
  pid=$(lws_any_pid) || return 1
  [ "$(readlink "/proc/$pid/exe")" = "$(readlink -f "$LWS_CONTROLLER")" ] && echo "$pid"
}

# A CA and a serving certificate for 127.0.0.1 (and localhost), kept across restarts of the cluster.
lws_certs() {
  local pki="$LWS_DIR/pki"
  if [ -s "$pki/tls.crt" ] && openssl x509 -checkend 86400 -noout -in "$pki/tls.crt" >/dev/null 2>&1; then
    return 0
  fi
  mkdir -p "$pki"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=llm-operator testbed lws webhook CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
  openssl req -new -newkey rsa:2048 -nodes -subj "/CN=lws-webhook-service.lws-system.svc" \
    -keyout "$pki/tls.key" -out "$pki/tls.csr" 2>/dev/null
  printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=critical,CA:FALSE" \
    "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" > "$pki/tls.ext"
  openssl x509 -req -days 3650 -in "$pki/tls.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -extfile "$pki/tls.ext" -out "$pki/tls.crt" 2>/dev/null
  chmod 600 "$pki/ca.key" "$pki/tls.key"
  log "lws: made the webhook's CA and serving certificate in $pki"
}

# The controller's Configuration (config.lws.x-k8s.io/v1alpha1, api/config/v1alpha1 of the module).
lws_config() {
  cat > "$LWS_DIR/config.yaml" <<YAML
apiVersion: config.lws.x-k8s.io/v1alpha1
kind: Configuration
# One instance: nothing to elect (see the kube-controller-manager's leader-elect in hack/cluster.sh).
leaderElection:
  leaderElect: false
# The certificates are made by hack/testbed/lws.sh; the controller must not rotate them into a Secret.
internalCertManagement:
  enable: false
webhook:
  host: 127.0.0.1
  port: $LWS_WEBHOOK_PORT
  certDir: $LWS_DIR/pki
metrics:
  bindAddress: $LWS_METRICS_ADDRESS
health:
  healthProbeBindAddress: $LWS_HEALTH_ADDRESS
YAML
}

lws_install_crds() {
  local dir=$1
  kctl apply --server-side --force-conflicts -f "$dir/config/crd/bases" >/dev/null
  # Until the apiserver has written the new CRD's first conditions, `kubectl wait` fails at once
  # (".status.conditions accessor error") instead of waiting: ask again.
  local crd=crd/leaderworkersets.leaderworkerset.x-k8s.io
  for _ in $(seq 1 30); do
    kctl wait --for=condition=Established --timeout=60s "$crd" >/dev/null 2>&1 && return 0
    sleep 1
  done
  kctl wait --for=condition=Established --timeout=1s "$crd" >/dev/null
}

# The module's webhook configurations as its config/default kustomization makes them, pointed at
# loopback: the "lws-" name prefix (the names its cert manager would patch), and config/webhook's patches
# that limit the Pod webhooks to Pods labelled leaderworkerset.sigs.k8s.io/name, so no other Pod ever
# waits for this process. The CRD needs no conversion webhook: it serves one version, v1.
lws_install_webhooks() {
  local dir=$1 ca
  grep -q 'key: leaderworkerset.sigs.k8s.io/name' "$dir/config/webhook/mutating-patch.yaml" \
    || { log "lws: $dir/config/webhook/mutating-patch.yaml no longer selects Pods by leaderworkerset.sigs.k8s.io/name"; return 1; }
  ca=$(base64 -w0 < "$LWS_DIR/pki/ca.crt")
  kctl create --dry-run=client -o json -f "$dir/config/webhook/manifests.yaml" \
    | python3 -c '
import json, sys
port, ca = sys.argv[1], sys.argv[2]
text, decoder, pos, objs = sys.stdin.read(), json.JSONDecoder(), 0, []
while text[pos:].strip():  # kubectl prints one JSON document per object
    obj, pos = decoder.raw_decode(text, len(text) - len(text[pos:].lstrip()))
    objs.extend(obj.get("items", [obj]))
for obj in objs:
    obj["metadata"]["name"] = "lws-" + obj["metadata"]["name"]
    for hook in obj["webhooks"]:
        path = hook["clientConfig"]["service"]["path"]
        hook["clientConfig"] = {"url": f"https://127.0.0.1:{port}{path}", "caBundle": ca}
        if any("pods" in rule["resources"] for rule in hook["rules"]):
            hook["objectSelector"] = {"matchExpressions": [{"key": "leaderworkerset.sigs.k8s.io/name", "operator": "Exists"}]}
json.dump({"apiVersion": "v1", "kind": "List", "items": objs}, sys.stdout)
' "$LWS_WEBHOOK_PORT" "$ca" \
    | kctl apply --server-side --force-conflicts -f - >/dev/null
}

# True once the apiserver gets an answer from both LeaderWorkerSet webhooks (a server-side dry run calls them).
lws_admits() {
  kctl create --dry-run=server -o name -f - >/dev/null 2>&1 <<YAML
apiVersion: leaderworkerset.x-k8s.io/v1
kind: LeaderWorkerSet
metadata: {name: testbed-lws-probe, namespace: default}
spec:
  leaderWorkerTemplate:
    size: 2
    workerTemplate:
      spec:
        containers: [{name: probe, image: registry.example/probe:1}]
YAML
}

lws_start() {
  local t0=$SECONDS dir pid
  mkdir -p "$LWS_DIR" "$(dirname "$LWS_LOG")"
  dir=$(lws_module_dir)
  lws_install_crds "$dir"
  lws_certs
  lws_config
  if pid=$(lws_pid); then
    log "lws: controller $LWS_VERSION already running (pid $pid)"
  else
    # A controller of another version (or a stale pidfile) goes first.
    lws_stop
    setsid "$LWS_CONTROLLER" --config "$LWS_DIR/config.yaml" --kubeconfig "$KUBECONFIG_PATH" \
      --leader-elect=false --zap-log-level=info >>"$LWS_LOG" 2>&1 < /dev/null &
    echo $! > "$LWS_PIDFILE"
  fi
  lws_install_webhooks "$dir"
  for _ in $(seq 1 90); do
    lws_admits && { log "lws: controller $LWS_VERSION and its webhooks ready in $((SECONDS - t0))s (log: $LWS_LOG)"; return 0; }
    kill -0 "$(cat "$LWS_PIDFILE")" 2>/dev/null || break
    sleep 1
  done
  log "lws: the controller's webhooks do not answer; log: $LWS_LOG"
  tail -n 20 "$LWS_LOG" >&2
  return 1
}

lws_stop() {
  local pid
  if pid=$(lws_any_pid); then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$LWS_PIDFILE"
}

lws_status() {
  local pid
  if pid=$(lws_pid); then
    echo "lws:        controller $LWS_VERSION running (pid $pid, webhooks https://127.0.0.1:$LWS_WEBHOOK_PORT, log: $LWS_LOG)"
  else
    echo "lws:        controller not running (hack/cluster.sh up starts it; log: $LWS_LOG)"
  fi
}
