"""`llm-operator render`: the exact objects the operator would apply, as a YAML stream."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml

from llm_operator.api.models import LLMService
from llm_operator.api.validation import is_llmservice
from llm_operator.hub import ModelSize, fit_needs_hub
from llm_operator.plan import Plan, fit_input, make_plan

SizeLookup = Callable[[LLMService], ModelSize | None]
"""The model's size read from the Hub, or None (unreachable, unknown): what the fit check uses when
spec.model.parameters is unset. The CLI passes one unless --offline; by default nothing is looked up."""


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


def plan_with_hub(doc: dict[str, Any], sizes: SizeLookup | None) -> tuple[Plan, ModelSize | None]:
    """make_plan, then, when the fit check lacks a parameter count and `sizes` finds one, the fit
    checked again with it; and the size used (None when none was)."""
    plan = make_plan(doc, uid=None)
    if sizes is None or plan.service is None or plan.fit is None:
        return plan, None
    if not fit_needs_hub(fit_input(plan.service.spec), plan.service.spec.model.name):
        return plan, None
    size = sizes(plan.service)
    return (make_plan(doc, uid=None, parameters=size.parameters), size) if size else (plan, None)


def describe_size(size: ModelSize, model: str) -> str:
    """`401.6B parameters (BF16) read from the Hub: meta-llama/...@main, model-info`."""
    n = size.parameters
    count = f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n:,}"
    dtype = f" ({size.dtype})" if size.dtype else ""
    return f"{count} parameters{dtype} read from the Hub: {model}@{size.revision}, {size.source}"


def render_documents(docs: Iterable[dict], sizes: SizeLookup | None = None) -> str:
    out: list[str] = []
    for doc in docs:
        if not is_llmservice(doc):
            continue
        doc.setdefault("metadata", {}).setdefault("namespace", "default")
        plan, size = plan_with_hub(doc, sizes)
        name = f"{doc['metadata']['namespace']}/{doc['metadata'].get('name')}"
        if plan.problems:
            raise RenderError(f"LLMService {name} is invalid:\n  " + "\n  ".join(plan.problems))
        header = f"# LLMService {name}"
        if size is not None and plan.service is not None:
            header += f"\n# spec.model.parameters is unset: {describe_size(size, plan.service.spec.model.name)}"
        if plan.fit is not None:
            header += f"\n# ModelFits={plan.fit.status} ({plan.fit.reason}): {plan.fit.message}"
        if not plan.deploy:
            out.append(header + "\n# not deployed: the model does not fit\n")
            continue
        for obj in plan.objects:
            out.append(f"{header}\n{dump_object(obj)}")
    return "---\n".join(out)


def render_files(paths: Iterable[str], sizes: SizeLookup | None = None) -> str:
    docs = []
    for path in paths:
        docs += [d for d in yaml.safe_load_all(Path(path).read_text()) if d]
    return render_documents(docs, sizes)


def fit_warnings(paths: Iterable[str], sizes: SizeLookup | None = None) -> list[str]:
    """For `validate`: one line for each valid LLMService whose model does not fit, which the operator
    would not deploy. Files that do not load and invalid documents are validate_files' to report."""
    warnings: list[str] = []
    for path in paths:
        try:
            docs = [d for d in yaml.safe_load_all(Path(path).read_text()) if is_llmservice(d)]
        except (OSError, yaml.YAMLError):
            continue
        for doc in docs:
            doc = copy.deepcopy(doc)
            doc.setdefault("metadata", {}).setdefault("namespace", "default")
            plan, size = plan_with_hub(doc, sizes)
            if plan.service is None or plan.fit is None or plan.fit.fits:
                continue
            name = f"{plan.service.metadata.namespace}/{plan.service.metadata.name}"
            skip = " (deployed anyway: the skip-fit-check annotation is set)" if plan.deploy else ""
            counted = f" [{describe_size(size, plan.service.spec.model.name)}]" if size else ""
            warnings.append(f"{path}: LLMService {name}: ModelFits=False ({plan.fit.reason}): "
                            f"{plan.fit.message}{counted}{skip}")
    return warnings
