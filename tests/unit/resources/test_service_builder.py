"""The engine Service `<name>` and the list of children: the engine's, then (by default) the router's."""

from __future__ import annotations

import pytest

from llm_operator.naming import engine_url
from llm_operator.plan import desired_objects
from llm_operator.resources import build_deployment, build_service
from unit.factories import ENGINES, UID, make_service

PORTS = {"vllm": 8000, "tgi": 80, "ollama": 11434, "sglang": 30000}
CONTAINER_PORTS = {"vllm": 8000, "tgi": 8080, "ollama": 11434, "sglang": 30000}
NO_ROUTER = {"router": {"enabled": False}}
ROUTER = [("ConfigMap", "llm-router"), ("Service", "llm-router"), ("Deployment", "llm-router"),
          ("HorizontalPodAutoscaler", "llm-router")]


def kinds_and_names(objects: list[dict]) -> list[tuple[str, str]]:
    return [(o["kind"], o["metadata"]["name"]) for o in objects]


@pytest.mark.parametrize("engine", ENGINES)
def test_cluster_ip_on_the_engine_port(engine: str) -> None:
    service = build_service(make_service(engine, name="chat", namespace="team-a"), UID)
    assert (service["apiVersion"], service["kind"]) == ("v1", "Service")
    assert service["metadata"]["name"] == "chat"
    assert service["metadata"]["namespace"] == "team-a"
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [{"name": "http", "port": PORTS[engine], "targetPort": "http",
                                         "protocol": "TCP"}]


@pytest.mark.parametrize("engine", ENGINES)
def test_target_port_resolves_to_the_container_port(engine: str) -> None:
    llm = make_service(engine)
    service = build_service(llm, UID)
    (container,) = build_deployment(llm, UID)["spec"]["template"]["spec"]["containers"]
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert named[service["spec"]["ports"][0]["targetPort"]] == CONTAINER_PORTS[engine]


@pytest.mark.parametrize("engine", ENGINES)
def test_selector_selects_the_engine_pods(engine: str) -> None:
    llm = make_service(engine, name="chat")
    service = build_service(llm, UID)
    template_labels = build_deployment(llm, UID)["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= template_labels.items()
    assert service["spec"]["selector"]["app.kubernetes.io/instance"] == "chat"


@pytest.mark.parametrize("engine", ENGINES)
def test_labels_and_owner(engine: str) -> None:
    service = build_service(make_service(engine, name="chat"), UID)
    labels = service["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == engine
    assert labels["app.kubernetes.io/instance"] == "chat"
    assert labels["app.kubernetes.io/managed-by"] == "llm-operator"
    (owner,) = service["metadata"]["ownerReferences"]
    assert owner["uid"] == UID
    assert owner["controller"] is True
    assert "ownerReferences" not in build_service(make_service(engine), None)["metadata"]


@pytest.mark.parametrize("engine", ENGINES)
def test_engine_url(engine: str) -> None:
    assert engine_url(make_service(engine, name="chat", namespace="team-a")) == (
        f"http://chat.team-a.svc:{PORTS[engine]}"
    )


@pytest.mark.parametrize("engine", ENGINES)
def test_desired_objects_without_storage(engine: str) -> None:
    objects = desired_objects(make_service(engine), UID)
    assert kinds_and_names(objects) == [("Service", "llm"), ("Deployment", "llm"), *ROUTER]


@pytest.mark.parametrize("engine", ENGINES)
def test_desired_objects_with_storage_claim_first(engine: str) -> None:
    objects = desired_objects(make_service(engine, {"storage": {"size": "50Gi"}}), UID)
    assert kinds_and_names(objects) == [
        ("PersistentVolumeClaim", "llm-model-cache"), ("Service", "llm"), ("Deployment", "llm"), *ROUTER,
    ]


@pytest.mark.parametrize("engine", ENGINES)
def test_desired_objects_without_router_are_the_engine_only(engine: str) -> None:
    objects = desired_objects(make_service(engine, NO_ROUTER), UID)
    assert kinds_and_names(objects) == [("Service", "llm"), ("Deployment", "llm")]
    objects = desired_objects(make_service(engine, {**NO_ROUTER, "storage": {"size": "50Gi"}}), UID)
    assert kinds_and_names(objects) == [
        ("PersistentVolumeClaim", "llm-model-cache"), ("Service", "llm"), ("Deployment", "llm"),
    ]


@pytest.mark.parametrize("router", [True, False], ids=["router", "no-router"])
@pytest.mark.parametrize("engine", ENGINES)
def test_every_child_is_labelled_and_owned(engine: str, router: bool) -> None:
    objects = desired_objects(
        make_service(engine, {"storage": {"size": "50Gi"}, "router": {"enabled": router}}, name="chat"), UID
    )
    router_objects = [o for o in objects if o["metadata"]["name"] == "chat-router"]
    assert len(router_objects) == (4 if router else 0)
    for obj in objects:
        is_router = obj in router_objects
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == ("litellm" if is_router else engine), obj["kind"]
        assert labels["app.kubernetes.io/component"] == ("router" if is_router else "engine"), obj["kind"]
        assert labels["app.kubernetes.io/instance"] == "chat", obj["kind"]
        assert labels["app.kubernetes.io/managed-by"] == "llm-operator", obj["kind"]
        assert obj["metadata"]["ownerReferences"][0]["uid"] == UID
        assert obj["metadata"]["ownerReferences"][0]["controller"] is True


def test_desired_objects_passes_the_autoscaled_replicas() -> None:
    llm = make_service("vllm", {"autoscaling": {"enabled": True, "minReplicas": 1, "maxReplicas": 4}})
    objects = desired_objects(llm, UID, autoscaled_replicas=3)
    (deployment,) = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "llm"]
    assert deployment["spec"]["replicas"] == 3
    (router,) = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "llm-router"]
    # The router's count is its own HPA's (minReplicas = spec.router.replicas), not the engine's.
    assert "replicas" not in router["spec"]
    (hpa,) = [o for o in objects if o["kind"] == "HorizontalPodAutoscaler"]
    assert hpa["spec"]["minReplicas"] == 1
