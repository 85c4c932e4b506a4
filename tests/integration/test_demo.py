"""``twin demo`` as a user runs it: one command brings up plant, collector, twin, loop and app;
Ctrl-C (SIGINT) brings every process down cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from twin.store.historian import Historian

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
#: the app and the plant server each take a few seconds to start on a loaded 2-core machine
START_TIMEOUT_S = 120.0
PREFILL_MIN = 10  # 100 samples of the CSTR (6 s period) before the plant goes live


def read_until(proc: subprocess.Popen[str], marker: str, lines: list[str]) -> str:
    """Read the demo's stdout until a line holds ``marker``; fail with all it printed."""
    deadline = time.monotonic() + START_TIMEOUT_S
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip())
        if marker in line:
            return line
    raise AssertionError(f"no {marker!r} line; the demo printed:\n" + "\n".join(lines))


def test_demo_brings_everything_up_and_ctrl_c_stops_it(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "twin", "demo", "--workdir", str(tmp_path)),
            *("--app-port", "0", "--prefill-minutes", str(PREFILL_MIN)),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: list[str] = []
    try:
        assert "data/models/cstr" in read_until(proc, "twin:", lines)  # says which model
        app_line = read_until(proc, "operator app:", lines)
        url = app_line.split("operator app:")[1].split()[0]
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url, timeout=10) as resp:  # the app serves its page
            assert resp.status == 200
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 2  # the control loop and the app (and streamlit under it)

        run_dir = next(tmp_path.iterdir())
        recs = run_dir / "historian" / "recommendations"
        deadline = time.monotonic() + 60.0
        while time.monotonic() < deadline and not any(recs.glob("*.jsonl")):
            time.sleep(1.0)
        logged = [json.loads(x) for f in recs.glob("*.jsonl") for x in f.read_text().splitlines()]
        assert logged, "the control loop logged no recommendation within a minute"
        assert any(r["success"] for r in logged), logged[-1]

        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
        lines += out.splitlines()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    printed = "\n".join(lines)
    assert proc.returncode == 0, printed
    assert "did not stop" not in printed and "killed" not in printed, printed
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]

    # the live plant reached the historian after the pre-filled samples
    assert Historian(run_dir / "historian").read(["T"]).height > PREFILL_MIN * 10
