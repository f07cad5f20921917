"""`llm-operator render` and `validate` read an unset spec.model.parameters from the Hub ($HF_ENDPOINT, token
in $HF_TOKEN) for the fit check, unless --offline; an unreachable Hub is one line on stderr, not a failure.

The Hub is the stand-in of tests/support/hub_standin.py on 127.0.0.1: fixtures in the Hub's response
format, not recordings of it (tests/support/hub_fixtures/README.md says which numbers are public and rounded).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from llm_operator import hub
from llm_operator.cli import main
from support.hub_standin import TOKEN, HubStandIn
from unit.factories import manifest

MAVERICK = "meta-llama/Llama-4-Maverick-17B-128E-Instruct"
ONE_H100 = {"resources": {"gpus": 1, "gpuProduct": "NVIDIA-H100-80GB-HBM3"}}
SKIP_LINE = "; the fit check is skipped; set spec.model.parameters or use --offline"


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("HF_ENDPOINT", "HF_TOKEN", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    hub.clear_cache()
    yield
    hub.clear_cache()


@pytest.fixture
def standin(monkeypatch: pytest.MonkeyPatch) -> Iterator[HubStandIn]:
    with HubStandIn() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
        yield server


def spec_file(tmp_path: Path, *docs: dict) -> Path:
    path = tmp_path / "llm.yaml"
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def doc(model: str, name: str = "llm", resources: dict | None = None, **model_fields: str) -> dict:
    return manifest("vllm", {"model": {"name": model, **model_fields}, **(resources or ONE_H100)}, name=name)


def objects(output: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(output) if d]


def render(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["render", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_render_uses_the_hubs_count_for_the_fit_check(
    standin: HubStandIn, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = spec_file(tmp_path, doc(MAVERICK))
    written = path.read_text()
    code, out, err = render(capsys, "-f", str(path))
    assert (code, err) == (0, "")
    assert f"# spec.model.parameters is unset: 401.6B parameters (BF16) read from the Hub: {MAVERICK}@main" in out
    assert "# ModelFits=False (InsufficientGPUMemory): weights 748.0 GiB" in out
    assert "not deployed" in out and objects(out) == []
    assert path.read_text() == written  # what the user wrote is not touched
    assert standin.paths() == [f"/api/models/{MAVERICK}/revision/main"]


def test_render_of_a_model_that_fits_gives_the_same_objects_as_offline(
    standin: HubStandIn, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = spec_file(tmp_path, doc("Qwen/Qwen2.5-0.5B-Instruct", resources={"resources": {
        "gpus": 1, "gpuProduct": "NVIDIA-L4"}}))
    code, online, _ = render(capsys, "-f", str(path))
    assert code == 0 and "# ModelFits=True (Fits): weights 0.9 GiB" in online
    _, offline, _ = render(capsys, "-f", str(path), "--offline")
    assert "# ModelFits=Unknown (NotChecked)" in offline
    # The count is used for the fit check only: no object carries it.
    assert objects(online) == objects(offline) != []


def test_the_skip_fit_check_annotation_still_renders(
    standin: HubStandIn, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    skipped = doc(MAVERICK)
    skipped["metadata"]["annotations"] = {"serving.llm-operator.io/skip-fit-check": "true"}
    path = spec_file(tmp_path, skipped)
    code, out, _ = render(capsys, "-f", str(path))
    assert code == 0 and "# ModelFits=False (InsufficientGPUMemory)" in out and objects(out) != []
    assert main(["validate", "-f", str(path)]) == 0
    assert "(deployed anyway: the skip-fit-check annotation is set)" in capsys.readouterr().err


def test_offline_reads_nothing(standin: HubStandIn, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    path = spec_file(tmp_path, doc(MAVERICK))
    code, out, err = render(capsys, "-f", str(path), "--offline")
    assert (code, err) == (0, "")
    assert "# ModelFits=Unknown (NotChecked): fit not checked: set spec.model.parameters" in out
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # huggingface_hub's switch does the same
    assert render(capsys, "-f", str(path))[1] == out
    assert standin.paths() == []


def test_the_hub_is_asked_only_when_the_fit_check_needs_it(
    standin: HubStandIn, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = spec_file(
        tmp_path,
        doc(MAVERICK, name="typed", parameters="402B"),  # the user's count wins
        doc(MAVERICK, name="cpu", resources={"resources": {"gpus": 0}}),
        doc(MAVERICK, name="unknown-gpu", resources={"resources": {"gpus": 1}}),
        manifest("ollama", {"resources": {"gpus": 1, "gpuProduct": "NVIDIA-L4"}}, name="ollama"),
    )
    code, _, err = render(capsys, "-f", str(path))
    assert (code, err) == (0, "")
    assert standin.paths() == []


def test_an_unreachable_hub_is_one_line_per_document_and_one_wait(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    path = spec_file(tmp_path, doc(MAVERICK, name="a"), doc("Qwen/Qwen2.5-0.5B-Instruct", name="b"))
    code, out, err = render(capsys, "-f", str(path))
    _, offline, _ = render(capsys, "-f", str(path), "--offline")
    assert code == 0 and out == offline
    lines = err.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"could not read the parameter count of {MAVERICK}@main from {endpoint}: cannot reach "
                               f"the Hub at {endpoint}: ")
    assert "Connection refused" in lines[0] and lines[0].endswith(SKIP_LINE)
    assert lines[1].startswith(f"could not read the parameter count of Qwen/Qwen2.5-0.5B-Instruct@main from {endpoint}")


def test_the_token_comes_from_hf_token_and_is_never_printed(
    standin: HubStandIn, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = spec_file(tmp_path, doc("acme/private-tiny-llama", revision="main"))
    code, out, err = render(capsys, "-f", str(path))
    assert code == 0 and "# ModelFits=Unknown (NotChecked)" in out
    assert err.startswith("could not read the parameter count of acme/private-tiny-llama@main from http://127.0.0.1:")
    assert "set spec.model.tokenSecretRef (the CLI sends the token in $HF_TOKEN)" + SKIP_LINE in err

    hub.clear_cache()
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    code, out, err = render(capsys, "-f", str(path))
    assert (code, err) == (0, "")
    assert "139,584 parameters (BF16) read from the Hub: acme/private-tiny-llama@main, safetensors-index" in out
    assert standin.requests[-1].headers.get("Authorization") is None  # the last is the CDN's: no token there
    assert any(s.headers.get("Authorization") == f"Bearer {TOKEN}" for s in standin.requests)
    assert TOKEN not in out + err


def test_validate_warns_when_the_model_does_not_fit(
    standin: HubStandIn, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = spec_file(tmp_path, doc(MAVERICK))
    assert main(["validate", "-f", str(path)]) == 0  # the apiserver accepts it: a warning, not a failure
    captured = capsys.readouterr()
    assert captured.out == "1 file(s) valid\n"
    assert captured.err.startswith(f"warning: {path}: LLMService ml/llm: ModelFits=False (InsufficientGPUMemory): ")
    assert f"[401.6B parameters (BF16) read from the Hub: {MAVERICK}@main, model-info]" in captured.err

    assert main(["validate", "-f", str(path), "--offline"]) == 0
    assert capsys.readouterr().err == ""


def test_validate_with_an_unreachable_hub_says_so_and_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    assert main(["validate", "-f", str(spec_file(tmp_path, doc(MAVERICK)))]) == 0
    err = capsys.readouterr().err
    assert err.startswith(f"could not read the parameter count of {MAVERICK}@main from {endpoint}: ")
    assert err.endswith(SKIP_LINE + "\n") and err.count("\n") == 1


def test_validate_warns_for_a_typed_count_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The fit check does not depend on where the count came from; offline, no Hub is asked."""
    path = spec_file(tmp_path, doc("meta-llama/Llama-3.3-70B-Instruct", parameters="70B"))
    assert main(["validate", "-f", str(path), "--offline"]) == 0
    assert "ModelFits=False (InsufficientGPUMemory)" in capsys.readouterr().err
