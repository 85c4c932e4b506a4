"""A node-opcua server for the tests: an OPC-UA stack not built on asyncua, run by Node.js.

    install()                                  # npm ci, once, if node_modules is missing
    with HeatedTank(port, pki_dir) as server:  # node server.js --port PORT, ready line awaited
        server.url                             # opc.tcp://127.0.0.1:PORT/heatedtank
        server.stop(); server.start()          # by its PID; the same port again

The server (``nodeopcua/server.js``, node-opcua pinned to 2.182.x by its lock file: later
releases need Node >= 22.13) serves a heated tank; see the header of server.js for its tags.
Node.js and npm are required, not optional: without them :func:`install` fails the test with
what to install (CI machines have Node 20), it never skips.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent / "nodeopcua"
NAMESPACE = "urn:process-twin:test:heated-tank"
#: the tags of server.js: measured (they change at every step), the failed sensor, the MV
MEASURED = ("Temperature", "Level", "InletFlow", "InletTemperature")
BAD_TAG = "JacketTemperature"
MV = "HeaterPower"
MV_START = 40.0
BAD_SENSOR_FAILURE = 0x808C0000
#: a first node-opcua start parses the standard nodeset (seconds) on a loaded 2-core machine
START_TIMEOUT = 60.0
MIN_NODE = 18


def _pinned_version() -> str:
    lock = json.loads((PACKAGE / "package-lock.json").read_text(encoding="utf-8"))
    return str(lock["packages"]["node_modules/node-opcua"]["version"])


def _installed_version() -> str | None:
    try:
        found = PACKAGE / "node_modules" / "node-opcua" / "package.json"
        return str(json.loads(found.read_text(encoding="utf-8"))["version"])
    except (OSError, ValueError, KeyError):
        return None


def node_tools() -> tuple[str, str]:
    """Paths of ``node`` and ``npm``; fails the test (never skips) when they are missing or old."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail(
            "the node-opcua integration tests need Node.js >= 18 with npm on PATH "
            f"(missing: {', '.join(n for n, p in (('node', node), ('npm', npm)) if p is None)}); "
            "install Node.js 20, e.g. `apt-get install nodejs npm`",
            pytrace=False,
        )
    version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30)
    major = re.match(r"v(\d+)\.", version.stdout.strip())
    if major is None or int(major.group(1)) < MIN_NODE:
        pytest.fail(
            f"the node-opcua tests need Node.js >= {MIN_NODE}; {node} is {version.stdout.strip()}",
            pytrace=False,
        )
    return node, npm


def install() -> str:
    """``npm ci`` in ``nodeopcua/`` unless node-opcua at the locked version is there; ``node``.

    The download cache is npm's own (``~/.npm``), so a clean clone installs from it when warm.
    """
    node, npm = node_tools()
    want = _pinned_version()
    if _installed_version() == want:
        return node
    run = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=PACKAGE,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if run.returncode != 0 or _installed_version() != want:
        pytest.fail(
            f"`npm ci` in {PACKAGE} failed (exit {run.returncode}); node-opcua {want} is needed "
            f"for these tests:\n{run.stderr[-3000:]}",
            pytrace=False,
        )
    return node


class HeatedTank:
    """``node server.js`` on 127.0.0.1:``port``: started, stopped and restarted by its PID.

    Its stdout is read by a thread: the ``ready`` line, and one ``written HeaterPower <value>``
    line for each value a client wrote (node-opcua's own word that the value changed).
    """

    def __init__(self, node: str, port: int, pki: Path, log: Path) -> None:
        self.node, self.port, self.pki, self.log = node, port, pki, log
        self.url = f"opc.tcp://127.0.0.1:{port}/heatedtank"
        self.proc: subprocess.Popen[str] | None = None
        self.ready_at: datetime | None = None
        """when the current process said it serves (UTC)"""
        self.started_at: datetime | None = None
        """when the current process was spawned (UTC): no sample of it is stamped earlier"""
        self.written: list[float] = []
        """values of the MV that clients wrote, in order, over every start"""
        self._reader: threading.Thread | None = None

    def start(self) -> HeatedTank:
        """Start the server; return once it prints its ready line (or fail with its output)."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.ready_at = None
        self.started_at = datetime.now(UTC)
        cmd = [self.node, "server.js", "--port", str(self.port), "--pki", str(self.pki)]
        proc = subprocess.Popen(
            cmd,
            cwd=PACKAGE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "NODE_NO_WARNINGS": "1"},
        )
        self.proc = proc
        ready = threading.Event()

        def read() -> None:  # drain stdout so the server never blocks on a full pipe
            assert proc.stdout is not None
            with open(self.log, "a", encoding="utf-8") as log:
                for line in proc.stdout:
                    log.write(line)
                    log.flush()
                    if line.startswith("ready "):
                        self.ready_at = datetime.now(UTC)
                        ready.set()
                    elif line.startswith(f"written {MV} "):
                        self.written.append(float(line.split()[-1]))
            ready.set()

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        ready.wait(START_TIMEOUT)
        if self.ready_at is None:
            self.stop()
            out = self.log.read_text(encoding="utf-8")[-3000:]
            raise AssertionError(f"`{' '.join(cmd)}` did not print its ready line:\n{out}")
        return self

    def stop(self, timeout: float = 10.0) -> datetime:
        """SIGTERM (node-opcua shuts down), SIGKILL if it lingers; when it was gone (UTC)."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        gone = datetime.now(UTC)
        if self._reader is not None:
            self._reader.join(5)
        return gone

    def wait_written(self, value: float, timeout: float = 5.0) -> bool:
        """True once the server said the MV changed to ``value``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if value in self.written:
                return True
            time.sleep(0.05)
        return False

    def __enter__(self) -> HeatedTank:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self.stop()
