"""Handing a burst's memory back: the C allocator and glibc's malloc_trim."""

from __future__ import annotations

import sys

import pytest

from llm_operator import cli
from llm_operator.controller.memory import TrimLoop


def test_run_re_executes_itself_on_the_c_allocator_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.delenv("PYTHONMALLOC", raising=False)
    monkeypatch.setattr(cli.os, "execv", lambda path, argv: calls.append((path, argv)))
    monkeypatch.setattr(sys, "argv", ["llm-operator", "run", "--all-namespaces"])
    cli._use_the_c_allocator()
    assert calls == [(sys.executable, [sys.executable, "-m", "llm_operator", "run", "--all-namespaces"])]
    assert cli.os.environ["PYTHONMALLOC"] == "malloc"
    cli._use_the_c_allocator()  # the re-executed process: set, so it runs on
    assert len(calls) == 1


def test_an_explicit_pythonmalloc_opts_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONMALLOC", "pymalloc")
    monkeypatch.setattr(cli.os, "execv", lambda *_: pytest.fail("must not re-exec"))
    cli._use_the_c_allocator()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc")
def test_the_trim_loop_finds_glibc_and_stops() -> None:
    loop = TrimLoop(interval=0.01)
    assert loop.trim is not None and loop.trim(0) in (0, 1)
    loop.start()
    loop.stopped.set()
    loop.join(timeout=5)
    assert not loop.is_alive()
