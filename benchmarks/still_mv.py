"""A still MV on a report-by-exception server, for as long as you like: is it valid in the frame?

Starts the node-opcua heated tank of the tests (``tests/integration/nodeopcua``: four measured
tags that change, a heater-power MV that nobody writes, a failed sensor), drafts its spec with
``twin spec discover``, collects for ``--minutes`` and prints, per tag, the frame's states over
the whole collection with the spec's default ``max_gap`` (3 sample periods), and the longest
time the MV went without a notification. The issue's bar: the still MV valid for 10 minutes.

    .venv/bin/python benchmarks/still_mv.py --minutes 10
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "integration"))

import nodeopcua_helpers as node  # noqa: E402
from collector_helpers import free_port  # noqa: E402

from connectors.collect import run_collect  # noqa: E402
from twin.spec import load_spec  # noqa: E402
from twin.store.historian import Historian  # noqa: E402
from twin.store.liveness import liveness_tags  # noqa: E402

PERIOD = 0.5


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=10.0, help="how long to collect")
    args = p.parse_args(argv)
    executable = node.install()
    with tempfile.TemporaryDirectory(prefix="still-mv-") as tmp:
        where = Path(tmp)
        with node.HeatedTank(executable, free_port(), where / "pki", where / "log") as tank:
            out = where / "tank.toml"
            subprocess.run(
                [sys.executable, "-m", "twin", "spec", "discover", "--endpoint", tank.url,
                 "--out", str(out), "--sample", "0", "--period", str(PERIOD)],
                check=True, cwd=ROOT, capture_output=True,
            )  # fmt: skip
            spec = load_spec(out)
            hist = where / "hist"
            start = datetime.now(UTC)
            print(f"collecting {len(spec.tags)} tags from {tank.url} for {args.minutes:g} min")
            asyncio.run(run_collect(spec, tank.url, hist, duration_s=60 * args.minutes))
            end = datetime.now(UTC)
        store = Historian(hist)
        mv = store.read([node.MV])
        # from the moment the collector's session was up (before it, nobody collected)
        marks = store.read(liveness_tags(spec.tag_names))
        up = marks.select((pl.col("ts") - pl.duration(seconds=pl.col("value"))).min()).item()
        print(f"session up {(up - start).total_seconds():.1f} s after the collector started")
        frame = store.frame(spec, up, end)
        print(f"frame: {frame.height} rows of {PERIOD} s, max_gap {3 * PERIOD:g} s")
        print(f"{node.MV}: {mv.height} sample(s) stored over {(end - start).total_seconds():.0f} s")
        for tag in spec.tag_names:
            counts = frame[f"{tag}__state"].cast(str).value_counts(sort=True)
            states = ", ".join(f"{s} {n}" for s, n in counts.iter_rows())
            print(f"  {tag:18s} {states}")
        ok = frame[f"{node.MV}__state"].cast(str).eq("good").all()
        print(f"the still MV valid in every row: {'yes' if ok else 'NO'}")
        return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
