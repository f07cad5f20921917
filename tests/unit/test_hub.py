"""llm_operator.hub: the parameter count read from the Hugging Face Hub, against a stand-in Hub on 127.0.0.1.

The real Hub cannot be reached from here. The stand-in (tests/support/hub_standin.py) serves fixtures
written in the Hub's response format (checked against huggingface_hub's source and its recorded test
cassettes, one of which is served as recorded); the counts of the big models are their public sizes,
rounded. tests/support/hub_fixtures/README.md says which is which.
"""

from __future__ import annotations

import json
import logging
import socket
import struct
import time
import traceback
from collections.abc import Iterator

import pytest

from llm_operator import hub
from llm_operator.fit import FitInput
from llm_operator.hub import (
    HubAccessDenied,
    HubError,
    HubNotFound,
    HubUnreachable,
    SizeUnknown,
    dominant_dtype,
    fetch_model_size,
    fit_needs_hub,
    hub_endpoint,
    is_hub_repo,
    packed_dtypes,
    parse_model_info,
    parse_safetensors_header,
    parse_safetensors_index,
    safetensors_header_length,
    size_from_model_info,
)
from support.hub_standin import (
    FIXTURES,
    NO_ACCESS_TOKEN,
    TOKEN,
    HubStandIn,
    safetensors_bytes,
    safetensors_header,
)

TINY = 139_584  # the fixtures' tiny Llama: 2 x 512 x 64 (embeddings, lm_head) + 2 layers x 36,992 + 64 (norm)
MAVERICK = "meta-llama/Llama-4-Maverick-17B-128E-Instruct"
SCOUT = "meta-llama/Llama-4-Scout-17B-16E-Instruct"
ALBERT = "sentence-transformers/paraphrase-albert-small-v2"


@pytest.fixture(autouse=True)
def _empty_cache() -> Iterator[None]:
    hub.clear_cache()
    yield
    hub.clear_cache()


@pytest.fixture
def standin() -> Iterator[HubStandIn]:
    with HubStandIn() as server:
        yield server


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fit(parameters: float | None = None, gpus: int = 1, product: str | None = "NVIDIA-H100-80GB-HBM3",
        method: str = "none") -> FitInput:
    return FitInput(parameters=parameters, method=method, bits=None, variant=None, gpus=gpus,
                    gpu_memory_bytes=None, gpu_product=product, memory_utilization=0.9)


# --- parsers ------------------------------------------------------------------------------------


def test_model_info_parser_reads_a_recorded_answer() -> None:
    info = parse_model_info((FIXTURES / ALBERT / "info.json").read_bytes())
    assert info.sha == "39d5b65549dbfc88a4c56fc853a8b7242873d583"
    assert info.files is not None and "model.safetensors" in info.files
    assert info.parameters == {"I64": 512, "F32": 11_683_584}
    assert info.total == 11_684_096
    size = size_from_model_info(info, "main")
    assert size is not None
    # The I64 buffer (position_ids) is counted, as the Hub counts it, but F32 holds the weights.
    assert (size.parameters, size.dtype, size.source, size.commit) == (11_684_096, "F32", "model-info", info.sha)


def test_model_info_parser_without_safetensors_or_siblings() -> None:
    info = parse_model_info(b'{"id": "a/b", "sha": "abc"}')
    assert (info.total, info.files, info.parameters) == (None, None, {})
    assert size_from_model_info(info, "main") is None
    assert parse_model_info({"safetensors": {"parameters": {"BF16": 5, "F32": 2}}}).total == 7


@pytest.mark.parametrize("payload", [b"not json", b"[]", b'{"safetensors": {"total": "many"}}',
                                     b'{"safetensors": {"parameters": {"BF16": -1}, "total": 1}}'])
def test_model_info_parser_refuses_what_is_not_a_count(payload: bytes) -> None:
    with pytest.raises(HubError):
        parse_model_info(payload)


def test_index_parser_lists_each_shard_once() -> None:
    index = {"metadata": {"total_size": 10}, "weight_map": {"a": "model-2.safetensors", "b": "model-1.safetensors",
                                                           "c": "model-2.safetensors"}}
    assert parse_safetensors_index(json.dumps(index)) == ["model-1.safetensors", "model-2.safetensors"]
    fixture = FIXTURES / "acme" / "tiny-llama-sharded" / "files" / "model.safetensors.index.json"
    assert parse_safetensors_index(fixture.read_bytes()) == [
        "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
    ]


