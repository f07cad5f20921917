"""make_plan (validate, fit, build) and `llm-operator render` over the examples."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from llm_operator.plan import endpoint, make_plan
from llm_operator.render import RenderError, render_documents, render_files
from unit.factories import UID, manifest

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "manifests" / "examples").glob("*.yaml"))
SKIP = {"serving.llm-operator.io/skip-fit-check": "true"}
NO_ROUTER = {"router": {"enabled": False}}
ENGINE_KINDS = ["Service", "Deployment"]
ROUTER_KINDS = ["ConfigMap", "Service", "Deployment", "HorizontalPodAutoscaler"]
TOO_BIG = {
    "model": {"name": "meta-llama/Llama-3.3-70B-Instruct", "parameters": "70B"},
    "resources": {"gpus": 1, "gpuProduct": "NVIDIA-H100-80GB-HBM3"},
}


def kinds_and_names(objects: list[dict]) -> list[tuple[str, str]]:
    return [(o["kind"], o["metadata"]["name"]) for o in objects]


def with_router(name: str) -> list[tuple[str, str]]:
    """The objects of LLMService `name` without storage, in apply order: the engine's, then the router's."""
    return [(kind, name) for kind in ENGINE_KINDS] + [(kind, f"{name}-router") for kind in ROUTER_KINDS]


def by_kind_and_name(objects: list[dict], kind: str, name: str) -> dict:
    (obj,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return obj


def apiserver_body(doc: dict) -> dict:
    """What kopf hands the handler: server-set metadata and a status next to the spec."""
    body = {**doc, "metadata": {**doc["metadata"], "uid": UID, "generation": 4, "resourceVersion": "991",
                                "creationTimestamp": "2025-01-01T00:00:00Z",
                                "managedFields": [{"manager": "kubectl"}], "finalizers": []}}
    body["status"] = {"phase": "Ready", "conditions": [{"type": "Ready", "status": "True"}]}
    return body


# --- make_plan ----------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ["vllm", "tgi", "ollama"])
def test_valid_spec_is_deployed(engine: str) -> None:
    plan = make_plan(apiserver_body(manifest(engine)), UID)
    assert plan.problems == []
    assert plan.service is not None
    assert plan.deploy
    assert kinds_and_names(plan.objects) == with_router("llm")
    assert all(o["metadata"]["ownerReferences"][0]["uid"] == UID for o in plan.objects)
    assert plan.fit is not None and plan.fit.fits


@pytest.mark.parametrize("engine", ["vllm", "tgi", "ollama"])
def test_valid_spec_without_router_deploys_the_engine_only(engine: str) -> None:
    plan = make_plan(apiserver_body(manifest(engine, NO_ROUTER)), UID)
    assert plan.problems == []
    assert plan.deploy
    assert kinds_and_names(plan.objects) == [("Service", "llm"), ("Deployment", "llm")]
    assert all(o["metadata"]["ownerReferences"][0]["uid"] == UID for o in plan.objects)
    assert plan.fit is not None and plan.fit.fits


def test_server_set_metadata_and_status_are_ignored() -> None:
    with_server_fields = make_plan(apiserver_body(manifest("vllm")), UID)
    plain = make_plan(manifest("vllm"), UID)
    assert with_server_fields.objects == plain.objects


def test_labels_and_annotations_of_the_llmservice_are_read() -> None:
    plan = make_plan(manifest("vllm", TOO_BIG, annotations={**SKIP, "team": "a"}), UID)
    assert plan.service is not None
    assert plan.service.metadata.annotations["team"] == "a"


@pytest.mark.parametrize(
    ("engine", "patch", "field"),
    [
        ("ollama", {"quantization": {"method": "awq"}}, "spec.quantization.method"),
        ("tgi", {"quantization": {"method": "gguf"}}, "spec.quantization.method"),
        ("vllm", {"serving": {"maxInputTokens": 10}}, "spec.serving.maxInputTokens"),
        ("vllm", {"resources": {"gpus": 1}, "serving": {"tensorParallelSize": 2}}, "spec.serving.tensorParallelSize"),
        ("vllm", {"quantization": {"method": "bitsandbytes", "bits": 3}}, "spec.quantization.bits"),
        ("vllm", {"replicas": "2"}, "spec.replicas"),
        ("vllm", {"unknownField": 1}, "unknownField"),
    ],
)
def test_invalid_spec_gives_problems_and_no_objects(engine: str, patch: dict, field: str) -> None:
    plan = make_plan(manifest(engine, patch), UID)
    assert plan.objects == []
    assert not plan.deploy
    assert plan.service is None
    assert plan.fit is None
    assert any(field in problem for problem in plan.problems), plan.problems


def test_invalid_spec_is_refused_even_with_the_skip_annotation() -> None:
    plan = make_plan(manifest("ollama", {"quantization": {"method": "awq"}}, annotations=SKIP), UID)
    assert plan.problems
    assert plan.objects == []


def test_model_that_does_not_fit_is_not_deployed() -> None:
    plan = make_plan(manifest("vllm", TOO_BIG), UID)
    assert plan.problems == []
    assert plan.service is not None
    assert plan.fit is not None
    assert not plan.fit.fits
    assert plan.fit.status == "False"
    assert plan.objects == []
    assert not plan.deploy


def test_skip_fit_check_annotation_deploys_anyway() -> None:
    plan = make_plan(manifest("vllm", TOO_BIG, annotations=SKIP), UID)
    assert plan.fit is not None
    assert plan.fit.status == "False"
    assert plan.deploy
    assert kinds_and_names(plan.objects) == with_router("llm")


@pytest.mark.parametrize("value", ["false", "True", "yes", ""])
def test_only_the_exact_value_true_skips_the_fit_check(value: str) -> None:
    plan = make_plan(manifest("vllm", TOO_BIG, annotations={"serving.llm-operator.io/skip-fit-check": value}), UID)
    assert plan.objects == []


def test_more_gpus_make_it_fit() -> None:
    plan = make_plan(manifest("vllm", {**TOO_BIG, "resources": {"gpus": 4, "gpuProduct": "NVIDIA-H100-80GB-HBM3"}}),
                     UID)
    assert plan.fit is not None and plan.fit.status == "True"
    assert plan.deploy


def test_autoscaled_replicas_reach_the_deployment() -> None:
    body = manifest("vllm", {"autoscaling": {"enabled": True, "minReplicas": 1, "maxReplicas": 4}})
    objects = make_plan(body, UID, autoscaled_replicas=3).objects
    assert by_kind_and_name(objects, "Deployment", "llm")["spec"]["replicas"] == 3
    # The autoscaler scales the engine; the router's own HPA scales the router from spec.router.replicas.
    assert "replicas" not in by_kind_and_name(objects, "Deployment", "llm-router")["spec"]
    assert by_kind_and_name(objects, "HorizontalPodAutoscaler", "llm-router")["spec"]["minReplicas"] == 1


@pytest.mark.parametrize("engine", ["vllm", "tgi", "ollama"])
def test_endpoint_is_the_router_when_enabled(engine: str) -> None:
    plan = make_plan(manifest(engine, name="chat", namespace="team-a"), UID)
    assert plan.service is not None
    assert endpoint(plan.service) == "http://chat-router.team-a.svc:4000/v1"
    router_service = by_kind_and_name(plan.objects, "Service", "chat-router")
    assert router_service["metadata"]["namespace"] == "team-a"
    assert [p["port"] for p in router_service["spec"]["ports"]] == [4000]


@pytest.mark.parametrize(("engine", "port"), [("vllm", 8000), ("tgi", 80), ("ollama", 11434)])
def test_endpoint_is_the_openai_compatible_engine_without_router(engine: str, port: int) -> None:
    plan = make_plan(manifest(engine, NO_ROUTER, name="chat", namespace="team-a"), UID)
    assert plan.service is not None
    assert endpoint(plan.service) == f"http://chat.team-a.svc:{port}/v1"
    engine_service = by_kind_and_name(plan.objects, "Service", "chat")
    assert [p["port"] for p in engine_service["spec"]["ports"]] == [port]


def test_plan_does_not_mutate_the_body() -> None:
    body = apiserver_body(manifest("vllm", {"storage": {"size": "10Gi"}}))
    snapshot = yaml.safe_dump(body)
    make_plan(body, UID)
    assert yaml.safe_dump(body) == snapshot


# --- render ---------------------------------------------------------------------------------------


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 3


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_renders_to_parseable_yaml_with_the_expected_kinds(path: Path) -> None:
    source = yaml.safe_load(path.read_text())
    output = render_files([str(path)])
    docs = [d for d in yaml.safe_load_all(output) if d]
    name = source["metadata"]["name"]
    workload = "LeaderWorkerSet" if source["spec"].get("resources", {}).get("nodes", 1) > 1 else "Deployment"
    expected = [("Service", name), (workload, name)]
    if source["spec"].get("storage"):
        expected = [("PersistentVolumeClaim", f"{name}-model-cache"), *expected]
    router_on = source["spec"].get("router", {}).get("enabled", True)
    if router_on:
        expected += [(kind, f"{name}-router") for kind in ROUTER_KINDS]
    assert kinds_and_names(docs) == expected
    for doc in docs:
        router_object = doc["metadata"]["name"] == f"{name}-router"
        labels = doc["metadata"]["labels"]
        assert doc["metadata"]["namespace"] == "default"
        assert labels["app.kubernetes.io/instance"] == name
        assert labels["app.kubernetes.io/name"] == ("litellm" if router_object else source["spec"]["engine"])
        assert labels["app.kubernetes.io/component"] == ("router" if router_object else "engine")
        assert "ownerReferences" not in doc["metadata"]  # no uid offline
    by_kind_and_name(docs, workload, name)
    if router_on:
        config = by_kind_and_name(docs, "ConfigMap", f"{name}-router")["data"]["config.yaml"]
        assert yaml.safe_load(config)["model_list"][0]["litellm_params"]["api_base"].startswith(f"http://{name}.")
    assert f"# LLMService default/{name}" in output
    assert "# ModelFits=" in output


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_rendered_yaml_has_no_anchors_or_aliases(path: Path) -> None:
    """Reviewers read the output in pull requests: every object spelled out in full."""
    for event in yaml.parse(render_files([str(path)])):
        assert getattr(event, "anchor", None) is None, event


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_fits(path: Path) -> None:
    assert "ModelFits=False" not in render_files([str(path)])


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_rendering_is_deterministic(path: Path) -> None:
    assert render_files([str(path)]) == render_files([str(path)])


def test_other_kinds_are_skipped() -> None:
    docs = [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}, manifest("vllm")]
    rendered = [d for d in yaml.safe_load_all(render_documents(docs)) if d]
    assert kinds_and_names(rendered) == with_router("llm")


def test_namespace_is_kept_when_given() -> None:
    docs = [d for d in yaml.safe_load_all(render_documents([manifest("tgi", namespace="team-a")])) if d]
    assert {d["metadata"]["namespace"] for d in docs} == {"team-a"}


def test_several_llmservices_in_one_stream(tmp_path: Path) -> None:
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump_all([manifest("vllm", name="a"), manifest("ollama", name="b")]))
    docs = [d for d in yaml.safe_load_all(render_files([str(path)])) if d]
    assert kinds_and_names(docs) == with_router("a") + with_router("b")


def test_router_disabled_renders_the_engine_only() -> None:
    docs = [d for d in yaml.safe_load_all(render_documents([manifest("vllm", NO_ROUTER, name="a")])) if d]
    assert kinds_and_names(docs) == [("Service", "a"), ("Deployment", "a")]
    assert {d["metadata"]["labels"]["app.kubernetes.io/name"] for d in docs} == {"vllm"}


def test_multi_line_strings_are_rendered_in_block_style() -> None:
    """The router's config.yaml reads as YAML in the output, not as one quoted line of \\n escapes."""
    body = manifest("vllm", name="a")
    output = render_documents([body])
    plan = make_plan(body, uid=None)
    config = by_kind_and_name(plan.objects, "ConfigMap", "a-router")["data"]["config.yaml"]
    assert "\n" in config
    assert "  config.yaml: |\n" in output
    assert "\\n" not in output
    # The block holds the config verbatim, indented, and loads back to the exact same string.
    assert "".join(f"    {line}\n" if line else "\n" for line in config.splitlines()) in output
    rendered = [d for d in yaml.safe_load_all(output) if d]
    assert by_kind_and_name(rendered, "ConfigMap", "a-router")["data"]["config.yaml"] == config
    # Single-line strings keep the plain style.
    assert "  name: a-router\n" in output


