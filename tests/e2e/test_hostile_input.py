"""Hostile LLMServices against the real apiserver and the running operator: fuzzed documents (the same
generator as tests/unit/api/test_fuzzed_specs.py, seeded), a 10,000-character model name, non-ASCII text
wherever Kubernetes allows it, and extraArgs at the schema's maximum. Each is refused by the apiserver with
the field named, or accepted and then served (Ready) or refused by the operator (Stalled=True); the operator
process survives all of it and still serves a valid LLMService afterwards."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from cases import fuzz
from support.cluster import Cluster, OperatorProcess, condition

API_GROUP, API_VERSION, PLURAL = "serving.llm-operator.io", "v1alpha1", "llmservices"
SEED, COUNT, REFUSED_COUNT = 0, 200, 40
H100 = "NVIDIA-H100-80GB-HBM3"


def llmservice(name: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "engine": "vllm",
        "model": {"name": "meta-llama/Llama-3.1-8B-Instruct", "parameters": "8B"},
        "resources": {"gpus": 1, "gpuProduct": H100},
        "router": {"enabled": False},
    }
    body.update(spec)
    return {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": "LLMService", "metadata": {"name": name},
            "spec": body}


def create(cluster: Cluster, namespace: str, manifest: dict[str, Any]) -> Any:
    """`kubectl create --validate=strict` (not apply: its last-applied annotation would hold the whole
    object, and annotations are limited to 256 KiB together)."""
    return cluster.kubectl("create", "--validate=strict", "-n", namespace, "-f", "-",
                           input=json.dumps(manifest), check=False)


def llmservices(cluster: Cluster, namespace: str) -> dict[str, dict[str, Any]]:
    items = json.loads(cluster.kubectl("get", "llms", "-n", namespace, "-o", "json").stdout)["items"]
    return {item["metadata"]["name"]: item for item in items}


def new_log(operator: OperatorProcess, since: int) -> str:
    return operator.log()[since:]


def handler_failures(log: str, namespace: str) -> list[str]:
    """ERROR lines about this namespace's objects: a reconcile that raised (the resync loop logs "resync of
    <namespace>/<name>" with the traceback; kopf retries its handler)."""
    return [line for line in log.splitlines() if "[ERROR" in line and f"{namespace}/" in line]


@pytest.fixture
def api(cluster: Cluster) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(config.new_client_from_config(config_file=cluster.kubeconfig))


