"""The LiteLLM router in front of every LLMService, in one package: its config (`router.config`), its
Kubernetes objects (`router.objects`, the config rendered once per plan) and its condition (`router.status`).

One router per LLMService (`<name>-router`, port 4000) serves the model under its servedName, retries,
and falls back in order to other LLMServices' engines or to managed APIs. Secrets are only referenced:
the config says `os.environ/<VAR>` and the Deployment fills each variable from a secretKeyRef.

Queue signal for Ollama
-----------------------
Ollama exposes no metrics, so the autoscaler reads the load of an Ollama LLMService from its router.
Checked against LiteLLM 1.108.7 (the pinned release):

- LiteLLM's Prometheus callback needs no licence: with `callbacks: ["prometheus"]` the proxy serves
  `/metrics`. Its default asks for the master key; the config sets `require_auth_for_metrics_endpoint:
  false` so Prometheus scrapes it without one (the page holds counts and model names, no secrets).
- It has no per-model in-flight gauge (there are per-model counters of finished requests only), but every
  proxy process exports `litellm_in_flight_requests`: the HTTP requests it is handling right now (a
  streaming completion counts until its last chunk). `/health/backlog` returns the same number as JSON
  (with the master key).
- A router belongs to exactly one LLMService and serves one local model, so the router's in-flight count
  IS the per-model signal: the requests that model is running or queuing (plus, rarely, requests being
  served by a fallback, which also mean the local model could not keep up).

So the signal is, per LLMService (Prometheus with the usual pod-label relabelling):

    in_flight = sum(litellm_in_flight_requests{namespace="<ns>", app_kubernetes_io_instance="<name>",
                                               app_kubernetes_io_component="router"})
                - count(litellm_in_flight_requests{...same selector...})   # each scrape counts itself

    waiting   = max(0, in_flight - slots x ready engine replicas)

where `slots` is spec.serving.maxConcurrentRequests (OLLAMA_NUM_PARALLEL), or 1 when unset (Ollama's
default; the smaller guess scales up sooner). `waiting / ready replicas` compares with
autoscaling.targetQueueDepth as vLLM's `vllm:num_requests_waiting` and TGI's `tgi_queue_size` do. The
router Pods carry `prometheus.io/scrape|port|path` annotations for /metrics on port 4000. With several
proxy workers per Pod, set PROMETHEUS_MULTIPROC_DIR to a writable directory (an emptyDir): the gauge is
then summed across the workers (`livesum`) and each scrape still counts once.

tests/e2e/test_router_proxy.py::test_in_flight_signal_moves_under_concurrent_load checks it against the
real proxy: 8 concurrent requests to an engine that answers after 4 s read 8 throughout, and 0 before
and after.
"""