@pytest.mark.parametrize("name", ["../other/model.safetensors", "/etc/passwd", "a/../../b", ""])
def test_index_parser_refuses_files_outside_the_repo(name: str) -> None:
    with pytest.raises(HubError, match="outside the repo"):
        parse_safetensors_index({"weight_map": {"w": name}})


def test_index_parser_needs_a_weight_map() -> None:
    with pytest.raises(HubError, match="no weight_map"):
        parse_safetensors_index(b'{"metadata": {}}')


def test_header_length_is_8_bytes_little_endian() -> None:
    assert safetensors_header_length(struct.pack("<Q", 1234) + b"{") == 1234
    assert safetensors_header_length(bytes([0x10, 0x01, 0, 0, 0, 0, 0, 0])) == 0x110
    with pytest.raises(HubError, match="too short"):
        safetensors_header_length(b"\x01\x02")
    with pytest.raises(HubError, match="more than"):
        safetensors_header_length(struct.pack("<Q", 10**9))


def test_header_parser_sums_the_shapes_per_dtype() -> None:
    header = (b'{"__metadata__":{"format":"pt"},"w":{"dtype":"BF16","shape":[4,3],"data_offsets":[0,24]},'
              b'"b":{"dtype":"BF16","shape":[3],"data_offsets":[24,30]},'
              b'"s":{"dtype":"F32","shape":[],"data_offsets":[30,34]},'
              b'"e":{"dtype":"F32","shape":[0,8],"data_offsets":[34,34]}}   ')
    # a scalar counts 1 and an empty tensor 0, as in huggingface_hub
    assert parse_safetensors_header(header) == {"BF16": 15, "F32": 1}


@pytest.mark.parametrize("header", [b'{"w": {"shape": [1]}}', b'{"w": {"dtype": "F16", "shape": [2, -1]}}',
                                    b'{"w": {"dtype": "F16", "shape": "2x2"}}', b"[1]"])
def test_header_parser_refuses_broken_tensors(header: bytes) -> None:
    with pytest.raises(HubError):
        parse_safetensors_header(header)


def test_the_standins_files_are_safetensors() -> None:
    """The bytes the stand-in serves follow the format: length, JSON header padded with spaces, data."""
    data = safetensors_bytes(safetensors_header({"w": ("F16", [2, 3]), "x": ("I8", [5])}, {"format": "pt"}))
    length = safetensors_header_length(data)
    assert length % 8 == 0 and data[8:9] == b"{"
    assert len(data) == 8 + length + 2 * 3 * 2 + 5
    assert parse_safetensors_header(data[8:8 + length]) == {"F16": 6, "I8": 5}


def test_dominant_and_packed_dtypes() -> None:
    assert dominant_dtype({"BF16": 10, "F32": 3}) == "BF16"
    assert dominant_dtype({"F16": 5, "BF16": 5}) == "BF16"  # a tie: the first name
    assert dominant_dtype({}) is None
    assert packed_dtypes({"I32": 40, "F16": 60}) == {"I32": 40}
    assert packed_dtypes({"I64": 512, "F32": 11_683_584}) == {}  # a buffer, not packed weights
    assert packed_dtypes({"I32": 1, "BF16": 10_000}) == {}  # a small int buffer
    assert packed_dtypes({"I8": 70, "BF16": 30}) == {}  # int8 holds one weight per element


@pytest.mark.parametrize(("name", "ok"), [
    ("meta-llama/Llama-4-Scout-17B-16E-Instruct", True), ("gpt2", True), ("Qwen/Qwen2.5-0.5B-Instruct", True),
    ("qwen2.5:7b-instruct", False), ("/models/llama", False), ("a/b/c", False), ("a/../b", False),
    ("org/na--me", False), ("hf.co/org/model", False), ("", False),
])
def test_is_hub_repo(name: str, ok: bool) -> None:
    assert is_hub_repo(name) is ok


def test_hub_endpoint_honours_hf_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    assert hub_endpoint() == "https://huggingface.co"
    monkeypatch.setenv("HF_ENDPOINT", "https://hf-mirror.example.com/")
    assert hub_endpoint() == "https://hf-mirror.example.com"
    assert hub_endpoint("http://127.0.0.1:9") == "http://127.0.0.1:9"  # an explicit endpoint wins
    monkeypatch.setenv("HF_ENDPOINT", "file:///etc")
    with pytest.raises(HubError, match="http"):
        hub_endpoint()


