"""The real control plane and the operator process, as the e2e tests drive them."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


# kubectl's message when it cannot reach the apiserver at all.
UNREACHABLE = "Unable to connect to the server"


@dataclass
class Cluster:
    kubeconfig: str
    kubectl_path: str
    started_here: bool = False
    env: dict[str, str] = field(default_factory=dict)

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        for attempt in range(3):
            result = subprocess.run(
                [self.kubectl_path, "--kubeconfig", self.kubeconfig, *args],
                input=input, capture_output=True, text=True, timeout=timeout, env=self.env,
            )
            # A read that could not reach the apiserver is tried again: while engines load the 2 cores
            # of this machine, a TLS handshake can time out (seen once). Writes are never repeated.
            if not (result.returncode != 0 and args and args[0] == "get" and UNREACHABLE in result.stderr):
                break
            time.sleep(2 * (attempt + 1))
        if check and result.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}{result.stdout}"
            )
        return result

    def get_json(self, kind: str, name: str, namespace: str | None = None) -> dict | None:
        """The object as JSON, or None when it does not exist."""
        scope = ["-n", namespace] if namespace else []
        result = self.kubectl("get", kind, name, *scope, "-o", "json", check=False)
        return json.loads(result.stdout) if result.returncode == 0 else None

    @contextlib.contextmanager
    def fresh_namespace(self, prefix: str = "t") -> Iterator[str]:
        """A new namespace, ready for Pods, deleted (without waiting) afterwards."""
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.kubectl("create", "namespace", name)
        # The ServiceAccount controller creates `default` shortly after the namespace; Pods need it.
        self.wait_for(
            f"serviceaccount default in {name}",
            lambda: self.kubectl("get", "sa", "default", "-n", name, check=False).returncode == 0,
        )
        try:
            yield name
        finally:
            self.kubectl("delete", "namespace", name, "--wait=false", check=False)

    def wait_for(self, what: str, predicate, timeout: float = 60, interval: float = 0.5):
        """Poll `predicate()` until it returns a truthy value; fail with `what` on timeout."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = predicate()
            if last:
                return last
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")



def condition(obj: dict | None, type_: str) -> dict:
    """The status condition of `type_`, or {} when the object or the condition is missing."""
    for item in ((obj or {}).get("status") or {}).get("conditions") or []:
        if item["type"] == type_:
            return item
    return {}


# The session's operator serves only namespaces with this prefix, so tests of the bare API
# (printer columns, status patches) in `t-` namespaces never race a reconcile.
OPERATOR_NAMESPACE_PREFIX = "op"


class OperatorProcess:
    """`llm-operator run` as a real subprocess against the test cluster."""

    def __init__(self, cluster: Cluster, log_path: Path, extra_args: tuple[str, ...] = (),
                 env: dict[str, str] | None = None, namespaces: str = f"{OPERATOR_NAMESPACE_PREFIX}-*") -> None:
        self.cluster = cluster
        self.namespaces = namespaces
        self.log_path = log_path
        self.extra_args = extra_args
        self.env = {**cluster.env, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        executable = Path(os.environ.get("VIRTUAL_ENV", REPO_ROOT / ".venv")) / "bin" / "llm-operator"
        command = [str(executable) if executable.exists() else "llm-operator"]
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [*command, "run", "--namespace", self.namespaces,
             "--kubeconfig", self.cluster.kubeconfig, "--log-level", "info", "--resync-interval", "5",
             *self.extra_args],
            stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True,
        )

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, as when a node dies under the operator."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
