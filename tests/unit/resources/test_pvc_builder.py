"""The model cache claim `<name>-model-cache` and how an existing claim is changed."""

from __future__ import annotations

import copy

import pytest

from llm_operator.resources import build_pvc
from llm_operator.resources.pvc import pvc_change
from unit.factories import ENGINES, UID, make_service


@pytest.mark.parametrize("engine", ENGINES)
def test_no_claim_without_storage(engine: str) -> None:
    assert build_pvc(make_service(engine), UID) is None


@pytest.mark.parametrize("engine", ENGINES)
def test_claim_with_storage(engine: str) -> None:
    pvc = build_pvc(make_service(engine, {"storage": {"size": "200Gi"}}, name="chat", namespace="team-a"), UID)
    assert pvc is not None
    assert (pvc["apiVersion"], pvc["kind"]) == ("v1", "PersistentVolumeClaim")
    assert pvc["metadata"]["name"] == "chat-model-cache"
    assert pvc["metadata"]["namespace"] == "team-a"
    assert pvc["metadata"]["labels"]["app.kubernetes.io/name"] == engine
    assert pvc["metadata"]["labels"]["app.kubernetes.io/instance"] == "chat"
    assert pvc["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "llm-operator"
    assert pvc["metadata"]["ownerReferences"][0]["uid"] == UID
    assert pvc["spec"] == {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "200Gi"}}}


def test_storage_class_and_access_mode() -> None:
    pvc = build_pvc(make_service("vllm", {"storage": {"size": "1Ti", "storageClassName": "fast-rwx",
                                                      "accessMode": "ReadWriteMany"}}), UID)
    assert pvc is not None
    assert pvc["spec"] == {
        "accessModes": ["ReadWriteMany"],
        "resources": {"requests": {"storage": "1Ti"}},
        "storageClassName": "fast-rwx",
    }


def test_empty_storage_class_means_the_cluster_default() -> None:
    pvc = build_pvc(make_service("vllm", {"storage": {"size": "1Ti", "storageClassName": ""}}), UID)
    assert pvc is not None
    assert "storageClassName" not in pvc["spec"]


def desired(size: str, storage_class: str | None = None, mode: str = "ReadWriteOnce") -> dict:
    storage: dict = {"size": size, "accessMode": mode}
    if storage_class is not None:
        storage["storageClassName"] = storage_class
    pvc = build_pvc(make_service("vllm", {"storage": storage}), UID)
    assert pvc is not None
    return pvc


def existing(size: str, storage_class: str = "standard", mode: str = "ReadWriteOnce") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "llm-model-cache", "namespace": "ml", "resourceVersion": "42"},
        "spec": {
            "accessModes": [mode],
            "resources": {"requests": {"storage": size}},
            "storageClassName": storage_class,
            "volumeMode": "Filesystem",
            "volumeName": "pvc-123",
        },
        "status": {"phase": "Bound"},
    }


def test_absent_claim_is_created_as_desired() -> None:
    wanted = desired("100Gi", "fast")
    assert pvc_change(None, wanted) == wanted


def test_existing_claim_grows() -> None:
    change = pvc_change(existing("100Gi"), desired("200Gi"))
    assert change["spec"]["resources"]["requests"]["storage"] == "200Gi"


@pytest.mark.parametrize(("current", "wanted"), [("200Gi", "100Gi"), ("1Ti", "500Gi"), ("100Gi", "100Gi"),
                                                 ("107374182400", "100Gi")])
def test_existing_claim_never_shrinks(current: str, wanted: str) -> None:
    change = pvc_change(existing(current), desired(wanted))
    assert change["spec"]["resources"]["requests"]["storage"] == current


def test_growth_compares_quantities_not_strings() -> None:
    # "100Gi" < "1Ti" as quantities although "100Gi" > "1Ti" as strings
    assert pvc_change(existing("100Gi"), desired("1Ti"))["spec"]["resources"]["requests"]["storage"] == "1Ti"
    # 200G (decimal) is less than 200Gi
    assert pvc_change(existing("200Gi"), desired("200G"))["spec"]["resources"]["requests"]["storage"] == "200Gi"


def test_immutable_fields_of_the_existing_claim_are_kept() -> None:
    change = pvc_change(existing("100Gi", storage_class="standard", mode="ReadWriteOnce"),
                        desired("100Gi", storage_class="premium", mode="ReadWriteMany"))
    assert change["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert change["spec"]["storageClassName"] == "standard"


def test_change_keeps_our_metadata_and_not_the_servers() -> None:
    wanted = desired("100Gi")
    change = pvc_change(existing("100Gi"), wanted)
    assert change["metadata"] == wanted["metadata"]
    assert "status" not in change
    # fields the apiserver set are not claimed by our apply
    assert "volumeName" not in change["spec"]
    assert "volumeMode" not in change["spec"]


def test_change_does_not_mutate_its_inputs() -> None:
    current, wanted = existing("100Gi"), desired("200Gi")
    before = (copy.deepcopy(current), copy.deepcopy(wanted))
    pvc_change(current, wanted)
    assert (current, wanted) == before