def test_fit_needs_hub_only_when_the_count_would_be_used() -> None:
    assert fit_needs_hub(fit(), "meta-llama/Llama-3.1-8B-Instruct")
    assert not fit_needs_hub(fit(parameters=8e9), "meta-llama/Llama-3.1-8B-Instruct")  # the user said
    assert not fit_needs_hub(fit(gpus=0), "meta-llama/Llama-3.1-8B-Instruct")  # CPU: nothing to check
    assert not fit_needs_hub(fit(product="Unknown-GPU"), "meta-llama/Llama-3.1-8B-Instruct")  # memory unknown
    assert not fit_needs_hub(fit(method="gguf"), "meta-llama/Llama-3.1-8B-Instruct")
    assert not fit_needs_hub(fit(), "qwen2.5:7b-instruct")  # an Ollama tag


# --- sources, in order --------------------------------------------------------------------------


@pytest.mark.parametrize(("repo", "parameters"), [
    (MAVERICK, 401_600_000_000), (SCOUT, 108_600_000_000), ("Qwen/Qwen2.5-0.5B-Instruct", 494_000_000),
])
def test_model_info_first_and_alone(standin: HubStandIn, repo: str, parameters: int) -> None:
    size = fetch_model_size(repo, None, None, standin.endpoint)
    assert (size.parameters, size.dtype, size.source, size.revision) == (parameters, "BF16", "model-info", "main")
    assert standin.paths() == [f"/api/models/{repo}/revision/main"]


def test_index_and_shards_when_the_info_has_no_count(standin: HubStandIn) -> None:
    size = fetch_model_size("acme/tiny-llama-sharded", None, None, standin.endpoint)
    assert (size.parameters, size.dtype, size.source) == (TINY, "BF16", "safetensors-index")
    sha = standin.repos["acme/tiny-llama-sharded"].sha
    assert size.commit == sha
    paths = standin.paths()
    # The info, then the files at the commit it names (so that a push in between cannot mix two commits).
    assert paths[:2] == ["/api/models/acme/tiny-llama-sharded/revision/main",
                         f"/acme/tiny-llama-sharded/resolve/{sha}/model.safetensors.index.json"]
    shards = {f"/acme/tiny-llama-sharded/resolve/{sha}/model-0000{i}-of-00002.safetensors" for i in (1, 2)}
    assert shards <= set(paths[2:])
    ranges = [seen.headers.get("Range") for seen in standin.requests if seen.path.startswith("/cdn/")]
    assert ranges == ["bytes=0-99999", "bytes=0-99999"]  # each header in one Range request


def test_single_file_when_there_is_no_index(standin: HubStandIn) -> None:
    size = fetch_model_size("acme/tiny-llama-single", None, None, standin.endpoint)
    assert (size.parameters, size.source) == (TINY, "safetensors")
    assert not any("index" in path for path in standin.paths())


def test_without_a_file_list_probe_the_single_file_then_the_index(standin: HubStandIn) -> None:
    """A mirror may answer the info without `siblings`: probe as huggingface_hub does."""
    sharded = standin.repos["acme/tiny-llama-sharded"]
    standin.add_repo("acme/unlisted", {"id": "acme/unlisted", "sha": sharded.sha}, sharded.files)
    size = fetch_model_size("acme/unlisted", None, None, standin.endpoint)
    assert (size.parameters, size.source) == (TINY, "safetensors-index")
    assert [p.rsplit("/", 1)[-1] for p in standin.paths()[:3]] == [
        "main", "model.safetensors", "model.safetensors.index.json"
    ]


def test_a_header_larger_than_the_first_read_takes_a_second_range(standin: HubStandIn) -> None:
    tensors = {f"model.layers.{i}.block_sparse_moe.experts.{i}.w{i % 3}.weight": ("BF16", [4, 2]) for i in range(2500)}
    data = safetensors_bytes(safetensors_header(tensors))
    assert safetensors_header_length(data) > 100_000
    info = {"id": "acme/wide", "sha": "b" * 40, "siblings": [{"rfilename": "model.safetensors"}]}
    standin.add_repo("acme/wide", info, {"model.safetensors": data})
    assert fetch_model_size("acme/wide", None, None, standin.endpoint).parameters == 2500 * 8
    ranges = [seen.headers.get("Range") for seen in standin.requests if seen.path.startswith("/cdn/")]
    assert ranges == ["bytes=0-99999", f"bytes=8-{safetensors_header_length(data) + 7}"]


