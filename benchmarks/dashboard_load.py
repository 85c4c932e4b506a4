"""Load on the operator app: N browser sessions on the Plant page of a live plant.

Starts a simulated CSTR (``twin plant serve``), a collector into a fresh historian (``twin
collect``) and the app (``twin dashboard``), all on free loopback ports; opens N pages of the
Plant page in Debian's Chromium (Playwright, never ``playwright install``) and, for
``--duration`` seconds, records in each page when the page was refreshed (the "updated"
time-stamp changes) and when the live value of the first CV changed. Meanwhile it samples the
CPU time of the Streamlit server process (psutil). Targets (issue 6): refreshes within the set
interval, and at most 10 % of a core per session.

    python benchmarks/dashboard_load.py --sessions 8 --duration 60 --refresh 2

Writes ``benchmarks/results/dashboard-load.json`` and ``.md`` (``--out`` changes the stem).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
CPU_TARGET = 0.10
"""cores per session, at most"""
# In each page: every 100 ms, note when the "updated" stamp or the first metric value changes.
WATCH_JS = """() => {
  window.__updates = []; window.__values = [];
  let lastU = null, lastV = null;
  setInterval(() => {
    for (const el of document.querySelectorAll('[data-testid="stCaptionContainer"]')) {
      const m = el.innerText.match(/updated (\\S+)/);
      if (m) {
        if (m[1] !== lastU) { lastU = m[1]; window.__updates.push([Date.now(), m[1]]); }
        break;
      }
    }
    const v = document.querySelector('[data-testid="stMetricValue"]');
    if (v && v.innerText !== lastV) { lastV = v.innerText; window.__values.push(Date.now()); }
  }, 100);
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(name: str, folder: Path, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
    """``twin ARGS`` with its output in ``folder/name.log``."""
    log = folder / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "twin.cli", *args], cwd=REPO, stdout=out,
            stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    return proc, log


def wait_for(log: Path, pattern: str, proc: subprocess.Popen[bytes], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        found = re.search(pattern, log.read_text(errors="replace"))
        if found:
            return found.group(1)
        time.sleep(0.2)
    raise SystemExit(f"{proc.args} did not log {pattern!r}:\n{log.read_text(errors='replace')}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def cpu_seconds(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


def server_seconds(text: str) -> float:
    """Seconds of the day of an ``HH:MM:SS.d`` stamp the server rendered."""
    h, m, sec = text.split(":")
    return int(h) * 3600 + int(m) * 60 + float(sec)


def browser_cores(pids: list[psutil.Process], before: dict[int, float]) -> float:
    """CPU seconds of Chromium's processes since ``before`` (processes gone since are lost)."""
    total = 0.0
    for p in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += cpu_seconds(p) - before.get(p.pid, 0.0)
    return total


def intervals(stamps: list[list[float]], skip: int = 1) -> np.ndarray:
    """Seconds between successive stamps of each page (the first ``skip`` dropped), pooled."""
    out = [np.diff(np.asarray(s[skip:], dtype=float)) / 1000 for s in stamps if len(s) > skip + 1]
    return np.concatenate(out) if out else np.empty(0)


def summary(a: np.ndarray) -> dict[str, float | int | None]:
    if not a.size:
        return {"n": 0, "median": None, "p95": None, "max": None}
    return {
        "n": int(a.size),
        "median": round(float(np.median(a)), 3),
        "p95": round(float(np.percentile(a, 95)), 3),
        "max": round(float(a.max()), 3),
    }


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from playwright.sync_api import expect, sync_playwright

    from connectors.sim.plants import make_plant
    from connectors.sim.record import record

    historian = work / "historian"
    begin = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=20)
    record(make_plant("cstr", seed=3), 1 / 3, historian, seed=3, start=begin, progress=False)
    procs = []
    try:
        plant, plant_log = start("plant", work, "plant", "serve", "cstr", "--port",
                                 str(free_port()), "--speed", str(args.speed))  # fmt: skip
        procs.append(plant)
        url = wait_for(plant_log, r"serving \S+ at (opc\.tcp://\S+)", plant, 90)
        collect, _ = start("collect", work, "collect", "--spec", "cstr", "--endpoint", url,
                           "--historian", str(historian), "--flush-every", "1")  # fmt: skip
        procs.append(collect)
        app_args = ["dashboard", "--historian", str(historian), "--port", "0", "--refresh",
                    f"{args.refresh:g}"] + (["--model", str(args.model)] if args.model else
                    ["--spec", "cstr"])  # fmt: skip
        app, app_log = start("dashboard", work, *app_args)
        procs.append(app)
        base = wait_for(app_log, r"twin dashboard: (http://\S+)", app, 90)
        (server,) = psutil.Process(app.pid).children()
        time.sleep(3)
        idle0, t_idle = cpu_seconds(server), time.monotonic()
        time.sleep(args.idle)
        idle_cores = (cpu_seconds(server) - idle0) / (time.monotonic() - t_idle)

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            pages = []
            for _ in range(args.sessions):
                page = browser.new_context(viewport={"width": 1280, "height": 1400}).new_page()
                page.goto(base)
                pages.append(page)
            for page in pages:
                expect(page.get_by_text(re.compile(r"updated \d"))).to_be_visible(timeout=120_000)
                page.evaluate(WATCH_JS)
            time.sleep(args.warmup)
            chrome = [
                p for p in psutil.Process().children(recursive=True) if "chrom" in p.name().lower()
            ]
            chrome0 = {p.pid: cpu_seconds(p) for p in chrome}
            c0, t0 = cpu_seconds(server), time.monotonic()
            samples = []
            while time.monotonic() - t0 < args.duration:
                time.sleep(1.0)
                samples.append(server.cpu_percent(None))
            wall = time.monotonic() - t0
            cores = (cpu_seconds(server) - c0) / wall
            chrome_cores = browser_cores(chrome, chrome0) / wall
            updates = [p.evaluate("window.__updates") for p in pages]
            values = [p.evaluate("window.__values") for p in pages]
            shot = work / "plant-under-load.png"
            pages[0].screenshot(path=str(shot))
            browser.close()
    finally:
        for proc in reversed(procs):
            stop(proc)
    refresh = intervals([[t for t, _ in u] for u in updates])
    rendered = intervals([[1000 * server_seconds(s) for _, s in u] for u in updates])
    per_session = cores / args.sessions
    marginal = (cores - idle_cores) / args.sessions
    refresh_ok = (
        bool(refresh.size)
        and float(np.median(refresh)) <= 1.1 * args.refresh
        and (float(np.percentile(refresh, 95)) <= 1.5 * args.refresh)
    )
    return {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "sessions": args.sessions,
        "duration_s": round(wall, 1),
        "refresh_set_s": args.refresh,
        "plant_speed": args.speed,
        "cpu_count": psutil.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "server_cores_idle": round(idle_cores, 4),
        "server_cores": round(cores, 4),
        "server_cpu_percent_samples": samples,
        "cores_per_session": round(per_session, 4),
        "marginal_cores_per_session": round(marginal, 4),
        "browser_cores": round(chrome_cores, 3),
        "refresh_interval_s": summary(refresh),
        "rendered_interval_s": summary(rendered),
        "value_change_interval_s": summary(intervals(values)),
        "refreshes_per_session": [len(u) for u in updates],
        "note": "refresh interval: as the pages saw the refreshes (browser clock); rendered "
        "interval: between the server's 'updated' stamps",
        "targets": {
            "cores_per_session_max": CPU_TARGET,
            "cpu_ok": per_session <= CPU_TARGET,
            "refresh_ok": refresh_ok,
            "refresh_rule": "median <= 1.1 x set interval and p95 <= 1.5 x set interval",
        },
    }


def markdown(r: dict[str, Any]) -> str:
    ri, vi = r["refresh_interval_s"], r["value_change_interval_s"]
    rr = r["rendered_interval_s"]
    t = r["targets"]
    return "\n".join([
        "# Operator app under load: Plant page", "",
        f"{r['sessions']} Chromium sessions on the Plant page for {r['duration_s']} s, refresh set "
        f"to {r['refresh_set_s']:g} s, live CSTR at speed x{r['plant_speed']:g}; "
        f"{r['cpu_count']} CPUs, 1-min load average {r['load_average_1min']} at the end "
        f"({r['created']}).", "",
        "| measure | value | target |", "|---|---|---|",
        f"| server CPU, all sessions | {r['server_cores']:.3f} cores | |",
        f"| server CPU, no session | {r['server_cores_idle']:.3f} cores | |",
        f"| CPU per session | {r['cores_per_session']:.3f} cores | <= {CPU_TARGET:.2f} "
        f"({'met' if t['cpu_ok'] else 'NOT met'}) |",
        f"| refresh interval median / p95 / max | {ri['median']} / {ri['p95']} / {ri['max']} s "
        f"(n={ri['n']}) | {t['refresh_rule']} ({'met' if t['refresh_ok'] else 'NOT met'}) |",
        f"| server-rendered interval median / p95 | {rr['median']} / {rr['p95']} s | |",
        f"| live value change interval median / p95 | {vi['median']} / {vi['p95']} s | new "
        "data about every sample (6 s / speed) |",
        f"| Chromium, all {r['sessions']} pages | {r['browser_cores']:.2f} cores | |", "",
    ])  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sessions", type=int, default=8)
    p.add_argument("--duration", type=float, default=60.0, help="measured seconds")
    p.add_argument("--refresh", type=float, default=2.0, help="Plant page refresh, s")
    p.add_argument("--speed", type=float, default=3.0, help="plant speed (x real time)")
    p.add_argument("--warmup", type=float, default=5.0)
    p.add_argument("--idle", type=float, default=10.0, help="seconds measured with no session")
    p.add_argument("--model", type=Path, default=REPO / "data" / "models" / "cstr")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "dashboard-load")
    args = p.parse_args()
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} is not installed (make browser)")
    with tempfile.TemporaryDirectory(prefix="dashboard-load-") as tmp:
        result = run(args, Path(tmp))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    text = markdown(result)
    args.out.with_suffix(".md").write_text(text)
    print(text)
    return 0 if result["targets"]["cpu_ok"] and result["targets"]["refresh_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
