"""A stand-in Hugging Face Hub on 127.0.0.1: the model info API and file downloads of the repos in
tests/support/hub_fixtures, answered as the Hub answers (we cannot reach the real one from here).

- `GET /api/models/{repo}[/revision/{rev}]` returns `{repo}/info.json`.
- `GET /{repo}/resolve/{rev}/{file}` returns `{repo}/files/{file}`; a `{file}.header.json` fixture is a
  safetensors header, served as the file `{file}`: 8-byte little-endian length, the header, zero-filled data.
  Range requests get 206 and the bytes asked for. Like the Hub, a safetensors file (an LFS file) is
  a 302 to a CDN host, here `localhost` on the same port, which answers 400 to a request that still
  carries an Authorization header (as S3 does to a presigned URL with a second kind of auth).
- Revisions: `main`, the info's `sha` and those add_repo names; others are 404 with `X-Error-Code: RevisionNotFound`.
- Access, from info.json as on the Hub: `"private": true` needs `token` for everything, `"gated"` for
  the files (401 without a token, 403 with `no_access_token`, a valid token without access). An unknown
  repo is 401 without a token, 404 with one; any other token is 401 "Invalid credentials".

Every request is recorded in `.requests` (method, path, headers) for the tests to check.
"""

from __future__ import annotations

import contextlib
import json
import math
import struct
import threading
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent / "hub_fixtures"
TOKEN = "hf_standinValidToken0123456789"
NO_ACCESS_TOKEN = "hf_standinNoAccessToken012345"
DTYPE_BYTES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1,
    "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
}


def safetensors_header(tensors: dict[str, tuple[str, list[int]]], metadata: dict[str, str] | None = None) -> dict:
    """A safetensors header for `tensors` (name -> dtype, shape), their data laid out one after another."""
    header: dict[str, Any] = {"__metadata__": metadata} if metadata else {}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        size = math.prod(shape) * DTYPE_BYTES[dtype]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    return header


def safetensors_bytes(header: dict) -> bytes:
    """A safetensors file with `header` and zero-filled data: the 8-byte little-endian header length, the
    JSON header padded with spaces to 8-byte alignment (as the safetensors library writes it), the data."""
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    return struct.pack("<Q", len(text)) + text + bytes(end)


@dataclass
class Repo:
    info: dict[str, Any]
    files: dict[str, bytes]
    revisions: frozenset[str] = frozenset()
    """Branches and tags besides main and the info's sha."""

    @property
    def sha(self) -> str:
        return str(self.info.get("sha", ""))


def load_repos(root: Path = FIXTURES) -> dict[str, Repo]:
    repos: dict[str, Repo] = {}
    for info_path in sorted(root.glob("**/info.json")):
        files: dict[str, bytes] = {}
        folder = info_path.parent / "files"
        for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
            if path.is_dir():
                continue
            name = path.relative_to(folder).as_posix()
            if name.endswith(".header.json"):
                files[name.removesuffix(".header.json")] = safetensors_bytes(json.loads(path.read_text()))
            else:
                files[name] = path.read_bytes()
        repos[info_path.parent.relative_to(root).as_posix()] = Repo(json.loads(info_path.read_text()), files)
    return repos


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]


