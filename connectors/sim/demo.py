"""``twin demo``: the whole product on a simulated plant, started and stopped with one command.

What it starts, all on 127.0.0.1:

1. a simulated plant (the CSTR by default) served over OPC-UA from this process, after filling a
   fresh historian with the last ``--prefill-minutes`` of the same plant's history (recorded by
   the simulator in a second), so the twin has its window of past samples at once;
2. a trained twin: the small one shipped in ``data/models/<plant>`` (say so), or with ``--train``
   one trained here on 24 h of recorded data (about 2 minutes, with a progress bar);
3. ``twin run``: the collector and the advisory control loop (a child process), which stores
   every sample in the historian and logs a recommendation every sample period;
4. ``twin dashboard``: the operator app (a child process), whose URL is printed.

Ctrl-C (SIGINT) or SIGTERM stops the children first (each exits cleanly on SIGINT), then the
plant server. The children's logs go to ``<workdir>/logs/``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from twin.errors import TwinError

if TYPE_CHECKING:
    from connectors.sim.base import SimPlant
    from connectors.sim.server import PlantServer

log = logging.getLogger(__name__)

#: where the shipped models live (``data/models/<plant>``)
MODELS_DIR = Path(__file__).resolve().parents[2] / "data" / "models"
#: how long a child may take to stop after SIGINT before its process group is killed
STOP_TIMEOUT_S = 30.0
#: how long the app may take to answer its first HTTP request
APP_START_TIMEOUT_S = 90.0


def register(sub: argparse._SubParsersAction) -> None:
    from twin.cli.args import positive_float

    p = sub.add_parser(
        "demo",
        help="run the whole product on a simulated plant: plant, collector, twin, MPC, app",
        description="Serve a simulated plant over OPC-UA, collect it into a fresh historian, "
        "load (or --train) a twin, run the advisory control loop and the operator app, all on "
        "127.0.0.1. Prints the app's URL; Ctrl-C stops everything it started.",
    )
    p.add_argument("--plant", default="cstr", help="built-in plant (see `twin plant list`)")
    p.add_argument(
        "--model", type=Path, help="twin folder (default: the shipped data/models/<plant>)"
    )
    p.add_argument(
        "--train",
        action="store_true",
        help="record 24 h of the plant and train a twin here (~2 min) instead of loading one",
    )
    p.add_argument(
        "--workdir",
        type=Path,
        default=Path("runs/demo"),
        help="folder for this run's historian, model and logs (default runs/demo)",
    )
    p.add_argument("--app-port", type=int, default=8501, help="port of the app (0: a free one)")
    p.add_argument("--opcua-port", type=int, default=0, help="plant server port (0: a free one)")
    p.add_argument(
        "--prefill-minutes",
        type=positive_float,
        default=60.0,
        help="minutes of simulated history written before the plant goes live (default 60)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the plant's noise and moves")
    p.add_argument(
        "--duration",
        type=positive_float,
        default=None,
        help="stop after S seconds (default: Ctrl-C)",
    )
    p.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from connectors.sim.cli import quiet_asyncua
    from connectors.sim.plants import make_plant

    plant = make_plant(args.plant, seed=args.seed)  # an unknown name exits 2 via twin.cli
    quiet_asyncua(args)
    run_dir = args.workdir.resolve() / datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    historian, logs = run_dir / "historian", run_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    model = _model(args, plant, run_dir)
    print(f"run folder: {run_dir}", flush=True)

    prefill(plant, historian, minutes=args.prefill_minutes, seed=args.seed)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with serve_in_thread(plant, port=args.opcua_port) as server:
        print(f"plant {args.plant!r} served at {server.endpoint}", flush=True)
        children = {
            "loop": _start(
                [
                    *("run", "--spec", args.plant, "--endpoint", server.endpoint),
                    *("--model", str(model), "--historian", str(historian)),
                ],
                logs / "loop.log",
            ),
            "app": _start(
                [
                    *("dashboard", "--historian", str(historian), "--model", str(model)),
                    *("--port", str(args.app_port)),
                ],
                logs / "app.log",
            ),
        }
        try:
            url = _wait_for_app(children["app"], logs / "app.log", stop)
            if url:
                print(f"operator app: {url}  (Ctrl-C stops the demo)", flush=True)
            return _supervise(children, logs, stop, args.duration)
        finally:
            _stop_all(children)
            print("stopped: plant, collector and control loop, app", flush=True)


def _model(args: argparse.Namespace, plant: SimPlant, run_dir: Path) -> Path:
    """The twin folder to use: --model, a fresh one (--train), or the shipped one."""
    if args.train:
        return train_demo_twin(args.plant, run_dir, seed=args.seed)
    model: Path = args.model or MODELS_DIR / args.plant
    if not (model / "model.pt").is_file():
        raise TwinError(
            f"no trained twin at {model}: pass --model DIR, or --train to train one here (~2 min)"
        )
    if args.model is None:
        print(
            f"twin: the small model shipped in {model} (trained on 24 h of simulated "
            f"{args.plant} data; see data/models/README.md). --train trains one here instead.",
            flush=True,
        )
    return model


def train_demo_twin(plant_name: str, run_dir: Path, *, seed: int) -> Path:
    """Record 24 h of the plant and train a twin on it (progress bars on the terminal)."""
    from connectors.sim.plants import make_plant
    from connectors.sim.record import DEFAULT_START, record
    from twin.model.network import TwinConfig
    from twin.model.twin import Twin
    from twin.store.historian import Historian

    t0 = time.perf_counter()
    train_hist = run_dir / "training-data"
    recorder = make_plant(plant_name, seed=seed + 1)
    summary = record(recorder, 24.0, train_hist, seed=seed + 1)
    frame = Historian(train_hist).frame(
        recorder.spec, DEFAULT_START, DEFAULT_START + timedelta(hours=24)
    )
    twin = Twin.fit(recorder.spec, frame, TwinConfig(minutes=1.5, seed=seed))
    out = twin.save(run_dir / "model")
    print(
        f"twin: trained here on {summary.samples} samples in {time.perf_counter() - t0:.0f} s "
        f"-> {out}",
        flush=True,
    )
    return out


def prefill(plant: SimPlant, historian_dir: Path, *, minutes: float, seed: int) -> None:
    """Write the plant's last ``minutes`` of (simulated) history, ending now, to the historian."""
    from connectors.sim.record import record

    period = plant.spec.sample_period
    steps = max(1, round(minutes * 60.0 / period))
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(seconds=steps * period)
    summary = record(plant, steps * period / 3600.0, historian_dir, seed=seed, start=start)
    print(
        f"historian: {historian_dir} (pre-filled with {summary.samples} simulated samples, "
        f"the last {minutes:g} min)",
        flush=True,
    )


