"""`llm-operator render`: the exact objects the operator would apply, as a YAML stream."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import yaml

from llm_operator.api.validation import is_llmservice
from llm_operator.plan import make_plan


class RenderError(Exception):
    pass


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
            out.append(f"{header}\n{yaml.safe_dump(obj, sort_keys=False)}")
    return "---\n".join(out)


def render_files(paths: Iterable[str]) -> str:
    docs = []
    for path in paths:
        docs += [d for d in yaml.safe_load_all(Path(path).read_text()) if d]
    return render_documents(docs)
