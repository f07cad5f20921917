"""The model's parameter count from the Hugging Face Hub, for the fit check when spec.model.parameters is unset.

The sources are read in the order huggingface_hub reads them (HfApi.model_info, then
HfApi.get_safetensors_metadata), at the pinned revision:

1. the model info API, `GET {endpoint}/api/models/{repo}/revision/{revision}`: its `safetensors` field,
   `{"parameters": {dtype: count}, "total": count}`, is what the Hub computed from the weights' headers;
2. else the safetensors weights, `GET {endpoint}/{repo}/resolve/{revision}/{file}`: a single
   `model.safetensors`, else `model.safetensors.index.json`, whose `weight_map` names the shards. Of each
   file only the header is read, with HTTP Range requests: 8 bytes of little-endian header length, then
   a JSON object with the dtype and shape of every tensor. The count is exact: the sum of the shapes' products.

config.json is not used: no formula over its fields counts every architecture (mixture of experts, vision
towers, tied embeddings), and a wrong count is worse than none. Ollama tags and GGUF-only repos are not read.

Only the standard library is used. The token is sent as `Authorization: Bearer` to the Hub's host only (a
redirect to a CDN drops it) and never appears in a log record, an exception or a returned value.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import struct
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.message import Message as HTTPMessage
from http.client import HTTPException
from typing import IO, Any, TypeVar

from llm_operator.fit import FitInput, gpu_memory_bytes

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_ENDPOINT = "https://huggingface.co"
DEFAULT_REVISION = "main"
DEFAULT_TIMEOUT = 5.0
SAFETENSORS_SINGLE_FILE = "model.safetensors"
SAFETENSORS_INDEX_FILE = "model.safetensors.index.json"
# huggingface_hub's numbers: 97 % of headers fit in the first 100 kB, so one Range request usually
# does; a header above 25 MB is refused rather than read.
FIRST_READ_BYTES = 100_000
MAX_HEADER_BYTES = 25_000_000
MAX_JSON_BYTES = 32 * 2**20  # the info of a repo with thousands of files is a few MB
MAX_SHARDS = 2000
SHARD_WORKERS = 8
# Integer dtypes that hold several quantized weights per element (AWQ/GPTQ pack 8 4-bit weights in an
# I32, bitsandbytes and MXFP4 2 in a U8): their element count is not the parameter count. Above this
# share of the elements the count is refused; below it they are buffers (I64 position ids are not packed).
PACKED_DTYPES = ("I32", "U8")
PACKED_SHARE = 0.01
USER_AGENT = "llm-operator (parameter count for the fit check)"
# ASCII only, as the Hub's repo ids are: a non-ASCII name is "not a repo id", not an unreachable Hub.
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$", re.ASCII)
_TOKEN = re.compile(r"^[\x21-\x7e]+$")  # one HTTP header value: printable ASCII, no spaces or line breaks
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class ModelSize:
    parameters: int
    dtype: str | None
    """The dtype that holds most parameters (BF16, F8_E4M3, ...), None when the Hub did not say."""
    source: str
    """model-info | safetensors | safetensors-index: where the count was read."""
    revision: str
    """The revision asked for (main when unset)."""
    commit: str | None = None
    """The commit the Hub resolved the revision to, when it said."""
    dtypes: Mapping[str, int] = field(default_factory=dict, hash=False)
    """Parameters per dtype."""


class HubError(Exception):
    """The parameter count could not be read. The message says why in words fit for a condition message;
    it names the URL (never the token)."""


class HubUnreachable(HubError):
    """The Hub did not answer, or answered 429/5xx: worth trying again later."""


class HubAccessDenied(HubError):
    """401 or 403: the repo is gated or private, or the token was refused."""


class HubNotFound(HubError):
    """404: no such repo or revision."""


class SizeUnknown(HubError):
    """The Hub answered, but its files give no parameter count (no safetensors, GGUF only, packed weights)."""


@dataclass(frozen=True)
class ModelInfo:
    """The parts of the model info API's answer that are used here."""

    sha: str | None
    files: tuple[str, ...] | None
    """`siblings[].rfilename`, None when the answer does not list them (an `expand` answer, a mirror)."""
    parameters: Mapping[str, int]
    total: int | None


