"""A small OpenAI-compatible stand-in engine, for tests where an upstream must answer fast, fail or hang.

    python tests/e2e/standin.py --port 8001 --model tiny --name primary --mode ok|http500|slow [--delay S]

- `ok`: answers /v1/chat/completions (plain and streaming SSE) with "hello from <name>" after `--delay`
  seconds (default 0);
- `http500`: answers every completion with HTTP 500;
- `slow`: sleeps `--delay` seconds (default 60) before answering, longer than a router's timeout.

With `--api-key K`, completions without `Authorization: Bearer K` get 401 (a managed API's check).
Also /v1/models, /health, and /stats ({"requests": completions received, "in_flight": being answered}),
so a test can see that a router did (or did not) reach it. Listens on 127.0.0.1 only. Uses aiohttp, so
many slow requests can be open at once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid

from aiohttp import web


class StandIn:
    def __init__(self, model: str, name: str, mode: str, delay: float, api_key: str | None = None) -> None:
        self.model, self.name, self.mode, self.delay, self.api_key = model, name, mode, delay, api_key
        self.requests = 0
        self.in_flight = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/health", self.health)
        app.router.add_get("/stats", self.stats)
        return app

    async def health(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def stats(self, _: web.Request) -> web.Response:
        return web.json_response({"requests": self.requests, "in_flight": self.in_flight})

    async def models(self, _: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [
            {"id": self.model, "object": "model", "created": 0, "owned_by": "standin"},
        ]})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        if self.api_key and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return web.json_response({"error": {"message": "invalid api key", "type": "auth_error"}}, status=401)
        self.requests += 1
        self.in_flight += 1
        try:
            body = await request.json()
            if self.mode == "http500":
                return web.json_response({"error": {"message": f"{self.name} fails on purpose",
                                                    "type": "server_error"}}, status=500)
            if self.delay:
                await asyncio.sleep(self.delay)
            text = f"hello from {self.name}"
            ident = f"chatcmpl-{uuid.uuid4().hex[:12]}"
            created = int(time.time())
            model = body.get("model", self.model)
            if body.get("stream"):
                return await self._stream(request, ident, created, model, text)
            return web.json_response({
                "id": ident, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
            })
        finally:
            self.in_flight -= 1

    async def _stream(self, request: web.Request, ident: str, created: int, model: str,
                      text: str) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)

        def chunk(delta: dict, finish: str | None = None) -> bytes:
            data = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            return f"data: {json.dumps(data)}\n\n".encode()

        await response.write(chunk({"role": "assistant", "content": ""}))
        for word in text.split(" "):
            await response.write(chunk({"content": word + " "}))
        await response.write(chunk({}, "stop"))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", default="standin")
    parser.add_argument("--name", default="standin")
    parser.add_argument("--mode", choices=("ok", "http500", "slow"), default="ok")
    parser.add_argument("--delay", type=float, default=None)
    parser.add_argument("--api-key", default=None)
    args = parser.parse_args()
    delay = args.delay if args.delay is not None else (60.0 if args.mode == "slow" else 0.0)
    web.run_app(StandIn(args.model, args.name, args.mode, delay, args.api_key).app(), host="127.0.0.1", port=args.port,
                print=None, access_log=None)


if __name__ == "__main__":
    main()