class HubStandIn:
    def __init__(self, token: str = TOKEN, no_access_token: str = NO_ACCESS_TOKEN, cdn: bool = True) -> None:
        self.repos = load_repos()
        self.token, self.no_access_token, self.cdn = token, no_access_token, cdn
        self.ranges = True
        """False: answer Range requests with 200 and the whole file, as a server without range support does."""
        self.outage: int | None = None
        """A status (503, 429) to answer every request with."""
        self.requests: list[Seen] = []
        self._lock = threading.Lock()
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with standin._lock:
                    standin.requests.append(Seen("GET", self.path, dict(self.headers.items())))
                status, headers, body = standin.answer(self.path, self.headers.get("Authorization"),
                                                       self.headers.get("Range"))
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                # A client that read the header it needed may close before the rest of the file.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(body)

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add_repo(
        self, repo: str, info: dict[str, Any], files: dict[str, bytes] | None = None, revisions: tuple[str, ...] = ()
    ) -> None:
        self.repos[repo] = Repo(info, files or {}, frozenset(revisions))

    def paths(self) -> list[str]:
        with self._lock:
            return [seen.path.split("?")[0] for seen in self.requests]

    # --- routing ------------------------------------------------------------------------------

    def answer(self, raw_path: str, auth: str | None, byte_range: str | None) -> tuple[int, dict[str, str], bytes]:
        path = urllib.parse.unquote(raw_path.split("?")[0])
        if self.outage:
            return _error(self.outage, "", "Service unavailable")
        if not self.ranges:
            byte_range = None
        if path.startswith("/cdn/"):
            return self._cdn(path.removeprefix("/cdn/"), auth, byte_range)
        if path.startswith("/api/models/"):
            repo, _, revision = path.removeprefix("/api/models/").partition("/revision/")
            return self._info(repo, revision or "main", auth)
        if "/resolve/" in path:
            repo, _, rest = path.lstrip("/").partition("/resolve/")
            revision, _, filename = rest.partition("/")
            return self._resolve(repo, revision, filename, auth, byte_range)
        return _error(404, "", "Not found")

    def _denied(self, repo: Repo | None, auth: str | None, files: bool) -> tuple[int, dict[str, str], bytes] | None:
        token = auth.removeprefix("Bearer ") if auth else None
        if token is not None and token not in (self.token, self.no_access_token):
            return _error(401, "", "Invalid credentials in Authorization header")
        if repo is None or (repo.info.get("private") and token != self.token):
            return _error(401 if token is None else 404, "RepoNotFound", "Repository not found")
        if files and repo.info.get("gated") and token != self.token:
            return _error(401 if token is None else 403, "GatedRepo", "Access to this model is restricted")
        return None

    def _revision_error(self, repo: Repo, revision: str) -> tuple[int, dict[str, str], bytes] | None:
        if revision in ("main", repo.sha) or revision in repo.revisions:
            return None
        return _error(404, "RevisionNotFound", "Invalid rev id: " + revision)

    def _info(self, name: str, revision: str, auth: str | None) -> tuple[int, dict[str, str], bytes]:
        repo = self.repos.get(name)
        denied = self._denied(repo, auth, files=False)
        if denied or repo is None:
            return denied or _error(404, "RepoNotFound", "Repository not found")
        wrong = self._revision_error(repo, revision)
        if wrong:
            return wrong
        return 200, {"Content-Type": "application/json; charset=utf-8"}, json.dumps(repo.info).encode()

    def _resolve(
        self, name: str, revision: str, filename: str, auth: str | None, byte_range: str | None
    ) -> tuple[int, dict[str, str], bytes]:
        repo = self.repos.get(name)
        denied = self._denied(repo, auth, files=True)
        if denied or repo is None:
            return denied or _error(404, "RepoNotFound", "Repository not found")
        wrong = self._revision_error(repo, revision)
        if wrong:
            return wrong
        if filename not in repo.files:
            return _error(404, "EntryNotFound", f"{filename} does not exist on \"{revision}\"")
        if self.cdn and filename.endswith(".safetensors"):
            location = f"http://localhost:{self.port}/cdn/{name}/{filename}?X-Amz-Signature=standin"
            return 302, {"Location": location, "X-Repo-Commit": repo.sha}, b""
        return _ranged(repo.files[filename], byte_range, {"X-Repo-Commit": repo.sha})

    def _cdn(self, rest: str, auth: str | None, byte_range: str | None) -> tuple[int, dict[str, str], bytes]:
        if auth:
            return 400, {"Content-Type": "application/xml"}, b"<Error><Code>InvalidArgument</Code>" \
                b"<Message>Only one auth mechanism allowed</Message></Error>"
        for name, repo in self.repos.items():
            if rest.startswith(name + "/") and rest.removeprefix(name + "/") in repo.files:
                return _ranged(repo.files[rest.removeprefix(name + "/")], byte_range, {})
        return 404, {}, b"NoSuchKey"

    def __enter__(self) -> HubStandIn:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _error(status: int, code: str, message: str) -> tuple[int, dict[str, str], bytes]:
    headers = {"Content-Type": "application/json; charset=utf-8", "X-Error-Message": message}
    if code:
        headers["X-Error-Code"] = code
    return status, headers, json.dumps({"error": message}).encode()


def _ranged(data: bytes, byte_range: str | None, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    headers = {**headers, "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
    if not byte_range:
        return 200, headers, data
    first_text, _, last_text = byte_range.removeprefix("bytes=").partition("-")
    first = int(first_text)
    last = min(int(last_text) if last_text else len(data) - 1, len(data) - 1)
    if first >= len(data):
        return 416, {"Content-Range": f"bytes */{len(data)}"}, b""
    return 206, {**headers, "Content-Range": f"bytes {first}-{last}/{len(data)}"}, data[first:last + 1]
