"""Ingest benchmark: how much of what a bare asyncua subscription receives does the collector store.

For each rate: a load server (``benchmarks/loadserver.py serve``) with N Double tags updated at
that rate on 127.0.0.1; at the same time a bare counting client (``loadserver.py count``) and
``twin collect`` into a fresh historian, both on the same server with the same publishing
interval. CPU and RSS of the three processes are sampled with psutil every few seconds. Over one
window of source time (after a warm-up, before the end) the server's updates, the bare client's
notifications and the collector's stored rows (deduplicated on tag and ts) are compared.

Printed and written to ``benchmarks/results/ingest.{json,md}`` (``ingest-quick.*`` with
``--quick``): updates/s, notifications/s, stored/s, stored / bare, CPU % of each process, RSS
start / end / peak and its slope over the second half, and PASS / FAIL against the targets
(stored >= 90 % of bare; collector RSS slope over the second half below 1 MiB/min).

    .venv/bin/python benchmarks/ingest.py                       # 1,000 tags, 1 and 10 Hz, 5 min
    .venv/bin/python benchmarks/ingest.py --quick               # 60 s per rate
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import psutil
from tqdm import tqdm

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from loadserver import publishing_interval_s, write_spec  # noqa: E402

log = logging.getLogger("benchmarks.ingest")

RATIO_TARGET = 0.90
SLOPE_TARGET_MIB_MIN = 1.0
SAMPLE_S = 2.0
MIB = 1024 * 1024


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_file(path: Path, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} before it was ready")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} not written after {timeout} s")
        time.sleep(0.1)


def _read(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return {}


class Sampler:
    """CPU time and RSS of one process over time (psutil)."""

    def __init__(self, name: str, pid: int) -> None:
        self.name = name
        self.proc = psutil.Process(pid)
        self.rows: list[tuple[float, float, float]] = []  # (t, cpu seconds, rss bytes)

    def sample(self) -> None:
        try:
            with self.proc.oneshot():
                cpu = self.proc.cpu_times()
                rss = self.proc.memory_info().rss
        except psutil.Error:  # exited
            return
        self.rows.append((time.monotonic(), cpu.user + cpu.system, float(rss)))

    def summary(self, warmup_s: float) -> dict[str, float]:
        """Mean CPU % after the warm-up, RSS start / end / peak (MiB), RSS slope (MiB/min)."""
        if len(self.rows) < 2:
            return {}
        t = np.array([r[0] for r in self.rows])
        cpu = np.array([r[1] for r in self.rows])
        rss = np.array([r[2] for r in self.rows]) / MIB
        after = t >= t[0] + warmup_s
        if after.sum() < 2:
            after[:] = True
        ta, ca = t[after], cpu[after]
        half = t >= t[0] + (t[-1] - t[0]) / 2
        slope = float(np.polyfit(t[half] / 60, rss[half], 1)[0]) if half.sum() >= 3 else math.nan
        return {
            "cpu_pct": float(100 * (ca[-1] - ca[0]) / max(1e-9, ta[-1] - ta[0])),
            "rss_start_mib": float(rss[after][0]),
            "rss_end_mib": float(rss[-1]),
            "rss_peak_mib": float(rss.max()),
            "rss_slope_2nd_half_mib_per_min": slope,
        }


def _in_window(per_s: dict[str, int], t0: int, t1: int) -> int:
    return sum(n for k, n in per_s.items() if t0 <= int(k) < t1)


def _stored(historian: Path, t0: int, t1: int) -> tuple[int, int]:
    """Rows in the historian (unique on tag and ts): in total, and with ts in [t0, t1)."""
    files = list(historian.glob("**/*.parquet"))
    if not files:
        return 0, 0
    rows = (
        pl.scan_parquet(f"{historian}/**/*.parquet", hive_partitioning=True)
        .select("tag", "ts")
        .unique()
        .collect()
    )
    lo, hi = (datetime.fromtimestamp(x, UTC) for x in (t0, t1))
    inside = rows.filter((pl.col("ts") >= lo) & (pl.col("ts") < hi)).height
    return rows.height, inside


def _start(args: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as out:
        return subprocess.Popen(args, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)


def run_rate(n_tags: int, rate: float, duration: float, warmup: float, tmp: Path) -> dict[str, Any]:
    """One server, bare client and collector at ``rate`` Hz; returns the measured figures."""
    work = tmp / f"rate-{rate:g}"
    work.mkdir()
    spec = write_spec(work / "load.toml", n_tags, rate)
    port = free_port()
    endpoint = f"opc.tcp://127.0.0.1:{port}/load/"
    server_status, bare_status = work / "server.json", work / "bare.json"
    historian = work / "historian"
    loadserver = [sys.executable, str(HERE / "loadserver.py")]
    common = ["--tags", str(n_tags), "--rate", str(rate)]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        server = _start(
            [*loadserver, "serve", "--port", str(port), *common, "--status", str(server_status)],
            work / "server.log",
        )
        procs.append(server)
        _wait_file(server_status, server, timeout=120)
        started, load_start = time.time(), os.getloadavg()[0]
        bare = _start(
            [
                *loadserver,
                *("count", "--endpoint", endpoint, *common),
                *("--duration", str(duration), "--status", str(bare_status)),
            ],
            work / "bare.log",
        )
        collect = _start(
            [
                *(sys.executable, "-m", "twin.cli", "collect", "--spec", str(spec)),
                *("--endpoint", endpoint, "--historian", str(historian)),
                *("--duration", str(duration), "--log-every", "10"),
                *("--publishing-interval", str(publishing_interval_s(rate))),
            ],
            work / "collect.log",
        )
        procs += [bare, collect]
        samplers = [
            Sampler("server", server.pid),
            Sampler("bare", bare.pid),
            Sampler("collector", collect.pid),
        ]
        bar = tqdm(total=int(duration), desc=f"{n_tags} tags @ {rate:g} Hz", unit="s")
        while bare.poll() is None or collect.poll() is None:
            for s in samplers:
                s.sample()
            elapsed = time.time() - started
            if elapsed > duration + 120:
                raise TimeoutError(f"bare client or collector still running after {elapsed:.0f} s")
            bar.n = min(int(duration), int(elapsed))
            got = _read(bare_status).get("notifications", 0)
            bar.set_postfix(bare_per_s=f"{got / max(1.0, elapsed):.0f}", refresh=False)
            bar.refresh()
            time.sleep(SAMPLE_S)
        bar.close()
        ended = time.time()
        for s in samplers[:1]:
            s.sample()
    finally:
        _stop(procs)
    t0, t1 = math.ceil(started + warmup), math.floor(started + duration - 2)
    window = max(1, t1 - t0)
    srv, bare_data = _read(server_status), _read(bare_status)
    produced = _in_window(srv.get("per_s", {}), t0, t1)
    received = _in_window(bare_data.get("per_s", {}), t0, t1)
    stored_total, stored = _stored(historian, t0, t1)
    result: dict[str, Any] = {
        "tags": n_tags,
        "rate_hz": rate,
        "duration_s": duration,
        "wall_s": ended - started,
        "window_s": window,
        "publishing_interval_s": publishing_interval_s(rate),
        "target_updates_per_s": n_tags * rate,
        "server_updates_per_s": produced / window,
        "server_late_ticks": srv.get("late_ticks"),
        "server_ticks": srv.get("ticks"),
        "bare_notifications_per_s": received / window,
        "stored_per_s": stored / window,
        "ratio": stored / received if received else math.nan,
        "bare_notifications_total": bare_data.get("notifications"),
        "stored_total": stored_total,
        "bare_silent_at_end_s": ended - bare_data.get("last_notification_at", started),
        "collector_exit": collect.returncode,
        "loadavg_1min_start_end": [load_start, os.getloadavg()[0]],
        "collector_last_log": _last_line(work / "collect.log", "stopped:"),
        "processes": {s.name: s.summary(warmup) for s in samplers},
    }
    return result


def _last_line(path: Path, needle: str) -> str:
    lines = [ln for ln in path.read_text(errors="replace").splitlines() if needle in ln]
    return lines[-1].strip() if lines else ""


def verdicts(r: dict[str, Any]) -> dict[str, bool]:
    """PASS / FAIL of one rate against the issue's targets."""
    slope = r["processes"].get("collector", {}).get("rss_slope_2nd_half_mib_per_min", math.nan)
    return {
        "ratio >= 90 %": bool(r["ratio"] >= RATIO_TARGET),
        "collector RSS flat": bool(abs(slope) < SLOPE_TARGET_MIB_MIN),
    }


