"""The generated CRD on a real apiserver: it installs (so its schema is structural and its CEL
compiles within the cost budget), accepts the examples, refuses every invalid case with the
message `llm-operator validate` gives, and serves explain, printer columns and scale."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from cases.invalid_llmservices import INVALID_CASES, InvalidCase
from cases.valid_llmservices import good_manifests

CRD_NAME = "llmservices.serving.llm-operator.io"
EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "manifests" / "examples").glob("*.yaml"))
# Server-side dry runs are validated like real writes but persist nothing, so they can share
# the namespace every cluster has.
DRY_RUN_NAMESPACE = ""  # a namespace of this module's own, so objects elsewhere cannot collide


@pytest.fixture(scope="module", autouse=True)
def _dry_run_namespace(cluster: Any) -> Iterator[None]:
    global DRY_RUN_NAMESPACE
    DRY_RUN_NAMESPACE = f"dry-run-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", DRY_RUN_NAMESPACE)
    yield
    cluster.kubectl("delete", "namespace", DRY_RUN_NAMESPACE, "--wait=false", check=False)


def load_example(path: Path) -> dict[str, Any]:
    (doc,) = [d for d in yaml.safe_load_all(path.read_text()) if d]
    return doc


def create(cluster: Any, manifest: dict[str, Any], namespace: str, *, dry_run: bool, check: bool = True) -> Any:
    # --validate=strict makes the apiserver refuse unknown fields instead of pruning them.
    args = ["create", "--validate=strict", "-n", namespace, "-f", "-"]
    if dry_run:
        args.insert(1, "--dry-run=server")
    return cluster.kubectl(*args, input=json.dumps(manifest), check=check)


def test_crd_is_established(crd_installed: Any) -> None:
    conditions = json.loads(
        crd_installed.kubectl("get", "crd", CRD_NAME, "-o", "jsonpath={.status.conditions}").stdout
    )
    status = {c["type"]: c["status"] for c in conditions}
    assert status.get("Established") == "True"
    assert status.get("NonStructuralSchema") in (None, "False")


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_is_accepted(crd_installed: Any, path: Path) -> None:
    create(crd_installed, load_example(path), DRY_RUN_NAMESPACE, dry_run=True)


@pytest.mark.parametrize(("name", "manifest"), good_manifests(), ids=[n for n, _ in good_manifests()])
def test_valid_neighbour_of_an_invalid_case_is_accepted(crd_installed: Any, name: str, manifest: dict) -> None:
    create(crd_installed, manifest, DRY_RUN_NAMESPACE, dry_run=True)


@pytest.mark.parametrize("case", INVALID_CASES, ids=lambda c: c.id)
def test_invalid_case_is_refused_with_the_expected_message(crd_installed: Any, case: InvalidCase) -> None:
    result = create(crd_installed, case.manifest, DRY_RUN_NAMESPACE, dry_run=True, check=False)
    output = result.stderr + result.stdout
    assert result.returncode != 0, f"{case.id} was accepted:\n{output}"
    missing = [text for text in case.expected if text not in output]
    assert not missing, f"{case.id}: {missing} not in:\n{output}"


def test_apiserver_applies_the_defaults(crd_installed: Any, namespace: str) -> None:
    manifest = {
        "apiVersion": "serving.llm-operator.io/v1alpha1", "kind": "LLMService", "metadata": {"name": "minimal"},
        "spec": {"engine": "vllm", "model": {"name": "meta-llama/Llama-3.1-8B-Instruct"}},
    }
    create(crd_installed, manifest, namespace, dry_run=False)
    spec = json.loads(crd_installed.kubectl("get", "llms", "minimal", "-n", namespace, "-o", "json").stdout)["spec"]
    assert spec["replicas"] == 1
    assert spec["quantization"] == {"method": "none"}
    assert spec["resources"]["gpus"] == 1
    assert spec["resources"]["gpuResource"] == "nvidia.com/gpu"
    assert spec["router"]["enabled"] is True
    assert spec["autoscaling"]["scaleDownDelaySeconds"] == 300
    assert "tensorParallelSize" not in spec["serving"]
    assert "storage" not in spec


def test_explain_prints_the_descriptions(crd_installed: Any) -> None:
    def explain() -> str:
        result = crd_installed.kubectl("explain", "llmservice.spec.quantization", check=False)
        return result.stdout if result.returncode == 0 and "variant" in result.stdout else ""

    # The apiserver publishes a new CRD's OpenAPI a moment after it is Established.
    output = crd_installed.wait_for("kubectl explain to know LLMService", explain, timeout=60)
    output = " ".join(output.split())  # explain wraps long descriptions
    assert "How the weights are quantized" in output
    assert "the GGUF quantization type" in output
    assert "bitsandbytes" in output
    for field in ("method", "bits", "variant"):
        assert field in output


def test_get_shows_the_printer_columns(crd_installed: Any, namespace: str) -> None:
    example = load_example(EXAMPLES[0])
    name = example["metadata"]["name"]
    create(crd_installed, example, namespace, dry_run=False)
    header = crd_installed.kubectl("get", "llms", "-n", namespace).stdout.splitlines()[0]
    assert header.split() == ["NAME", "ENGINE", "MODEL", "PHASE", "READY", "ENDPOINT", "AGE"]

    status = {"phase": "Ready", "ready": "1/1", "replicas": 1, "readyReplicas": 1,
              "endpoint": f"http://{name}-router.{namespace}.svc:4000/v1"}
    crd_installed.kubectl(
        "patch", "llms", name, "-n", namespace, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": status}),
    )
    row = crd_installed.kubectl("get", "llms", name, "-n", namespace, "--no-headers").stdout.split()
    assert row[:6] == [name, example["spec"]["engine"], example["spec"]["model"]["name"],
                       "Ready", "1/1", status["endpoint"]]


@pytest.mark.parametrize("resource", ["llmservices", "llmservice", "llms", "llmsvc", "llm"])
def test_names_short_names_and_category(crd_installed: Any, namespace: str, resource: str) -> None:
    manifest = load_example(EXAMPLES[0])
    create(crd_installed, manifest, namespace, dry_run=False)
    listed = crd_installed.kubectl("get", resource, "-n", namespace, "-o", "name").stdout
    assert f"llmservice.serving.llm-operator.io/{manifest['metadata']['name']}" in listed


def test_scale_reaches_the_scale_subresource(crd_installed: Any, namespace: str) -> None:
    manifest = load_example(EXAMPLES[0])
    name = manifest["metadata"]["name"]
    create(crd_installed, manifest, namespace, dry_run=False)
    crd_installed.kubectl("scale", f"llms/{name}", "-n", namespace, "--replicas=3")

    replicas = crd_installed.kubectl("get", "llms", name, "-n", namespace, "-o", "jsonpath={.spec.replicas}")
    assert replicas.stdout == "3"
    scale = json.loads(crd_installed.kubectl(
        "get", "--raw", f"/apis/serving.llm-operator.io/v1alpha1/namespaces/{namespace}/llmservices/{name}/scale"
    ).stdout)
    assert scale["kind"] == "Scale"
    assert scale["spec"]["replicas"] == 3