# --- pure parsers ---------------------------------------------------------------------------------


def parse_model_info(payload: bytes | str | Mapping[str, Any]) -> ModelInfo:
    """The answer of `GET /api/models/{repo}[/revision/{revision}]`."""
    data = _json_object(payload, "the model info")
    siblings = data.get("siblings")
    files = None
    if isinstance(siblings, list):
        files = tuple(s["rfilename"] for s in siblings if isinstance(s, dict) and isinstance(s.get("rfilename"), str))
    safetensors = data.get("safetensors") if isinstance(data.get("safetensors"), dict) else {}
    parameters = _counts(safetensors.get("parameters") or {}, "the model info's safetensors.parameters")
    total = safetensors.get("total")
    if total is not None and not _is_count(total):
        raise HubError(f"the model info's safetensors.total is not a count: {total!r}")
    if total is None and parameters:
        total = sum(parameters.values())
    sha = data.get("sha") if isinstance(data.get("sha"), str) else None
    return ModelInfo(sha=sha, files=files, parameters=parameters, total=total)


def parse_safetensors_index(payload: bytes | str | Mapping[str, Any]) -> list[str]:
    """The shard files `model.safetensors.index.json` names, sorted. A name that would leave the repo's
    folder (absolute, `..`) is refused: the index is the repo owner's text, the token is ours."""
    data = _json_object(payload, SAFETENSORS_INDEX_FILE)
    weight_map = data.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise HubError(f"{SAFETENSORS_INDEX_FILE} has no weight_map")
    shards = sorted({str(name) for name in weight_map.values()})
    for name in shards:
        if not name or name.startswith("/") or "\\" in name or ".." in name.split("/"):
            raise HubError(f"{SAFETENSORS_INDEX_FILE} names a file outside the repo: {name!r}")
    if len(shards) > MAX_SHARDS:
        raise HubError(f"{SAFETENSORS_INDEX_FILE} names {len(shards)} shards, more than {MAX_SHARDS}")
    return shards


def safetensors_header_length(prefix: bytes) -> int:
    """The JSON header's length: the file's first 8 bytes, an unsigned little-endian integer."""
    if len(prefix) < 8:
        raise HubError("the file is too short to be safetensors (fewer than 8 bytes)")
    (length,) = struct.unpack("<Q", prefix[:8])
    if length > MAX_HEADER_BYTES:
        raise HubError(f"the safetensors header is {length} bytes, more than the {MAX_HEADER_BYTES} read")
    return length


def parse_safetensors_header(header: bytes) -> dict[str, int]:
    """Parameters per dtype in one safetensors header (the JSON after the 8-byte length): each tensor
    counts the product of its shape (1 for a scalar, as in huggingface_hub); `__metadata__` is not a tensor."""
    data = _json_object(header, "the safetensors header")
    counts: dict[str, int] = {}
    for name, tensor in data.items():
        if name == "__metadata__":
            continue
        if not isinstance(tensor, dict) or not isinstance(tensor.get("dtype"), str):
            raise HubError(f"the safetensors header's tensor {name!r} has no dtype")
        shape = tensor.get("shape")
        if not isinstance(shape, list) or not all(_is_count(n) for n in shape):
            raise HubError(f"the safetensors header's tensor {name!r} has no valid shape")
        counts[tensor["dtype"]] = counts.get(tensor["dtype"], 0) + math.prod(shape)
    return counts


def dominant_dtype(counts: Mapping[str, int]) -> str | None:
    """The dtype holding the most parameters (ties: the first name in sorted order)."""
    return min(counts, key=lambda dtype: (-counts[dtype], dtype)) if counts else None


