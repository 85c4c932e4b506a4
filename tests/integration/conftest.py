"""Fixtures for tests against real OPC-UA servers on 127.0.0.1: free ports, plant servers.

A plant server runs either in this process (:func:`plant_server_thread`: its own event loop in a
background thread, so a test can reach into the plant) or as a real ``twin plant serve``
subprocess (:func:`serve_cli`: the command line, signals and exit code as a user sees them).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from connectors.sim.base import SimPlant
from connectors.sim.plants import make_plant
from connectors.sim.server import PlantServer

REPO = Path(__file__).resolve().parents[2]
#: how long a server may take to come up on a loaded 2-core CI machine
START_TIMEOUT = 60.0


@pytest.fixture
def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def plant_server_thread(plant: SimPlant, speed: float, **options: Any) -> Iterator[PlantServer]:
    """Serve ``plant`` on a free loopback port from a background thread; stop it on exit.

    ``options`` go to :class:`PlantServer` (e.g. ``security=ServerSecurity(...)``).
    """
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    started = threading.Event()
    servers: list[PlantServer] = []
    errors: list[BaseException] = []

    async def main() -> None:
        try:
            async with PlantServer(plant, port=0, speed=speed, **options) as server:
                servers.append(server)
                started.set()
                await stop.wait()
        except Exception as exc:  # handed to the test thread below
            errors.append(exc)
        finally:
            started.set()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    try:
        assert started.wait(START_TIMEOUT), "plant server did not start"
        if errors:
            raise RuntimeError(f"plant server {plant.name} failed to start") from errors[0]
        yield servers[0]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(20)
        loop.close()


@dataclass
class CliServer:
    """A ``twin plant serve`` subprocess: its endpoint once ready, and its stderr so far."""

    proc: subprocess.Popen[str]
    url: str = ""
    lines: list[str] = field(default_factory=list)

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def interrupt(self, timeout: float = 20.0) -> int:
        """Ctrl-C: send SIGINT and return the exit code."""
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout)


@contextlib.contextmanager
def serve_cli(plant: str, port: int, *args: str) -> Iterator[CliServer]:
    """Run ``twin plant serve PLANT --port PORT ARGS``; yield once it logs its endpoint."""
    cmd = [sys.executable, "-m", "twin.cli", "plant", "serve", plant, "--port", str(port), *args]
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    server = CliServer(proc)
    ready = threading.Event()

    def read() -> None:  # drain stderr so the child never blocks on a full pipe
        assert proc.stderr is not None
        for line in proc.stderr:
            server.lines.append(line)
            found = re.search(r"serving \S+ at (opc\.tcp://\S+)", line)
            if found:
                server.url = found.group(1)
                ready.set()
        ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        ready.wait(START_TIMEOUT)
        assert server.url, f"`{' '.join(cmd)}` did not come up:\n{server.stderr}"
        yield server
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        reader.join(5)


@pytest.fixture
def plant_server() -> object:
    """``plant_server(plant, speed)``: a context manager serving ``plant`` in this process."""
    return plant_server_thread


@pytest.fixture
def plant_cli() -> object:
    """``plant_cli(name, port, *args)``: a context manager running ``twin plant serve``."""
    return serve_cli


@pytest.fixture(scope="module")
def plant_servers() -> Iterator[Callable[[str], PlantServer]]:
    """``plant_servers(name)``: built-in plant ``name`` served in this process, one per module.

    Each runs a step every 50 ms of wall time (speed = sample period / 0.05 s) and is started on
    first use, then shared by the module's tests: an asyncua server takes seconds to start.
    """
    with contextlib.ExitStack() as stack:
        servers: dict[str, PlantServer] = {}

        def get(name: str) -> PlantServer:
            if name not in servers:
                plant = make_plant(name, seed=1)
                speed = plant.spec.sample_period / 0.05
                servers[name] = stack.enter_context(plant_server_thread(plant, speed))
            return servers[name]

        yield get
