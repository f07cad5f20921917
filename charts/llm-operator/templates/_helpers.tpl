{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "llm-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Fully qualified app name: the release name, plus the chart name unless the release already contains it. */}}
{{- define "llm-operator.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "llm-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "llm-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "llm-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end -}}

{{/* No app.kubernetes.io/managed-by: llm-operator here: that label marks the objects the operator itself manages. */}}
{{- define "llm-operator.labels" -}}
helm.sh/chart: {{ include "llm-operator.chart" . }}
{{ include "llm-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "llm-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "llm-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The leader-election Lease's name: leaderElection.leaseName, else the full name (one Lease per release). */}}
{{- define "llm-operator.leaseName" -}}
{{- default (include "llm-operator.fullname" .) .Values.leaderElection.leaseName -}}
{{- end -}}

{{- define "llm-operator.metricsServiceName" -}}
{{- printf "%s-metrics" (include "llm-operator.fullname" . | trunc 55 | trimSuffix "-") -}}
{{- end -}}

{{/*
The PromQL label matchers of this release's operator series. Prometheus names the job of a
ServiceMonitor's targets after the Service (metrics-service name), and labels them with its namespace.
*/}}
{{- define "llm-operator.promSelector" -}}
job="{{ include "llm-operator.metricsServiceName" . }}",namespace="{{ .Release.Namespace }}"
{{- end -}}

{{/*
Flags the chart sets itself, which extraArgs must not repeat or contradict. The schema refuses their
exact spellings; this also refuses abbreviations, which `llm-operator run` (argparse) expands, e.g.
--metrics=9000 for --metrics-port=9000 or --leader-elect-names=x for --leader-elect-namespace=x.
*/}}
{{- define "llm-operator.reservedFlags" -}}
--peering --namespace --all-namespaces --kubeconfig --liveness --leader-elect --leader-elect-name --leader-elect-namespace --metrics-port
{{- end -}}

{{/* Combinations the schema cannot express: `helm install` fails with the reason instead of deploying them. */}}
{{- define "llm-operator.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) -}}
{{- fail (printf "replicaCount %d needs leaderElection.enabled=true: without the Lease every replica would reconcile and autoscale the same LLMServices at once (set replicaCount=1 to run without leader election)" (int .Values.replicaCount)) -}}
{{- end -}}
{{- if and .Values.metrics.enabled (eq (int .Values.metrics.port) (int .Values.livenessProbe.port)) -}}
{{- fail (printf "metrics.port and livenessProbe.port are both %d: the metrics and liveness endpoints need a port each" (int .Values.metrics.port)) -}}
{{- end -}}
{{- if and (not .Values.metrics.enabled) (or .Values.metrics.serviceMonitor.enabled .Values.metrics.prometheusRule.enabled) -}}
{{- fail "metrics.serviceMonitor and metrics.prometheusRule need metrics.enabled=true: without --metrics-port there is nothing to scrape or alert on" -}}
{{- end -}}
{{- $reserved := splitList " " (include "llm-operator.reservedFlags" .) -}}
{{- range .Values.extraArgs -}}
{{- $flag := regexReplaceAll "=.*$" . "" -}}
{{- if and (hasPrefix "--" $flag) (gt (len $flag) 2) -}}
{{- range $reserved -}}
{{- if hasPrefix $flag . -}}
{{- fail (printf "extraArgs: %q sets %s (argparse expands abbreviations), which the chart sets itself: use watchNamespaces, leaderElection, metrics or livenessProbe instead" $flag .) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "llm-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/*
What the operator does in every namespace it serves: exactly the verbs of
operator/llm_operator/handlers.py and kube.py plus kopf's own. Rendered into the
ClusterRole (all namespaces) or into one Role per entry of watchNamespaces.
No delete, update or deletecollection anywhere: children are removed by the garbage
collector through their owner references, and every write is a patch
(server-side apply, kopf's annotations, the status subresource) or a create.
*/}}
{{- define "llm-operator.namespacedRules" -}}
# LLMServices: kopf lists and watches them; the operator gets fallback LLMServices
# named by a router; kopf patches its bookkeeping annotations (prefix serving.llm-operator.io/).
- apiGroups: ["serving.llm-operator.io"]
  resources: ["llmservices"]
  verbs: ["get", "list", "watch", "patch"]
# status (phase, conditions, autoscaling decisions) is merge-patched through the subresource.
- apiGroups: ["serving.llm-operator.io"]
  resources: ["llmservices/status"]
  verbs: ["patch"]
# Engine and router Deployments: server-side apply (patch, and create when absent), reads of
# the engine's replicas and readiness (get), and kopf watches them to repair drift (list, watch).
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch"]
# Engine LeaderWorkerSets of models served across nodes (resources.nodes > 1): applied, read and
# watched like the Deployments; the autoscaler writes their group count through the scale subresource.
- apiGroups: ["leaderworkerset.x-k8s.io"]
  resources: ["leaderworkersets"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["leaderworkerset.x-k8s.io"]
  resources: ["leaderworkersets/scale"]
  verbs: ["get", "patch"]
# The model cache: read first (get) because a claim is never shrunk or replaced; applied like above.
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["get", "list", "watch", "create", "patch"]
# Engine and router Services and the router's ConfigMap: applied, and watched to repair drift.
- apiGroups: [""]
  resources: ["services", "configmaps"]
  verbs: ["list", "watch", "create", "patch"]
# The router's HorizontalPodAutoscaler: server-side applied, and watched so that a hand edit or
# deletion is repaired at once.
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["list", "watch", "create", "patch"]
# Pods are only observed: their readiness and the scheduler's verdicts go into status.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
# Secrets: get tells whether a referenced Secret exists (asked for as PartialObjectMetadata,
# so no values are sent), and reads a model's Hub token (spec.model.tokenSecretRef) when the fit
# check reads the model's parameter count from the Hub, once per model; create makes the
# generated router key once. No list or watch: the operator can never enumerate or stream Secrets.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "create"]
# Warning and Normal Events (InvalidSpec, ModelDoesNotFit, Scaled, kopf's handler errors);
# both the operator and kopf post core/v1 Events.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end -}}

{{/*
kopf's own cluster-level observation. It lists and watches CustomResourceDefinitions to notice
CRDs added, changed or removed while it runs (without it kopf logs a warning and only scans at
start-up). With namespaced watching it also lists and watches Namespaces, to follow the
watched namespaces being created and deleted (in clusterwide mode it never reads Namespaces).
*/}}
{{- define "llm-operator.clusterRules" -}}
# kopf follows CRDs being added, changed or removed while it runs (read-only, cluster-scoped).
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
{{- if .Values.watchNamespaces }}
# kopf follows the watched namespaces being created and deleted (namespaced mode only).
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}
{{- end -}}
