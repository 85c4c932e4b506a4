"""Frames at scale: polars (``read_frame`` on one historian) against Spark local mode, by days.

Writes once (reused when present) a synthetic lake under ``--work``: one plant of ``--tags``
tags sampled every minute (a few seconds of jitter, 1 % of samples lost, 0.5 % bad) over
``--days`` days. Then, for each size in ``--sizes`` (days of history from the first day), times

- polars: ``read_frame(Historian(lake/plant=bench), spec, start, end)``, the whole range in one
  process (what ``twin train`` does), in a child process so its peak memory is its own;
- Spark: :func:`twin.scale.spark_frames.build_frames` on ``--master`` (default ``local[2]``),
  one shard per day, session start-up counted apart;

checks on the smallest size that the shards equal the polars frame, prints a table as it goes
and writes ``benchmarks/results/spark-frames.{md,json}``.

    nice -n 15 .venv/bin/python benchmarks/spark_frames.py                  # 1,000 tags, 1/7/30 d
    nice -n 15 .venv/bin/python benchmarks/spark_frames.py --sizes 1,3,7 --days 7
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import resource
import shutil
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from twin.spec import PlantSpec, parse_spec  # noqa: E402
from twin.store.historian import Historian  # noqa: E402
from twin.store.lake import Lake  # noqa: E402

T0 = datetime(2026, 1, 1, tzinfo=UTC)
PLANT = "bench"
RESULTS = ROOT / "benchmarks" / "results"


def make_spec(n_tags: int) -> PlantSpec:
    """A spec of ``n_tags`` tags on a 60 s period: 10 MVs, 10 CVs, the rest DVs."""
    parts = ['[plant]\nname = "bench"\nsample_period_s = 60.0\n']
    for i in range(n_tags):
        role = "mv" if i < 10 else "cv" if i < 20 else "dv"
        extra = "rate_limit = 1.0\n" if role == "mv" else ""
        extra += "setpoint = 50.0\nweight = 1.0\n" if role == "cv" else ""
        parts.append(
            f'[[tags]]\nname = "t{i:04d}"\nunit = "-"\nrole = "{role}"\nlo = 0.0\n'
            f"hi = 100.0\n{extra}"
        )
    return parse_spec("\n".join(parts), source="bench.toml")


def write_lake(work: Path, n_tags: int, days: int) -> Lake:
    """The synthetic lake (written once: a ``done`` file marks it complete)."""
    lake = Lake(work / "lake")
    stamp = work / f"done-{n_tags}x{days}"
    if stamp.exists():
        print(f"reusing the lake in {lake.root}", flush=True)
        return lake
    shutil.rmtree(lake.root, ignore_errors=True)
    hist = lake.historian(PLANT, auto_compact_files=0)
    rng = np.random.default_rng(16)
    names = np.array([f"t{i:04d}" for i in range(n_tags)])
    for day in range(days):
        began = time.monotonic()
        minutes = np.arange(1440) * 60_000_000
        base = int((T0 + timedelta(days=day)).timestamp() * 1e6)
        ts = base + minutes[None, :] + rng.integers(-5_000_000, 5_000_000, (n_tags, 1440))
        ts = np.clip(ts, base, base + 86_400_000_000 - 1)
        keep = rng.random((n_tags, 1440)) > 0.01
        bad = rng.random((n_tags, 1440)) < 0.005
        rows = pl.DataFrame(
            {
                "tag": np.repeat(names, 1440)[keep.ravel()],
                "ts": ts.ravel()[keep.ravel()],
                "value": rng.normal(50, 10, n_tags * 1440)[keep.ravel()],
                "status": np.where(bad, 0x8000_0000, 0).astype(np.uint32).ravel()[keep.ravel()],
            }
        ).with_columns(pl.col("ts").cast(pl.Datetime("us")).dt.replace_time_zone("UTC"))
        hist.append(rows)
        print(f"  wrote day {day + 1}/{days}: {rows.height:,} rows "
              f"({time.monotonic() - began:.1f} s)", flush=True)  # fmt: skip
    stamp.touch()
    return lake


def _polars_child(path: str, n_tags: int, days: int, out: str | None, queue: Any) -> None:
    from twin.store.frames import read_frame

    spec = make_spec(n_tags)
    began = time.monotonic()
    frame = read_frame(Historian(path), spec, T0, T0 + timedelta(days=days))
    seconds = time.monotonic() - began
    if out:
        frame.write_parquet(out)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB
    queue.put({"seconds": seconds, "rows": frame.height, "peak_mib": rss})


def time_polars(lake: Lake, n_tags: int, days: int, out: Path | None, limit: float) -> dict:
    """read_frame over ``days`` days in a child process (None values: it failed or timed out)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(
        target=_polars_child,
        args=(str(lake.path(PLANT)), n_tags, days, str(out) if out else None, queue),
    )
    child.start()
    child.join(limit)
    if child.is_alive():
        child.kill()
        return {"seconds": None, "error": f"over {limit:.0f} s"}
    if child.exitcode != 0:
        return {"seconds": None, "error": f"exit code {child.exitcode} (memory?)"}
    return dict(queue.get())


