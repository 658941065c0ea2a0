from __future__ import annotations

import uuid

import pytest

from tests.harness import Proc


@pytest.fixture
def spawn(bus, tmp_path):
    """Start `evbus` subcommands as real processes for this test; stop them (SIGTERM) afterwards."""
    procs: list[Proc] = []

    def start(*args: str, name: str = "proc", env: dict | None = None, ready: str | None = None,
              module: str = "router.cli") -> Proc:
        proc = Proc(bus, list(args), tmp_path, name, env, module)
        procs.append(proc)
        if ready:
            proc.wait_for_line(ready, timeout=60)
        return proc

    yield start
    for proc in procs:
        if proc.alive():
            proc.terminate()


@pytest.fixture
def start_router(spawn):
    def start(instance: str | None = None, **kw) -> Proc:
        return spawn("route", "--instance", instance or f"r-{uuid.uuid4().hex[:6]}", "--metrics-port", "0",
                     name="router", ready="routing events.*", **kw)
    return start
