"""A stand-in exporter for metrics no process here can produce: DCGM's GPU utilization and
TGI's and SGLang's queues (there are no GPUs, and neither has a CPU build that runs here), or a
vLLM KV-cache level held at a chosen value. It serves Prometheus' text format with values the test sets at run time."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class MetricsStandIn:
    def __init__(self) -> None:
        self.values: dict[str, float] = {}
        self.raw: str | None = None
        """When set, served as is instead of the values (a fault test's garbage)."""
        self._lock = threading.Lock()
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = standin.render().encode()
                self.send_response(200 if self.path == "/metrics" else 404)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def set(self, **values: float) -> None:
        """Metric names may contain ':' and labels, so pass them via a dict:
        set(**{"vllm:x": 1, 'sglang:y{is_streaming="true"}': 2})."""
        with self._lock:
            self.values.update(values)

    def render(self) -> str:
        with self._lock:
            if self.raw is not None:
                return self.raw
            lines, typed = [], set()
            for series, value in sorted(self.values.items()):
                name = series.split("{", 1)[0]
                if name not in typed:
                    typed.add(name)
                    lines.append(f"# TYPE {name} gauge")
                lines.append(f"{series} {value}")
        return "\n".join(lines) + "\n"

    def __enter__(self) -> MetricsStandIn:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()
