"""Soak: 1,000 tags at 1 Hz for ten minutes through the collector, the historian and the app.

A load server (``benchmarks/loadserver.py serve``) updates N Double tags at RATE Hz on
127.0.0.1; ``twin collect`` stores them in a fresh historian (run through this script's
``collector`` subcommand, which only times each historian append) and a bare asyncua client
counts what any subscriber receives (``loadserver.py count``); meanwhile this process reads
the historian the way the app's Plant page does (``dashboards.data.recent_rows`` of every tag
over the last 10 minutes, under the folder's change stamp) every 2 s. psutil samples the RSS
and CPU of the collector, the server and this process every few seconds.

Printed and written to ``benchmarks/results/soak.{json,md}``: updates the server made vs rows
stored over one window of source time (dropped = the difference), the collector's own
counters, its RSS after the warm-up / in the middle / at the end, flush (append) durations,
app read times, and PASS / FAIL against the targets: no sample dropped, collector RSS growth
under 10 % after the warm-up.

    .venv/bin/python benchmarks/soak.py                  # 1,000 tags, 1 Hz, 10 minutes
    .venv/bin/python benchmarks/soak.py --minutes 1      # a quick look (written as soak-quick)
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from tqdm import tqdm

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]

from ingest import Sampler, _in_window, _last_line, _read, _start, _wait_file, free_port  # noqa: E402
from loadserver import publishing_interval_s, write_spec  # noqa: E402

log = logging.getLogger("benchmarks.soak")

RSS_GROWTH_TARGET = 0.10
SAMPLE_S = 5.0
MIB = 1024 * 1024


# --- the collector, with its appends timed -------------------------------------------------


def collector(timings: Path, argv: list[str]) -> int:
    """``twin collect ARGV`` in this process, each historian append timed into ``timings``."""
    import twin.cli
    import twin.store.historian

    rows: list[tuple[float, int, int, float]] = []  # (wall time, rows given, rows new, seconds)
    append = twin.store.historian.Historian.append
    dumped = [time.monotonic()]

    def dump() -> None:
        tmp = timings.with_suffix(".tmp")
        tmp.write_text(json.dumps(rows), encoding="utf-8")
        os.replace(tmp, timings)

    def timed(self: twin.store.historian.Historian, batch: pl.DataFrame) -> int:
        t0 = time.perf_counter()
        new = append(self, batch)
        rows.append((time.time(), batch.height, new, time.perf_counter() - t0))
        if time.monotonic() - dumped[0] > 10:
            dumped[0] = time.monotonic()
            dump()
        return new

    twin.store.historian.Historian.append = timed  # type: ignore[method-assign]
    try:
        return twin.cli.main(argv)
    finally:
        dump()


# --- the app's read path -------------------------------------------------------------------


def app_reader(historian: Path, tags: tuple[str, ...], minutes: float) -> Any:
    """A function that reads what the Plant page reads; returns the rows it got."""
    try:
        logging.getLogger("streamlit").setLevel(logging.ERROR)
        from dashboards import data
    except ImportError as exc:  # the app is optional here: read as it would
        log.warning("dashboards not importable (%s): reading Historian.read directly", exc)
        from twin.store.historian import Historian

        hist = Historian(historian, auto_compact_files=0)
        return lambda: hist.read(list(tags), datetime.now(UTC) - timedelta(minutes=minutes)).height

    for name in ("streamlit", "streamlit.runtime.caching.cache_data_api"):
        logging.getLogger(name).setLevel(logging.ERROR)  # "no runtime found": none is wanted
    root = str(historian)
    return lambda: data.recent_rows(root, tags, minutes, data.stamp(historian)).height


# --- one soak run --------------------------------------------------------------------------


def soak(
    n_tags: int, rate: float, minutes: float, flush_every: float, app_every: float, work: Path
) -> dict[str, Any]:
    """Run server, collector and app reads for ``minutes``; return the measured figures."""
    duration = 60.0 * minutes
    warmup = max(30.0, 0.2 * duration)
    spec = write_spec(work / "load.toml", n_tags, rate)
    port = free_port()
    endpoint = f"opc.tcp://127.0.0.1:{port}/load/"
    server_status, timings = work / "server.json", work / "flushes.json"
    historian = work / "historian"
    common = ["--tags", str(n_tags), "--rate", str(rate)]
    serve = [sys.executable, str(HERE / "loadserver.py"), "serve", "--port", str(port)]
    server = _start([*serve, *common, "--status", str(server_status)], work / "server.log")
    procs = [server]
    try:
        _wait_file(server_status, server, timeout=180)
        load_start = os.getloadavg()[0]
        twin_collect = [
            *("collect", "--spec", str(spec), "--endpoint", endpoint),
            *("--historian", str(historian), "--flush-every", str(flush_every)),
            *("--log-every", "30", "--publishing-interval", str(publishing_interval_s(rate))),
        ]
        timed = [sys.executable, __file__, "collector", "--timings", str(timings), "--"]
        collect = _start([*timed, *twin_collect], work / "collect.log")
        procs.append(collect)
        # a bare asyncua subscription on the same server: what any client could have received
        bare_args = ["count", "--endpoint", endpoint, *common, "--duration", str(duration + 60)]
        bare = _start(
            [*serve[:2], *bare_args, "--status", str(work / "bare.json")], work / "bare.log"
        )
        procs.append(bare)
        while not list(historian.glob("day=*/*.parquet")):  # connected and flushing
            if collect.poll() is not None:
                raise RuntimeError(f"collector exited with {collect.returncode}: see {work}")
            time.sleep(0.2)
        started = time.time()
        read = app_reader(historian, tuple(spec_tags(n_tags)), 10.0)
        samplers = [
            Sampler("collector", collect.pid),
            Sampler("server", server.pid),
            Sampler("bare client", bare.pid),
            Sampler("app (this process)", os.getpid()),
        ]
        reads: list[tuple[float, float, int]] = []  # (elapsed, seconds, rows)
        failures: list[str] = []  # app reads that raised
        next_sample = 0.0
        bar = tqdm(total=int(duration), desc=f"soak {n_tags} tags @ {rate:g} Hz", unit="s")
        while (elapsed := time.time() - started) < duration:
            if collect.poll() is not None:
                raise RuntimeError(f"collector exited with {collect.returncode}: see {work}")
            if elapsed >= next_sample:
                for s in samplers:
                    s.sample()
                next_sample += SAMPLE_S
            t0 = time.perf_counter()
            try:
                got = read()
            except (OSError, pl.exceptions.PolarsError) as exc:  # counted, and reported
                failures.append(f"{elapsed:.0f} s: {type(exc).__name__}: {exc}")
                got = -1
            reads.append((elapsed, time.perf_counter() - t0, got))
            bar.n = int(elapsed)
            bar.set_postfix(read_ms=f"{1000 * reads[-1][1]:.0f}", rows=got, refresh=False)
            bar.refresh()
            time.sleep(max(0.0, app_every - (time.perf_counter() - t0)))
        bar.close()
        for s in samplers:
            s.sample()
        stopped = time.time()
        collect.send_signal(signal.SIGTERM)  # hands on and flushes what it holds
        collect.wait(timeout=120)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
    result = summarise(
        n_tags, rate, duration, warmup, started, stopped, work, samplers, reads, load_start
    )
    result["app_read_failures"] = failures
    return result


def spec_tags(n_tags: int) -> list[str]:
    from loadserver import tag_name

    return [tag_name(i) for i in range(1, n_tags + 1)]


def summarise(
    n_tags: int,
    rate: float,
    duration: float,
    warmup: float,
    started: float,
    stopped: float,
    work: Path,
    samplers: list[Sampler],
    reads: list[tuple[float, float, int]],
    load_start: float,
) -> dict[str, Any]:
    """The figures of one run, from the status and log files it left in ``work``."""
    t0, t1 = math.ceil(started + 5), math.floor(stopped - 1)  # whole seconds of source time
    produced = _in_window(_read(work / "server.json").get("per_s", {}), t0, t1)
    bare = _in_window(_read(work / "bare.json").get("per_s", {}), t0, t1)
    rows = (
        pl.scan_parquet(f"{work / 'historian'}/**/*.parquet", hive_partitioning=True)
        .select("tag", "ts")
        .collect()
    )
    unique = rows.unique()
    lo, hi = (datetime.fromtimestamp(x, UTC) for x in (t0, t1))
    stored = unique.filter((pl.col("ts") >= lo) & (pl.col("ts") < hi)).height
    timed = np.array(json.loads((work / "flushes.json").read_text()), dtype=float)
    flush_t, flushes = timed[:, 0], timed[:, 3]
    coll = samplers[0]
    t = np.array([r[0] for r in coll.rows])
    rss = np.array([r[2] for r in coll.rows]) / MIB
    after = t >= t[0] + warmup
    rss_warm = float(rss[after][0]) if after.any() else float(rss[0])
    rss_mid = float(np.interp(t[0] + (warmup + t[-1] - t[0]) / 2, t, rss))
    read_s = np.array([r[1] for r in reads])
    return {
        "tags": n_tags,
        "rate_hz": rate,
        "minutes": duration / 60,
        "warmup_s": warmup,
        "window_s": t1 - t0,
        "server_updates": produced,
        "bare_client_received": bare,
        "stored": stored,
        "dropped": produced - stored,
        "dropped_vs_bare_client": bare - stored,
        "duplicates_on_disk": rows.height - unique.height,
        "collector_log": _last_line(work / "collect.log", "stopped:"),
        "collector_rss_mib": {
            "after_warmup": rss_warm,
            "middle": rss_mid,
            "end": float(rss[-1]),
            "peak": float(rss.max()),
        },
        "collector_rss_growth": (float(rss[-1]) - rss_warm) / rss_warm,
        "processes": {s.name: s.summary(warmup) for s in samplers},
        "flush_s": {
            "count": int(flushes.size),
            "p50": float(np.percentile(flushes, 50)),
            "p95": float(np.percentile(flushes, 95)),
            "max": float(flushes.max()),
            "first_minute_mean": float(flushes[flush_t < flush_t[0] + 60].mean()),
            "last_minute_mean": float(flushes[flush_t > flush_t[-1] - 60].mean()),
        },
        "app_read_s": {
            "count": int(read_s.size),
            "p50": float(np.percentile(read_s, 50)),
            "p95": float(np.percentile(read_s, 95)),
            "max": float(read_s.max()),
            "rows_last": reads[-1][2],
        },
        "loadavg_1min_start_end": [load_start, os.getloadavg()[0]],
        "server_late_ticks": _read(work / "server.json").get("late_ticks"),
    }


def verdicts(r: dict[str, Any]) -> dict[str, bool]:
    """PASS / FAIL against the issue's targets."""
    return {
        "no sample dropped": r["dropped"] <= 0 and r["duplicates_on_disk"] == 0,
        "collector stored all a bare client received": r["dropped_vs_bare_client"] <= 0,
        f"collector RSS growth < {RSS_GROWTH_TARGET:.0%} after warm-up": bool(
            r["collector_rss_growth"] < RSS_GROWTH_TARGET
        ),
        "every app read succeeded": not r["app_read_failures"],
    }