@contextlib.contextmanager
def serve_in_thread(plant: SimPlant, *, port: int = 0) -> Iterator[PlantServer]:
    """Serve ``plant`` on 127.0.0.1 from a background thread with its own event loop."""
    from connectors.sim.server import PlantServer

    loop = asyncio.new_event_loop()
    started, servers, errors = threading.Event(), [], []
    stop = asyncio.Event()

    async def main() -> None:
        try:
            async with PlantServer(plant, port=port) as server:
                servers.append(server)
                started.set()
                await stop.wait()
        except Exception as exc:  # handed to the caller below
            errors.append(exc)
        finally:
            started.set()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    started.wait(60.0)
    if errors or not servers:
        raise TwinError(f"the plant server did not start: {errors[0] if errors else 'timeout'}")
    try:
        yield servers[0]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(15.0)


def _start(argv: list[str], logfile: Path) -> subprocess.Popen[bytes]:
    """Start ``python -m twin ARGV`` in its own process group, output in ``logfile``.

    Its own group, so that a child that hangs can be killed with everything it started (the app
    runs Streamlit under it); Ctrl-C reaches the children through :func:`_stop_all`.
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with logfile.open("ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "twin", *argv],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )


def _wait_for_app(app: subprocess.Popen[bytes], logfile: Path, stop: threading.Event) -> str | None:
    """The app's URL once it answers HTTP (read from its log); None if it died or we stop."""
    deadline = time.monotonic() + APP_START_TIMEOUT_S
    while time.monotonic() < deadline and not stop.is_set() and app.poll() is None:
        url = _url_in(logfile)
        if url:
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(url + "/_stcore/health", timeout=2) as resp,
            ):
                if resp.status == 200:
                    return url
        time.sleep(0.5)
    return None


def _url_in(logfile: Path) -> str | None:
    for line in logfile.read_text(errors="replace").splitlines():
        for word in line.split():
            if word.startswith("http://127.0.0.1:"):
                return word.rstrip("/.,")
    return None


def _supervise(
    children: dict[str, subprocess.Popen[bytes]],
    logs: Path,
    stop: threading.Event,
    duration: float | None,
) -> int:
    """Wait for Ctrl-C or ``duration``; a child that dies on its own ends the demo with 1."""
    deadline = None if duration is None else time.monotonic() + duration
    while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
        for name, child in children.items():
            if child.poll() is not None:
                tail = (logs / f"{name}.log").read_text(errors="replace").splitlines()[-15:]
                print(
                    f"the {name} process exited with {child.returncode}; its log ends:\n  "
                    + "\n  ".join(tail),
                    file=sys.stderr,
                    flush=True,
                )
                return 1
        stop.wait(0.5)
    return 0


def _stop_all(children: dict[str, subprocess.Popen[bytes]]) -> None:
    """SIGINT to every child still running, then wait; kill the group of one that hangs."""
    for child in children.values():
        if child.poll() is None:
            child.send_signal(signal.SIGINT)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for name, child in children.items():
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %.0f s: killed", name, STOP_TIMEOUT_S)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()
        with contextlib.suppress(ProcessLookupError):  # nothing it started may outlive it
            os.killpg(child.pid, signal.SIGKILL)
