"""`llm-operator render`: the exact objects the operator would apply, as a YAML stream."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import yaml

from llm_operator.api.validation import is_llmservice
from llm_operator.plan import make_plan


class RenderError(Exception):
    pass


class _RenderDumper(yaml.SafeDumper):
    """SafeDumper for reviewers: multi-line strings (the router's config.yaml) in block style (`|`),
    and every object spelled out in full (no anchors or aliases, even for a shared dict)."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    # PyYAML falls back to a quoted style by itself where a block scalar cannot hold the text
    # (e.g. trailing spaces on a line), so the output always loads back to the same string.
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_RenderDumper.add_representer(str, _represent_str)


def dump_object(obj: dict) -> str:
    """One object as YAML: keys in the builders' order, multi-line strings as block scalars."""
    return yaml.dump(obj, Dumper=_RenderDumper, sort_keys=False, default_flow_style=False)


def render_documents(docs: Iterable[dict]) -> str:
    out: list[str] = []
    for doc in docs:
        if not is_llmservice(doc):
            continue
        doc.setdefault("metadata", {}).setdefault("namespace", "default")
        plan = make_plan(doc, uid=None)
        name = f"{doc['metadata']['namespace']}/{doc['metadata'].get('name')}"
        if plan.problems:
            raise RenderError(f"LLMService {name} is invalid:\n  " + "\n  ".join(plan.problems))
        header = f"# LLMService {name}"
        if plan.fit is not None:
            header += f"\n# ModelFits={plan.fit.status} ({plan.fit.reason}): {plan.fit.message}"
        if not plan.deploy:
            out.append(header + "\n# not deployed: the model does not fit\n")
            continue
        for obj in plan.objects:
            out.append(f"{header}\n{dump_object(obj)}")
    return "---\n".join(out)


def render_files(paths: Iterable[str]) -> str:
    docs = []
    for path in paths:
        docs += [d for d in yaml.safe_load_all(Path(path).read_text()) if d]
    return render_documents(docs)