def markdown(r: dict[str, Any], command: str) -> str:
    """The report as Markdown."""
    v = verdicts(r)
    rss, fl, app = r["collector_rss_mib"], r["flush_s"], r["app_read_s"]
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Soak: collector, historian and app under 1,000 tags at 1 Hz",
        "",
        f"`{command}` on {platform.node()} ({os.cpu_count()} CPUs), {when}; load average "
        f"{r['loadavg_1min_start_end'][0]:.1f} -> {r['loadavg_1min_start_end'][1]:.1f}.",
        "",
        "| figure | value |",
        "|:--|--:|",
        f"| tags x rate, duration | {r['tags']} x {r['rate_hz']:g} Hz, {r['minutes']:g} min |",
        f"| server updates in the window ({r['window_s']} s) | {r['server_updates']} |",
        f"| received by a bare asyncua client in the window | {r['bare_client_received']} |",
        f"| stored in the window | {r['stored']} |",
        f"| dropped (server updates - stored) | {r['dropped']} |",
        f"| dropped vs the bare client | {r['dropped_vs_bare_client']} |",
        f"| (tag, ts) stored twice on disk | {r['duplicates_on_disk']} |",
        f"| collector RSS after warm-up / middle / end / peak (MiB) | {rss['after_warmup']:.0f} / "
        f"{rss['middle']:.0f} / {rss['end']:.0f} / {rss['peak']:.0f} |",
        f"| collector RSS growth after warm-up ({r['warmup_s']:.0f} s) | "
        f"{100 * r['collector_rss_growth']:+.1f} % |",
        f"| flushes (historian appends) | {fl['count']} |",
        f"| flush p50 / p95 / max (ms) | {1000 * fl['p50']:.0f} / {1000 * fl['p95']:.0f} / "
        f"{1000 * fl['max']:.0f} |",
        f"| flush mean, first / last minute (ms) | {1000 * fl['first_minute_mean']:.0f} / "
        f"{1000 * fl['last_minute_mean']:.0f} |",
        f"| app reads (10 min of every tag, every 2 s) | {app['count']} |",
        f"| app read p50 / p95 / max (ms) | {1000 * app['p50']:.0f} / {1000 * app['p95']:.0f} / "
        f"{1000 * app['max']:.0f} ({app['rows_last']} rows at the end) |",
        f"| app reads that raised | {len(r['app_read_failures'])} |",
        "",
        "| process | CPU % | RSS start MiB | RSS end MiB | RSS peak MiB | slope 2nd half MiB/min |",
        "|:--|--:|--:|--:|--:|--:|",
    ]
    for name, p in r["processes"].items():
        if p:
            lines.append(
                f"| {name} | {p['cpu_pct']:.0f} | {p['rss_start_mib']:.0f} | "
                f"{p['rss_end_mib']:.0f} | {p['rss_peak_mib']:.0f} | "
                f"{p['rss_slope_2nd_half_mib_per_min']:+.2f} |"
            )
    lines += [
        "",
        f"Collector: {r['collector_log'].split(': ', 1)[-1]}",
        f"Server ticks late: {r['server_late_ticks']}",
        *(f"App read failed at {f}" for f in r["app_read_failures"][:5]),
        "",
        *(f"- {name}: **{'PASS' if ok else 'FAIL'}**" for name, ok in v.items()),
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    """Command line: the soak (default) or its timed ``collector`` (internal)."""
    if sys.argv[1:2] == ["collector"]:
        p = argparse.ArgumentParser(prog="soak.py collector")
        p.add_argument("--timings", type=Path, required=True)
        p.add_argument("argv", nargs=argparse.REMAINDER)
        a = p.parse_args(sys.argv[2:])
        return collector(a.timings, a.argv[1:] if a.argv[:1] == ["--"] else a.argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--tags", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=1.0, help="updates per tag per second")
    parser.add_argument("--flush-every", type=float, default=2.0, help="collector flush, s")
    parser.add_argument("--app-every", type=float, default=2.0, help="app refresh, s")
    parser.add_argument("--keep", type=Path, help="work folder to keep (default: a temporary one)")
    parser.add_argument("--name", help="report name under benchmarks/results (default: soak)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=False)
        work = args.keep
    else:
        work = Path(tempfile.mkdtemp(prefix="soak-"))
    result = soak(args.tags, args.rate, args.minutes, args.flush_every, args.app_every, work)
    command = "python benchmarks/soak.py " + " ".join(sys.argv[1:])
    name = args.name or ("soak" if args.minutes >= 10 else "soak-quick")
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    report = markdown(result, command.strip())
    (out / f"{name}.md").write_text(report, encoding="utf-8")
    print(report)
    print(f"work folder: {work}")
    return 0 if all(verdicts(result).values()) else 1


if __name__ == "__main__":
    sys.exit(main())
