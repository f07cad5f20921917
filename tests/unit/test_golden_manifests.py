"""Golden files of `llm-operator render` for one example per engine, in addition to the assertions
elsewhere: any change to a rendered manifest shows up as a reviewable diff.

Regenerate after an intended change with `UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_golden_manifests.py`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from llm_operator.render import render_files

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parent / "golden"
CASES = {
    "vllm": "vllm-h100-prefix-caching",
    "tgi": "tgi-long-context",
    "ollama": "ollama-cpu-gguf",
}


@pytest.mark.parametrize(("engine", "example"), sorted(CASES.items()))
def test_rendered_example_matches_golden_file(engine: str, example: str) -> None:
    rendered = render_files([str(ROOT / "manifests" / "examples" / f"{example}.yaml")])
    golden = GOLDEN / f"{example}.yaml"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(rendered)
    assert golden.exists(), f"missing {golden}: run with UPDATE_GOLDEN=1 to create it"
    assert rendered == golden.read_text(), (
        f"rendered {engine} example differs from {golden.name}; if intended, rerun with UPDATE_GOLDEN=1"
    )