def test_a_server_that_ignores_range_is_read_only_as_far_as_needed(standin: HubStandIn) -> None:
    standin.ranges = False
    assert fetch_model_size("acme/tiny-llama-sharded", None, None, standin.endpoint).parameters == TINY


def test_the_pinned_revision_is_asked_for(standin: HubStandIn) -> None:
    single = standin.repos["acme/tiny-llama-single"]
    standin.add_repo("acme/pinned", {**single.info, "id": "acme/pinned"}, single.files, revisions=("refs/pr/1",))
    size = fetch_model_size("acme/pinned", "refs/pr/1", None, standin.endpoint)
    assert (size.parameters, size.revision) == (TINY, "refs/pr/1")
    assert standin.requests[0].path == "/api/models/acme/pinned/revision/refs%2Fpr%2F1"


def test_gguf_packed_and_missing_weights_are_unknown(standin: HubStandIn) -> None:
    with pytest.raises(SizeUnknown, match="GGUF"):
        fetch_model_size("acme/tiny-llama-gguf", None, None, standin.endpoint)
    with pytest.raises(SizeUnknown, match=r"packed integer weights \(I32: 873,725,952 of 1,979,777,024"):
        fetch_model_size("acme/llama-8b-awq-int4", None, None, standin.endpoint)
    standin.add_repo("acme/bin-only", {"id": "acme/bin-only", "siblings": [{"rfilename": "pytorch_model.bin"}]})
    with pytest.raises(SizeUnknown, match=r"no safetensors weights in acme/bin-only@main"):
        fetch_model_size("acme/bin-only", None, None, standin.endpoint)
    standin.add_repo("acme/nothing", {"id": "acme/nothing"})  # no list: both probes answer 404
    with pytest.raises(SizeUnknown, match=r"no safetensors weights in acme/nothing@main"):
        fetch_model_size("acme/nothing", None, None, standin.endpoint)
    with pytest.raises(SizeUnknown, match="not a Hugging Face repo id"):
        fetch_model_size("qwen2.5:7b", None, None, standin.endpoint)


def test_an_index_naming_a_file_elsewhere_is_refused(standin: HubStandIn) -> None:
    index = json.dumps({"weight_map": {"w": "../../acme/private-tiny-llama/resolve/main/model.safetensors"}})
    standin.add_repo("acme/sneaky", {"id": "acme/sneaky", "siblings": [{"rfilename": "model.safetensors.index.json"}]},
                     {"model.safetensors.index.json": index.encode()})
    with pytest.raises(SizeUnknown, match=r"outside the repo: .*acme/sneaky@main"):
        fetch_model_size("acme/sneaky", None, TOKEN, standin.endpoint)


# --- the token ----------------------------------------------------------------------------------


def test_the_token_goes_to_the_hub_and_not_to_the_cdn(standin: HubStandIn) -> None:
    size = fetch_model_size("acme/private-tiny-llama", None, TOKEN, standin.endpoint)
    assert size.parameters == TINY
    hub_requests = [s for s in standin.requests if not s.path.startswith("/cdn/")]
    cdn_requests = [s for s in standin.requests if s.path.startswith("/cdn/")]
    assert hub_requests and all(s.headers.get("Authorization") == f"Bearer {TOKEN}" for s in hub_requests)
    # The stand-in's CDN answers 400 to a request with a token, as S3 does: reading the shards proves it was dropped.
    assert len(cdn_requests) == 2 and all("Authorization" not in s.headers for s in cdn_requests)
    assert TOKEN not in repr(size)


def test_a_token_with_a_trailing_newline_is_used_as_the_token(standin: HubStandIn) -> None:
    """A Secret written with `echo token > file` holds a newline."""
    assert fetch_model_size("acme/gated-tiny-llama", None, TOKEN + "\n", standin.endpoint).parameters == TINY


def test_a_token_that_is_no_header_value_is_refused_without_saying_it() -> None:
    with pytest.raises(HubAccessDenied, match="tokenSecretRef") as error:
        fetch_model_size("acme/x", None, "hf_secret value\nInjected: 1", "http://127.0.0.1:9")
    assert "hf_secret" not in str(error.value)


def test_the_cache_does_not_hand_a_private_size_to_a_caller_without_the_token(standin: HubStandIn) -> None:
    fetch_model_size("acme/private-tiny-llama", None, TOKEN, standin.endpoint)
    count = len(standin.requests)
    assert fetch_model_size("acme/private-tiny-llama", None, TOKEN, standin.endpoint).parameters == TINY
    assert len(standin.requests) == count  # cached
    with pytest.raises(HubAccessDenied):
        fetch_model_size("acme/private-tiny-llama", None, None, standin.endpoint)