def packed_dtypes(counts: Mapping[str, int]) -> dict[str, int]:
    """The packed-integer dtypes that hold a real share of the elements (see PACKED_DTYPES)."""
    total = sum(counts.values())
    return {d: n for d, n in counts.items() if d in PACKED_DTYPES and total and n / total > PACKED_SHARE}


def size_from_model_info(info: ModelInfo, revision: str) -> ModelSize | None:
    """Source (a): the Hub's own `safetensors.total`, or None when the answer has none."""
    if not info.total:
        return None
    return ModelSize(
        parameters=info.total, dtype=dominant_dtype(info.parameters), source="model-info",
        revision=revision, commit=info.sha, dtypes=dict(info.parameters),
    )


def is_hub_repo(name: str) -> bool:
    """A Hugging Face repo id (`org/name` or `name`), not an Ollama tag (`qwen2.5:7b`) or a local path."""
    return bool(_REPO_ID.match(name)) and len(name) <= 96 and "--" not in name and ".." not in name


def fit_needs_hub(fit: FitInput, model: str) -> bool:
    """Whether the fit check would use a count read from the Hub: it has none, GPUs of a known memory
    size, weights whose count safetensors give (GGUF, which Ollama serves, is out of scope), and a repo id."""
    return (
        fit.parameters is None
        and fit.gpus > 0
        and gpu_memory_bytes(fit.gpu_memory_bytes, fit.gpu_product) is not None
        and fit.method != "gguf"
        and is_hub_repo(model)
    )


def hub_endpoint(endpoint: str | None = None) -> str:
    """`endpoint`, else $HF_ENDPOINT (a mirror), else https://huggingface.co; without a trailing slash."""
    value = (endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).strip().rstrip("/")
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise HubError(f"the Hub endpoint must be an http(s) URL, not {value!r} (HF_ENDPOINT)")
    return value


# --- fetching -------------------------------------------------------------------------------------


_cache: dict[tuple[str, str, str, str | None], ModelSize] = {}
_cache_lock = threading.Lock()
CACHE_SIZE = 256


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()