def test_fuzzed_documents_are_refused_by_the_apiserver_or_stalled_by_the_operator(
    operator: OperatorProcess, cluster: Cluster, namespace: str, api: client.CustomObjectsApi
) -> None:
    """COUNT invalid documents (each is refused by the apiserver, or accepted and then Stalled), and
    REFUSED_COUNT valid ones the operator must refuse itself (a managed extraArgs flag, a model too large for
    its GPUs): all of them at once, then a valid LLMService that must still become Ready."""
    pid, log_start = operator.process.pid, len(operator.log())
    invalid = fuzz.invalid_documents(SEED, COUNT)
    refused_by_operator = fuzz.operator_refused_documents(SEED, REFUSED_COUNT)
    started = time.monotonic()
    accepted: dict[str, fuzz.Fuzzed] = {}
    unnamed: list[str] = []
    for fuzzed in invalid + refused_by_operator:
        try:
            # fieldValidation=Strict, as kubectl --validate=strict: unknown fields are refused, not pruned.
            api.create_namespaced_custom_object(API_GROUP, API_VERSION, namespace, PLURAL, fuzzed.manifest,
                                                field_validation="Strict", _request_timeout=10)
        except ApiException as error:
            # 422: the schema or a CEL rule; 400: strict decoding (an unknown field, a wrong type inside one).
            assert error.status in (400, 422), f"{fuzzed.describe()}: {error.status} {error.body}"
            assert fuzzed in invalid, f"the CRD refused a valid spec: {fuzzed.describe()}: {error.body}"
            message = json.loads(error.body).get("message", "")
            if fuzzed.field not in message:
                unnamed.append(f"{fuzzed.describe()}: {message[:300]}")
        else:
            accepted[fuzzed.manifest["metadata"]["name"]] = fuzzed
    sent = time.monotonic() - started
    # The apiserver names the field in (nearly) every refusal; list those it words otherwise.
    assert len(unnamed) <= COUNT // 20, "\n".join(unnamed)

    def all_stalled() -> bool:
        found = llmservices(cluster, namespace)
        return all(condition(found.get(name), "Stalled").get("status") == "True" for name in accepted)

    cluster.wait_for(f"Stalled=True on the {len(accepted)} accepted", all_stalled, timeout=60, interval=1)
    stalled_at = time.monotonic() - started
    for name, item in llmservices(cluster, namespace).items():
        fuzzed = accepted[name]
        if fuzzed.kind == "no-fit":
            assert condition(item, "ModelFits")["status"] == "False", item["status"]
        else:
            assert fuzzed.field in condition(item, "Stalled")["message"], (fuzzed.describe(), item["status"])
    assert cluster.kubectl("get", "deployments", "-n", namespace, "-o", "name").stdout.strip() == ""
    print(f"{len(invalid)} invalid documents: {len(invalid) + len(refused_by_operator) - len(accepted)} refused by "
          f"the apiserver ({len(unnamed)} without the field named), {len(accepted) - len(refused_by_operator)} "
          f"accepted; {len(accepted)} stalled by the operator; sent in {sent:.1f} s, all stalled after "
          f"{stalled_at:.1f} s")

    assert operator.alive() and operator.process.pid == pid, "the operator died or was restarted"
    assert handler_failures(new_log(operator, log_start), namespace) == []
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(llmservice("still-works")))
    cluster.kubectl("wait", "--for=condition=Ready", "llms/still-works", "-n", namespace, "--timeout=120s",
                    timeout=140)
    assert operator.alive() and operator.process.pid == pid


def test_a_model_name_of_ten_thousand_characters_is_refused_naming_the_field(
    operator: OperatorProcess, cluster: Cluster, namespace: str
) -> None:
    result = create(cluster, namespace, llmservice("long-name", model={"name": "a/" + "m" * 9998}))
    output = result.stderr + result.stdout
    assert result.returncode != 0, output
    assert "spec.model.name" in output and "512" in output, output
    assert cluster.get_json("llms", "long-name", namespace) is None
    assert operator.alive()


def unicode_service(name: str, served: str, model: str, value: str, note: str) -> dict[str, Any]:
    manifest = llmservice(
        name,
        # No parameters: the fit check asks the Hub for this name's count (and cannot have it).
        model={"name": model, "servedName": served},
        serving={"env": [{"name": "GREETING", "value": value}]},
        router={"enabled": True},
    )
    manifest["metadata"]["annotations"] = {"example.com/note": note}
    return manifest


def settled(cluster: Cluster, namespace: str, name: str, timeout: float) -> dict[str, Any]:
    """The LLMService once Ready or Stalled is True."""
    def done() -> dict[str, Any] | None:
        obj = cluster.get_json("llms", name, namespace)
        statuses = {condition(obj, "Ready").get("status"), condition(obj, "Stalled").get("status")}
        return obj if "True" in statuses else None

    return cluster.wait_for(f"{name} Ready or Stalled", done, timeout=timeout, interval=2)


