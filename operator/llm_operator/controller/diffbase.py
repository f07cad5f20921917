"""Where kopf keeps the last handled state of an LLMService: a digest, not a copy.

kopf's AnnotationsDiffBaseStorage writes the whole spec into one annotation. The apiserver caps all of
an object's annotations at 256 KiB, so an LLMService with a large spec (64 extraArgs of 4 KiB each is
within the schema) would have every kopf patch refused, and kopf would run the create handler again on each
of the object's events. The handlers never read kopf's per-field diffs (a reconcile rebuilds the whole plan),
only whether anything changed, and a digest of the same essence answers that in 80 bytes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

import kopf


class DigestDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """kopf's essence (spec, labels, annotations other than kopf's own), stored as its SHA-256."""

    def build(self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None) -> dict[str, Any]:
        essence = super().build(body=body, extra_fields=extra_fields)
        annotations = essence.get("metadata", {}).get("annotations", {})
        for key in [key for key in annotations if key.startswith(f"{self.prefix}/")]:
            del annotations[key]  # our progress records: they change with every handler run
        self.remove_empty_stanzas(essence)
        canonical = json.dumps(essence, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return {"sha256": hashlib.sha256(canonical.encode()).hexdigest()}