def fetch_model_size(
    repo: str,
    revision: str | None = None,
    token: str | None = None,
    endpoint: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> ModelSize:
    """The parameter count of `repo` at `revision` (default main). `token` is the Hub token (the Secret's
    value; surrounding whitespace, such as the newline of `echo token > file`, is dropped). `endpoint`
    defaults to $HF_ENDPOINT, else https://huggingface.co; `timeout` bounds each request's connect and
    each read. Raises a HubError subclass whose message a user can act on."""
    if not is_hub_repo(repo):
        raise SizeUnknown(f"{repo!r} is not a Hugging Face repo id (org/name): set spec.model.parameters")
    revision = revision or DEFAULT_REVISION
    token = _clean_token(token)
    hub = _Hub(hub_endpoint(endpoint), repo, revision, token, timeout)
    # Keyed by a digest of the token, not by the repo alone: a private repo's size is not handed to a
    # caller without access.
    key = (hub.endpoint, repo, revision, hashlib.sha256(token.encode()).hexdigest() if token else None)
    with _cache_lock:
        if key in _cache:
            return _cache[key]
    size = _read_size(hub)
    with _cache_lock:
        if len(_cache) >= CACHE_SIZE:
            _cache.pop(next(iter(_cache)))
        _cache[key] = size
    return size


def _read_size(hub: _Hub) -> ModelSize:
    info = _parsed(hub, "the model info", parse_model_info, hub.get(hub.info_url()))
    size = size_from_model_info(info, hub.revision)
    if size is None:
        # Read the files of the commit the info describes, so that a push in between cannot mix two.
        at = info.sha if info.sha and _COMMIT.match(info.sha) else hub.revision
        size = _size_from_files(hub, info.files, at)
        size = ModelSize(size.parameters, size.dtype, size.source, hub.revision, info.sha, size.dtypes)
    packed = packed_dtypes(size.dtypes)
    if packed:
        listed = ", ".join(f"{dtype}: {count:,}" for dtype, count in sorted(packed.items()))
        raise SizeUnknown(
            f"{hub.where} stores packed integer weights ({listed} of {size.parameters:,} elements), as "
            "AWQ, GPTQ and 4-bit checkpoints do: their element count is not the parameter count; "
            "set spec.model.parameters"
        )
    return size


def _size_from_files(hub: _Hub, files: tuple[str, ...] | None, at: str) -> ModelSize:
    """Source (b). With the info's file list the right file is known; without one, probe as
    huggingface_hub does: the single file first, then the index."""
    if files is None or SAFETENSORS_SINGLE_FILE in files:
        try:
            counts = _file_counts(hub, at, SAFETENSORS_SINGLE_FILE)
            return ModelSize(sum(counts.values()), dominant_dtype(counts), "safetensors", at, dtypes=counts)
        except HubNotFound:
            if files is not None:
                raise
    if files is None or SAFETENSORS_INDEX_FILE in files:
        try:
            index = hub.get(hub.file_url(at, SAFETENSORS_INDEX_FILE))
            shards = _parsed(hub, SAFETENSORS_INDEX_FILE, parse_safetensors_index, index)
        except HubNotFound:
            if files is not None:
                raise
        else:
            counts = _shard_counts(hub, at, shards)
            return ModelSize(sum(counts.values()), dominant_dtype(counts), "safetensors-index", at, dtypes=counts)
    if files and any(name.endswith(".gguf") for name in files):
        raise SizeUnknown(f"{hub.where} has GGUF weights, whose parameter count is not read: set spec.model.parameters")
    raise SizeUnknown(
        f"no safetensors weights in {hub.where} (neither {SAFETENSORS_SINGLE_FILE} nor {SAFETENSORS_INDEX_FILE}): "
        "set spec.model.parameters"
    )


def _shard_counts(hub: _Hub, at: str, shards: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    # A few requests at a time, as huggingface_hub does: a 400B model has about 50 shards.
    with ThreadPoolExecutor(max_workers=min(SHARD_WORKERS, len(shards))) as pool:
        try:
            for shard_counts in pool.map(lambda shard: _file_counts(hub, at, shard), shards):
                for dtype, count in shard_counts.items():
                    counts[dtype] = counts.get(dtype, 0) + count
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise
    return counts


def _file_counts(hub: _Hub, at: str, filename: str) -> dict[str, int]:
    """Parameters per dtype of one safetensors file, from its header alone."""
    url = hub.file_url(at, filename)
    first = hub.get(url, first=0, last=FIRST_READ_BYTES - 1)
    length = _parsed(hub, filename, safetensors_header_length, first)
    header = first[8:8 + length] if length <= len(first) - 8 else hub.get(url, first=8, last=length + 7)
    return _parsed(hub, filename, parse_safetensors_header, header)


def _parsed(hub: _Hub, what: str, parse: Callable[[bytes], T], payload: bytes) -> T:
    """`parse(payload)`; a payload it cannot read is a repo whose size is unknown, said with where it is."""
    try:
        return parse(payload)
    except HubError as error:
        raise SizeUnknown(f"{error} ({what} of {hub.where})") from None


def _clean_token(token: str | None) -> str | None:
    token = (token or "").strip()
    if not token:
        return None
    if not _TOKEN.match(token):
        # http.client would refuse it with the header's value in its message: say so without the value.
        raise HubAccessDenied("the Hub token is not one line of printable ASCII: check spec.model.tokenSecretRef")
    return token


class _SameHostRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects, but send the token to the host it was meant for only. The Hub redirects file
    downloads to a CDN with a presigned URL, which must not see the token (and S3 refuses a request
    that carries two kinds of authorization); a same-host redirect (a renamed repo) keeps it."""

    def redirect_request(
        self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str, headers: HTTPMessage, newurl: str
    ) -> urllib.request.Request | None:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and _origin(newurl) != _origin(req.full_url):
            new.remove_header("Authorization")
        return new


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme, parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


_OPENER = urllib.request.build_opener(_SameHostRedirects())


@dataclass(frozen=True)
class _Hub:
    endpoint: str
    repo: str
    revision: str
    token: str | None
    timeout: float

    @property
    def where(self) -> str:
        return f"{self.repo}@{self.revision}"

    def info_url(self) -> str:
        return f"{self.endpoint}/api/models/{self.repo}/revision/{urllib.parse.quote(self.revision, safe='')}"

    def file_url(self, at: str, filename: str) -> str:
        return f"{self.endpoint}/{self.repo}/resolve/{urllib.parse.quote(at, safe='')}/{urllib.parse.quote(filename)}"

    def get(self, url: str, first: int | None = None, last: int | None = None) -> bytes:
        """The body of GET `url`, or bytes first..last (inclusive) of it by a Range request."""
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"})
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        if first is not None and last is not None:
            request.add_header("Range", f"bytes={first}-{last}")
        log.debug("GET %s%s", url, f" (bytes {first}-{last})" if first is not None else "")
        try:
            with _OPENER.open(request, timeout=self.timeout) as response:
                if first is not None and last is not None:
                    # A server that ignores Range answers 200 with the whole file: read only what was asked.
                    body = response.read(last + 1 if response.status == 200 else last - first + 1)
                    return body[first:] if response.status == 200 else body
                body = response.read(MAX_JSON_BYTES + 1)
        except urllib.error.HTTPError as error:
            error.close()
            raise self._http_error(url, error.code, error.headers) from None
        except (urllib.error.URLError, OSError, HTTPException, ValueError) as error:
            raise HubUnreachable(f"cannot reach the Hub at {self.endpoint}: {_reason(error)}") from None
        if len(body) > MAX_JSON_BYTES:
            raise HubError(f"the answer of {url} is larger than {MAX_JSON_BYTES} bytes")
        return body

    def _http_error(self, url: str, status: int, headers: Mapping[str, str] | None) -> HubError:
        code = (headers or {}).get("X-Error-Code", "")
        server_says = (headers or {}).get("X-Error-Message", "")
        said = f"HTTP {status} for {url}"
        if status in (401, 403):
            if not self.token:
                return HubAccessDenied(
                    f"{said}: {self.where} is gated or private (or does not exist): set spec.model.tokenSecretRef"
                )
            if status == 401 and server_says == "Invalid credentials in Authorization header":
                return HubAccessDenied(f"{said}: the token is invalid or expired: check spec.model.tokenSecretRef")
            if status == 401:
                return HubAccessDenied(
                    f"{said}: the token was refused, or {self.where} does not exist: "
                    "check the token in spec.model.tokenSecretRef"
                )
            return HubAccessDenied(
                f"{said}: the token has no access to {self.where} (gated: accept its terms on the Hub with the "
                "token's account; private: use a token of its owner): check spec.model.tokenSecretRef"
            )
        if status == 404:
            if code == "RevisionNotFound":
                return HubNotFound(f"{said}: revision {self.revision} not found in {self.repo}")
            if code == "EntryNotFound":
                return HubNotFound(f"{said}: no such file in {self.where}")
            return HubNotFound(f"{said}: {self.where} not found (no such repo or revision)")
        if status == 429 or status >= 500:
            return HubUnreachable(f"{said}: the Hub at {self.endpoint} is busy or failing; try again later")
        return HubError(said)


def _reason(error: BaseException) -> str:
    reason = getattr(error, "reason", None) or error
    return str(reason) or type(reason).__name__


def _json_object(payload: bytes | str | Mapping[str, Any], what: str) -> Mapping[str, Any]:
    if isinstance(payload, Mapping):
        return payload
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise HubError(f"{what} is not JSON: {error}") from None
    if not isinstance(data, dict):
        raise HubError(f"{what} is not a JSON object")
    return data


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _counts(value: object, what: str) -> dict[str, int]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and _is_count(n) for k, n in value.items()):
        raise HubError(f"{what} is not a map of dtype to count")
    return dict(value)