def test_non_ascii_text_where_kubernetes_allows_it(operator: OperatorProcess, cluster: Cluster, namespace: str):
    """metadata.name must be DNS-1123 (refused); servedName, model name, env values and annotations may hold
    any Unicode, and travel unchanged to the engine's args, env and the router's config."""
    refused = create(cluster, namespace, llmservice("modèle"))
    assert refused.returncode != 0 and "metadata.name" in refused.stderr, refused.stderr

    pid, log_start = operator.process.pid, len(operator.log())
    served, model, value, note = "modèle-ünïcode-模型", "acme/modèle-ü", "valeur-ß-値", "ça va? 日本語 ✓"
    created = create(cluster, namespace, unicode_service("unicode", served, model, value, note))
    assert created.returncode == 0, created.stderr
    obj = settled(cluster, namespace, "unicode", timeout=180)
    assert condition(obj, "Ready")["status"] == "True", obj.get("status")

    assert obj["metadata"]["annotations"]["example.com/note"] == note
    fits = condition(obj, "ModelFits")
    # A non-ASCII name is no Hub repo id: nothing is asked of the Hub, and the check asks for the count.
    assert (fits["status"], fits["reason"]) == ("Unknown", "NotChecked"), fits
    engine = cluster.get_json("deployment", "unicode", namespace)["spec"]["template"]["spec"]["containers"][0]
    assert engine["args"][0] == model and engine["args"][engine["args"].index("--served-model-name") + 1] == served
    assert {"name": "GREETING", "value": value} in engine["env"]
    router_config = yaml.safe_load(cluster.get_json("configmap", "unicode-router", namespace)["data"]["config.yaml"])
    assert router_config["model_list"][0]["model_name"] == served
    assert operator.alive() and operator.process.pid == pid
    assert handler_failures(new_log(operator, log_start), namespace) == []


def test_characters_outside_the_basic_multilingual_plane(
    operator: OperatorProcess, cluster: Cluster, namespace: str
) -> None:
    """An emoji in servedName and an env value: as valid for Kubernetes as any other Unicode."""
    pid, log_start = operator.process.pid, len(operator.log())
    created = create(cluster, namespace, unicode_service("emoji", "llama-🦙", "acme/llama", "key-🔑", "🚀"))
    assert created.returncode == 0, created.stderr
    try:
        obj = settled(cluster, namespace, "emoji", timeout=60)
    finally:
        assert operator.alive() and operator.process.pid == pid
    assert condition(obj, "Ready")["status"] == "True", obj.get("status")
    assert handler_failures(new_log(operator, log_start), namespace) == []


def test_extra_args_at_the_schema_maximum(operator: OperatorProcess, cluster: Cluster, namespace: str) -> None:
    """64 arguments of 4096 characters each (256 KiB, the schema's maximum) are served; 65 are refused."""
    def args(count: int) -> list[str]:
        return [(f"--fuzz-{i}=" + "x" * 4096)[:4096] for i in range(count)]

    too_many = create(cluster, namespace, llmservice("args-65", serving={"extraArgs": args(65)}))
    assert too_many.returncode != 0, "65 extraArgs were accepted"
    assert "spec.serving.extraArgs" in too_many.stderr and "64" in too_many.stderr, too_many.stderr[:2000]

    pid, log_start = operator.process.pid, len(operator.log())
    created = create(cluster, namespace, llmservice("args-64", serving={"extraArgs": args(64)}))
    assert created.returncode == 0, created.stderr[:2000]

    obj = settled(cluster, namespace, "args-64", timeout=180)
    assert condition(obj, "Ready").get("status") == "True", obj.get("status")
    engine = cluster.get_json("deployment", "args-64", namespace)["spec"]["template"]["spec"]["containers"][0]
    assert engine["args"][-64:] == args(64)
    assert operator.alive() and operator.process.pid == pid
    time.sleep(6)  # kopf writes its annotations after the handler; a refused write would be retried within seconds
    errors = [line for line in new_log(operator, log_start).splitlines()
              if "[ERROR" in line and (f"{namespace}/" in line or '"args-64"' in line)]
    assert errors == [], errors
    # kopf keeps a digest of the handled spec, not a copy (a copy exceeded the 256 KiB limit on annotations).
    annotations = cluster.get_json("llmservice", "args-64", namespace)["metadata"]["annotations"]
    diffbase = json.loads(annotations["serving.llm-operator.io/last-handled-configuration"])
    assert list(diffbase) == ["sha256"], annotations
    handled = [line for line in new_log(operator, log_start).splitlines() if f"reconciled {namespace}/args-64 " in line]
    assert len(handled) == 1, handled