def time_spark(spark: Any, lake: Lake, spec: PlantSpec, days: int, out: Path) -> dict:
    from twin.scale.spark_frames import build_frames, plan_jobs

    shutil.rmtree(out, ignore_errors=True)
    began = time.monotonic()
    jobs = plan_jobs(lake.root, {PLANT: spec}, T0, T0 + timedelta(days=days), chunk_days=1.0)
    doc = build_frames(spark, lake.root, jobs, out)
    rows = sum(s["rows"] for s in doc["plants"][PLANT]["shards"])
    return {"seconds": time.monotonic() - began, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, default=Path("/tmp/twin-spark-frames-bench"))
    p.add_argument("--tags", type=int, default=1000)
    p.add_argument("--days", type=int, default=30, help="days of history in the lake")
    p.add_argument("--sizes", default="1,7,30", help="days of frames to build, comma-separated")
    p.add_argument("--master", default="local[2]")
    p.add_argument("--driver-memory", default="6g")
    p.add_argument("--limit", type=float, default=1200.0, help="seconds per polars run")
    p.add_argument("--name", default="spark-frames", help="results file name")
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    if max(sizes) > args.days:
        p.error(f"--sizes up to {max(sizes)} days need --days >= {max(sizes)}")
    args.work.mkdir(parents=True, exist_ok=True)
    lake = write_lake(args.work, args.tags, args.days)
    spec = make_spec(args.tags)

    from twin.scale import read_shards
    from twin.scale.spark_frames import spark_session

    began = time.monotonic()
    spark = spark_session(args.master, {"spark.driver.memory": args.driver_memory})
    startup = time.monotonic() - began
    print(f"Spark session on {args.master} up in {startup:.1f} s", flush=True)
    header = f"{'days':>5} {'rows in':>12} {'polars s':>9} {'peak MiB':>9} {'spark s':>8}"
    print(header, flush=True)
    results: list[dict] = []
    cold = time_spark(spark, lake, spec, min(sizes), args.work / "shards-warm-up")
    startup_note = {"session_s": startup, "first_build_s": cold["seconds"]}
    print(f"(a first, untimed build of {min(sizes)} d warms the JVM up: "
          f"{cold['seconds']:.1f} s)", flush=True)  # fmt: skip
    for days in sorted(sizes):
        check = days == min(sizes)
        ref = args.work / f"polars-{days}.parquet" if check else None
        pol = time_polars(lake, args.tags, days, ref, args.limit)
        spk = time_spark(spark, lake, spec, days, args.work / f"shards-{days}")
        equal = None
        if check and ref is not None and pol.get("seconds") is not None:
            equal = read_shards(args.work / f"shards-{days}", PLANT).equals(pl.read_parquet(ref))
        row = {"days": days, "rows_in": args.tags * 1440 * days, "polars": pol, "spark": spk,
               "equal": equal}  # fmt: skip
        results.append(row)
        ps = f"{pol['seconds']:.1f}" if pol.get("seconds") is not None else pol.get("error", "-")
        mib = f"{pol['peak_mib']:.0f}" if "peak_mib" in pol else "-"
        print(f"{days:>5} {row['rows_in']:>12,} {ps:>9} {mib:>9} {spk['seconds']:>8.1f}"
              + (f"   shards == polars frame: {equal}" if equal is not None else ""), flush=True)  # fmt: skip
        write_results(args, startup_note, results)  # after each size: a cut-short run keeps some
    spark.stop()
    return 0 if all(r["equal"] is not False for r in results) else 1


def write_results(args: argparse.Namespace, startup: dict, results: list[dict]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    import pyspark

    meta = {"tags": args.tags, "period_s": 60, "master": args.master, "cpus": mp.cpu_count(),
            "driver_memory": args.driver_memory, "spark_startup_s": round(startup["session_s"], 1),
            "spark_first_build_s": round(startup["first_build_s"], 1),
            "pyspark": pyspark.__version__, "polars": pl.__version__,
            "python": platform.python_version(), "date": datetime.now(UTC).isoformat()}  # fmt: skip
    (RESULTS / f"{args.name}.json").write_text(json.dumps({**meta, "results": results}, indent=2))
    lines = [
        "# Frames at scale: polars read_frame vs Spark local mode",
        "",
        f"{args.tags:,} tags at 1-min samples (1 % lost, 0.5 % bad), one shard per day; "
        f"Spark `{args.master}` (driver memory {args.driver_memory}), {mp.cpu_count()} CPUs, "
        f"session start-up ({startup['session_s']:.1f} s) and a first build that warms the JVM up "
        f"({startup['first_build_s']:.1f} s for {min(r['days'] for r in results)} d) not counted. "
        f"Polars runs in a child process (its peak memory is its own). pyspark {pyspark.__version__}, "
        f"polars {pl.__version__}. Command: `nice -n 15 .venv/bin/python "
        f"benchmarks/spark_frames.py --tags {args.tags} --days {args.days} --sizes {args.sizes}`.",
        "",
        "| days | samples in | polars read_frame (s) | polars peak (MiB) | Spark (s) | equal |",
        "|---:|---:|---:|---:|---:|:---:|",
    ]
    for r in results:
        pol = r["polars"]
        ps = f"{pol['seconds']:.1f}" if pol.get("seconds") is not None else pol.get("error", "-")
        mib = f"{pol['peak_mib']:.0f}" if "peak_mib" in pol else "-"
        eq = {True: "yes", False: "NO", None: ""}[r["equal"]]
        lines.append(f"| {r['days']} | {r['rows_in']:,} | {ps} | {mib} | "
                     f"{r['spark']['seconds']:.1f} | {eq} |")  # fmt: skip
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS / args.name}.md and .json", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