def markdown(results: list[dict[str, Any]], command: str) -> str:
    """The results as a markdown report."""
    out = [
        "# Ingest benchmark: collector vs bare asyncua subscription",
        "",
        f"`{command}` on {platform.node()} ({psutil.cpu_count()} CPUs), "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Rates over one window of source time "
        "(after the warm-up, before the end); stored rows deduplicated on (tag, ts).",
        "",
        "| tags | rate | window s | server upd/s (target) | bare notif/s | stored/s | "
        "stored/bare | ratio ≥ 90 % | RSS flat |",
        "|---:|---:|---:|---:|---:|---:|---:|:--:|:--:|",
    ]
    for r in results:
        v = verdicts(r)
        out.append(
            f"| {r['tags']} | {r['rate_hz']:g} Hz | {r['window_s']} | "
            f"{r['server_updates_per_s']:.0f} ({r['target_updates_per_s']:.0f}) | "
            f"{r['bare_notifications_per_s']:.0f} | {r['stored_per_s']:.0f} | "
            f"{100 * r['ratio']:.1f} % | {_pf(v['ratio >= 90 %'])} | "
            f"{_pf(v['collector RSS flat'])} |"
        )
    out += [
        "",
        "| rate | process | CPU % | RSS start MiB | RSS end MiB | RSS peak MiB | "
        "slope 2nd half MiB/min |",
        "|---:|:--|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        for name, p in r["processes"].items():
            if not p:
                continue
            out.append(
                f"| {r['rate_hz']:g} Hz | {name} | {p['cpu_pct']:.0f} | {p['rss_start_mib']:.0f} | "
                f"{p['rss_end_mib']:.0f} | {p['rss_peak_mib']:.0f} | "
                f"{p['rss_slope_2nd_half_mib_per_min']:+.2f} |"
            )
    out += ["", "Per rate: server ticks behind schedule, machine load, collector's own counters:"]
    for r in results:
        lo, hi = r["loadavg_1min_start_end"]
        out.append(
            f"- {r['rate_hz']:g} Hz: {r['server_late_ticks']} of {r['server_ticks']} ticks late; "
            f"load average {lo:.1f} -> {hi:.1f}; bare client silent for the last "
            f"{r['bare_silent_at_end_s']:.0f} s; collector: "
            f"{r['collector_last_log'].split(': ', 1)[-1] or '(no final log line)'}"
        )
    return "\n".join(out) + "\n"


def _pf(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> int:
    """Command line (see the module doc)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tags", type=int, default=1000, help="tags on the load server")
    parser.add_argument("--rates", type=float, nargs="+", default=[1.0, 10.0], help="Hz")
    parser.add_argument("--duration", type=float, default=300.0, help="seconds per rate")
    parser.add_argument("--warmup", type=float, default=15.0, help="seconds left out at start")
    parser.add_argument("--quick", action="store_true", help="60 s per rate")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="results folder")
    parser.add_argument(
        "--keep",
        type=Path,
        metavar="DIR",
        help="keep the logs and historians in DIR (a new folder)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    duration = 60.0 if args.quick else args.duration
    command = "python benchmarks/ingest.py " + " ".join(sys.argv[1:])
    results = []
    with tempfile.TemporaryDirectory(prefix="ingest-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for rate in args.rates:
            results.append(run_rate(args.tags, rate, duration, args.warmup, work))
            log.info("%g Hz: %s", rate, json.dumps(results[-1], default=str))
    report = markdown(results, command)
    print(report)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "ingest-quick" if args.quick else "ingest"
    (args.out / f"{stem}.md").write_text(report, encoding="utf-8")
    payload = {"command": command, "results": results, "verdicts": [verdicts(r) for r in results]}
    (args.out / f"{stem}.json").write_text(json.dumps(payload, indent=2), encoding="utf-8")
    ok = all(all(verdicts(r).values()) for r in results)
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
