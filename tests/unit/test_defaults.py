"""Operator-wide images and pull secrets (llm_operator.defaults): precedence, validation, and what
the builders make of them."""

from __future__ import annotations

import pytest
from tests.unit.factories import ENGINES, UID, make_service, manifest

from llm_operator.cli import main
from llm_operator.defaults import (
    NO_DEFAULTS,
    OperatorDefaults,
    apply_defaults,
    defaults_from_env,
    defaults_problems,
    defaults_to_env,
)
from llm_operator.engines import vllm
from llm_operator.plan import make_plan
from llm_operator.router import objects as router

MIRROR = OperatorDefaults(
    engine_images={
        "vllm": "mirror.example.com:5000/vllm/vllm-openai:v0.32.0",
        "tgi": "mirror.example.com:5000/tgi:3.3.5",
        "ollama": "mirror.example.com:5000/ollama/ollama:0.17.4",
        "sglang": "mirror.example.com:5000/lmsysorg/sglang:v0.5.23",
    },
    router_image="mirror.example.com:5000/berriai/litellm-non_root:v1.108.7",
    image_pull_secrets=("mirror-pull",),
)


def pod_specs(objects: list[dict]) -> dict[str, dict]:
    """Deployment name -> its Pod template spec."""
    return {o["metadata"]["name"]: o["spec"]["template"]["spec"] for o in objects if o["kind"] == "Deployment"}


@pytest.mark.parametrize("engine", ENGINES)
def test_the_operator_image_of_each_engine_replaces_the_pinned_one(engine: str) -> None:
    service = apply_defaults(make_service(engine), MIRROR)
    assert service.spec.image == MIRROR.engine_images[engine]
    assert service.spec.router.image == MIRROR.router_image


def test_an_llmservice_image_wins_over_the_operator_default() -> None:
    own = {"image": "own.example.com/vllm:custom", "router": {"image": "own.example.com/litellm:custom"}}
    service = apply_defaults(make_service("vllm", own), MIRROR)
    assert service.spec.image == "own.example.com/vllm:custom"
    assert service.spec.router.image == "own.example.com/litellm:custom"


def test_without_defaults_the_pinned_images_are_used() -> None:
    objects = make_plan(manifest("vllm"), UID).objects
    images = {name: spec["containers"][0]["image"] for name, spec in pod_specs(objects).items()}
    assert images == {"llm": vllm.IMAGE, "llm-router": router.IMAGE}
    assert all("imagePullSecrets" not in spec for spec in pod_specs(objects).values())


@pytest.mark.parametrize("engine", ENGINES)
def test_engine_router_and_init_containers_use_the_operator_images(engine: str) -> None:
    objects = make_plan(manifest(engine), UID, defaults=MIRROR).objects
    specs = pod_specs(objects)
    engine_pod, router_pod = specs["llm"], specs["llm-router"]
    for container in engine_pod["containers"] + engine_pod.get("initContainers", []):
        assert container["image"] == MIRROR.engine_images[engine]
    assert router_pod["containers"][0]["image"] == MIRROR.router_image


def test_pull_secrets_add_up_on_engine_and_router_pods_without_duplicates() -> None:
    patch = {"imagePullSecrets": [{"name": "team-pull"}, {"name": "mirror-pull"}]}
    objects = make_plan(manifest("vllm", patch), UID, defaults=MIRROR).objects
    for spec in pod_specs(objects).values():
        assert spec["imagePullSecrets"] == [{"name": "team-pull"}, {"name": "mirror-pull"}]


def test_router_pods_take_their_own_node_selector_and_tolerations() -> None:
    toleration = {"key": "llm-operator.io/real-node", "operator": "Equal", "value": "true", "effect": "NoSchedule"}
    patch = {"router": {"nodeSelector": {"pool": "cpu"}, "tolerations": [toleration]}}
    specs = pod_specs(make_plan(manifest("vllm", patch), UID).objects)
    assert specs["llm-router"]["nodeSelector"] == {"pool": "cpu"}
    assert specs["llm-router"]["tolerations"] == [toleration]
    assert "nodeSelector" not in specs["llm"]


def test_no_defaults_leaves_the_service_untouched() -> None:
    service = make_service("tgi")
    assert apply_defaults(service, NO_DEFAULTS) is service


def test_environment_round_trip() -> None:
    assert defaults_from_env(defaults_to_env(MIRROR)) == MIRROR
    assert defaults_from_env({}) == NO_DEFAULTS
    assert defaults_from_env({"LLMOP_IMAGE_PULL_SECRETS": " a, ,b "}).image_pull_secrets == ("a", "b")


@pytest.mark.parametrize(
    ("defaults", "expected"),
    [
        (OperatorDefaults(engine_images={"vllm": "Mirror/VLLM"}), "--vllm-image 'Mirror/VLLM' is not an image"),
        (OperatorDefaults(router_image="https://ghcr.io/x"), "--router-image 'https://ghcr.io/x' is not an image"),
        (OperatorDefaults(image_pull_secrets=("Reg_Cred",)), "--image-pull-secret 'Reg_Cred' is not a Secret name"),
    ],
)
def test_bad_defaults_name_the_flag_the_value_and_the_fix(defaults: OperatorDefaults, expected: str) -> None:
    problems = defaults_problems(defaults)
    assert len(problems) == 1
    assert expected in problems[0]
    assert "e.g." in problems[0]


def test_good_defaults_have_no_problems() -> None:
    assert defaults_problems(MIRROR) == []
    assert defaults_problems(OperatorDefaults(engine_images={"vllm": "vllm@sha256:" + "a" * 64})) == []


def test_run_refuses_a_bad_image_flag_before_connecting(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--tgi-image", "TGI:latest", "--kubeconfig", "/nonexistent"]) == 2
    assert "--tgi-image 'TGI:latest' is not an image reference" in capsys.readouterr().err


def test_run_names_a_uid_without_a_passwd_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    """kopf calls getpass.getuser() for its identity; in a container (runAsUser 65532) that raised."""
    import getpass

    from llm_operator import cli

    def no_entry() -> str:
        raise KeyError("getpwuid(): uid not found: 65532")

    monkeypatch.setattr(getpass, "getuser", no_entry)
    monkeypatch.delenv("USER", raising=False)
    cli._ensure_user_name()
    assert cli.os.environ["USER"].startswith("uid-")