@pytest.mark.parametrize(("repo", "token", "status"), [
    ("acme/gated-tiny-llama", "hf_wrongTokenValue0123456789", 401),
    ("acme/gated-tiny-llama", NO_ACCESS_TOKEN, 403),
    ("acme/does-not-exist", TOKEN, 404),
])
def test_the_token_is_in_no_message_or_log_record(
    standin: HubStandIn, caplog: pytest.LogCaptureFixture, repo: str, token: str, status: int
) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(HubError) as error:
        fetch_model_size(repo, None, token, standin.endpoint)
    assert f"HTTP {status}" in str(error.value)
    text = "".join(traceback.format_exception(error.value)) + repr(error.value) + caplog.text
    assert token not in text
    assert "Authorization" not in caplog.text
    assert any(record.name == "llm_operator.hub" for record in caplog.records)  # it did log, without the token


def test_the_token_is_in_no_message_when_the_hub_is_unreachable(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(HubUnreachable) as error:
        fetch_model_size("acme/x", None, TOKEN, f"http://127.0.0.1:{closed_port()}")
    assert TOKEN not in "".join(traceback.format_exception(error.value)) + caplog.text


# --- errors a user reads ------------------------------------------------------------------------


def test_gated_or_private_without_a_token_names_token_secret_ref(standin: HubStandIn) -> None:
    for repo in ("acme/gated-tiny-llama", "acme/private-tiny-llama"):
        with pytest.raises(HubAccessDenied, match=r"HTTP 401 for http://127\.0\.0\.1:\d+/.*: .* gated or private "
                                                  r".*set spec\.model\.tokenSecretRef"):
            fetch_model_size(repo, None, None, standin.endpoint)


def test_a_token_without_access_names_token_secret_ref(standin: HubStandIn) -> None:
    with pytest.raises(HubAccessDenied, match=r"HTTP 403 .*no access to acme/gated-tiny-llama@main.*tokenSecretRef"):
        fetch_model_size("acme/gated-tiny-llama", None, NO_ACCESS_TOKEN, standin.endpoint)
    with pytest.raises(HubAccessDenied, match=r"HTTP 401 .*invalid or expired.*tokenSecretRef"):
        fetch_model_size("acme/gated-tiny-llama", None, "hf_wrongTokenValue0123456789", standin.endpoint)


def test_not_found_names_the_repo_and_the_revision(standin: HubStandIn) -> None:
    with pytest.raises(HubNotFound, match=r"HTTP 404 .*: acme/does-not-exist@v2 not found"):
        fetch_model_size("acme/does-not-exist", "v2", TOKEN, standin.endpoint)
    with pytest.raises(HubNotFound, match=r"HTTP 404 .*: revision v9 not found in acme/tiny-llama-single"):
        fetch_model_size("acme/tiny-llama-single", "v9", None, standin.endpoint)


def test_a_closed_port_is_unreachable_at_once() -> None:
    port = closed_port()
    started = time.monotonic()
    with pytest.raises(HubUnreachable, match=rf"^cannot reach the Hub at http://127\.0\.0\.1:{port}: .*refused"):
        fetch_model_size("acme/x", None, None, f"http://127.0.0.1:{port}")
    assert time.monotonic() - started < 1


def test_a_hub_that_does_not_answer_times_out() -> None:
    with socket.socket() as silent:  # accepts connections (the kernel does) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        started = time.monotonic()
        with pytest.raises(HubUnreachable, match=r"cannot reach the Hub at .*timed out"):
            fetch_model_size("acme/x", None, None, f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=0.3)
        assert time.monotonic() - started < 2


@pytest.mark.parametrize("status", [429, 503])
def test_a_busy_hub_is_worth_trying_again(standin: HubStandIn, status: int) -> None:
    standin.outage = status
    with pytest.raises(HubUnreachable, match=f"HTTP {status} .*try again later"):
        fetch_model_size(MAVERICK, None, None, standin.endpoint)


def test_hf_endpoint_is_the_default_endpoint(standin: HubStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", standin.endpoint + "/")
    assert fetch_model_size(SCOUT).parameters == 108_600_000_000
    assert standin.paths() == [f"/api/models/{SCOUT}/revision/main"]
