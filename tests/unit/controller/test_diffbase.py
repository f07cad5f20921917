"""The digest kopf keeps as an LLMService's last handled state."""

from __future__ import annotations

import json

import kopf

from llm_operator import GROUP
from llm_operator.controller.diffbase import DigestDiffBaseStorage

STORAGE = DigestDiffBaseStorage(prefix=GROUP, key="last-handled-configuration")


def body(spec: dict, annotations: dict | None = None, status: dict | None = None) -> kopf.Body:
    return kopf.Body({
        "apiVersion": f"{GROUP}/v1alpha1", "kind": "LLMService",
        "metadata": {"name": "chat", "namespace": "team-a", "uid": "u-1", "resourceVersion": "7",
                     "labels": {"team": "a"}, "annotations": annotations or {}},
        "spec": spec, "status": status or {},
    })


def stored(essence: dict) -> str:
    patch = kopf.Patch()
    STORAGE.store(body=body({}), patch=patch, essence=essence)
    return patch["metadata"]["annotations"][f"{GROUP}/last-handled-configuration"]


def test_the_largest_spec_the_schema_admits_is_stored_in_80_bytes() -> None:
    huge = {"engine": "vllm", "serving": {"extraArgs": ["--x=" + "x" * 4092] * 64}}
    annotation = stored(STORAGE.build(body=body(huge)))
    assert len(annotation) < 100
    assert list(json.loads(annotation)) == ["sha256"]


def test_a_spec_label_or_user_annotation_change_is_a_change() -> None:
    base = STORAGE.build(body=body({"engine": "vllm"}))
    assert STORAGE.build(body=body({"engine": "tgi"})) != base
    assert STORAGE.build(body=body({"engine": "vllm"}, {"team.example/owner": "b"})) != base
    relabelled = body({"engine": "vllm"})
    relabelled["metadata"]["labels"] = {"team": "b"}
    assert STORAGE.build(body=relabelled) != base


def test_status_metadata_and_kopfs_own_records_are_not_a_change() -> None:
    base = STORAGE.build(body=body({"engine": "vllm"}))
    busy = body({"engine": "vllm"}, {f"{GROUP}/on_change": '{"started": "now"}'}, {"phase": "Ready"})
    busy["metadata"]["resourceVersion"] = "8"
    assert STORAGE.build(body=busy) == base


def test_what_was_stored_is_what_kopf_compares_against() -> None:
    essence = STORAGE.build(body=body({"engine": "vllm"}))
    annotations = {f"{GROUP}/last-handled-configuration": stored(essence)}
    assert STORAGE.fetch(body=body({"engine": "vllm"}, annotations)) == essence