def test_invalid_llmservice_raises_with_its_problems() -> None:
    with pytest.raises(RenderError) as error:
        render_documents([manifest("ollama", {"quantization": {"method": "awq"}}, name="bad")])
    assert "LLMService ml/bad is invalid" in str(error.value)
    assert "spec.quantization.method" in str(error.value)


def test_model_that_does_not_fit_renders_a_comment_only() -> None:
    output = render_documents([manifest("vllm", TOO_BIG, name="big")])
    assert "# ModelFits=False (InsufficientGPUMemory)" in output
    assert "not deployed" in output
    assert [d for d in yaml.safe_load_all(output) if d] == []


def test_skip_fit_check_renders_the_objects_with_the_warning() -> None:
    output = render_documents([manifest("vllm", TOO_BIG, name="big", annotations=SKIP)])
    assert "# ModelFits=False" in output
    assert kinds_and_names([d for d in yaml.safe_load_all(output) if d]) == with_router("big")


def test_cli_render(capsys: pytest.CaptureFixture[str]) -> None:
    from llm_operator.cli import main

    path = next(p for p in EXAMPLES if p.stem == "vllm-h100-prefix-caching")
    assert main(["render", "-f", str(path)]) == 0
    out = capsys.readouterr().out
    assert out == render_files([str(path)])


def test_digest_is_stable_and_follows_every_desired_change() -> None:
    """The resync applies only when the digest moves: it must move for any change of desired state."""
    body = apiserver_body(manifest("vllm"))
    first, again = make_plan(body, UID), make_plan(apiserver_body(manifest("vllm")), UID)
    assert first.digest == again.digest
    autoscaled = apiserver_body(manifest("vllm", {"autoscaling": {"enabled": True}}))
    assert make_plan(autoscaled, UID, autoscaled_replicas=3).digest != make_plan(autoscaled, UID, 2).digest
    longer = apiserver_body(manifest("vllm", {"serving": {"maxModelLen": 4096}}))
    assert make_plan(longer, UID).digest != first.digest
    with_fallback = apiserver_body(manifest("vllm", {"router": {"fallbacks": [{"llmService": "backup"}]}}))
    missing = make_plan(with_fallback, UID, fallback_services={})
    present = make_plan(with_fallback, UID, fallback_services={"backup": make_plan(body, UID).service})
    assert missing.digest != present.digest  # a fallback appearing changes the router config
