"""Recorded histories: excitation within limits, reproducible, readable as is by polars and DuckDB."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest

from connectors.sim.excitation import Excitation
from connectors.sim.plants import make_plant
from connectors.sim.record import DEFAULT_START, record
from twin.spec import builtin_spec


@pytest.mark.parametrize("plant", ["cstr", "quadtank", "woodberry"])
def test_excitation_respects_limits_and_rate_limits(plant: str) -> None:
    spec = builtin_spec(plant)
    lo = np.array([t.lo for t in spec.mvs])
    hi = np.array([t.hi for t in spec.mvs])
    rate = np.array([t.rate_limit for t in spec.mvs])
    nominal = (lo + hi) / 2
    ex = Excitation(spec.mvs, nominal, seed=4)
    moves = np.array([ex.next() for _ in range(5000)])
    assert np.all(moves >= lo - 1e-12) and np.all(moves <= hi + 1e-12)
    steps = np.abs(np.diff(np.vstack([nominal, moves]), axis=0))
    assert np.all(steps <= rate + 1e-12)
    # it excites: the MVs visit most of their range, with small and large moves
    spread = (moves.max(axis=0) - moves.min(axis=0)) / (hi - lo)
    assert np.all(spread > 0.6), spread
    again = Excitation(spec.mvs, nominal, seed=4)
    assert np.array_equal(moves, np.array([again.next() for _ in range(5000)]))


def test_excitation_backs_off_to_nominal_on_a_trip() -> None:
    spec = builtin_spec("cstr")
    ex = Excitation(spec.mvs, np.array([300.0]), seed=0)
    for _ in range(50):
        ex.next()
    for _ in range(200):
        value = ex.next(back_off=True)
    assert value[0] == pytest.approx(300.0)


def test_record_writes_hive_partitioned_long_format(tmp_path: Path) -> None:
    out = tmp_path / "hist"
    hours = 26.0  # crosses midnight: two day partitions
    summary = record(make_plant("cstr", seed=1), hours, out, seed=1, progress=False)
    spec = builtin_spec("cstr")
    n = round(hours * 3600 / spec.sample_period)
    assert summary.samples == n and summary.rows == n * len(spec.tags)
    days = sorted(p.name for p in out.glob("day=*"))
    assert days == ["day=2026-01-01", "day=2026-01-02"]

    lf = pl.scan_parquet(out / "**" / "*.parquet", hive_partitioning=True)
    df = lf.collect()
    assert set(df["tag"].unique()) == set(spec.tag_names)
    counts = df.group_by("tag").len()
    assert counts["len"].to_list() == [n] * len(spec.tags)
    assert df["ts"].dtype == pl.Datetime("us", "UTC")
    assert df["ts"].min() == DEFAULT_START
    assert df["ts"].max() == DEFAULT_START + timedelta(seconds=spec.sample_period * (n - 1))
    assert (df["quality"].cast(pl.String) == "good").all()
    assert df["value"].is_finite().all()
    # plausible values: every CV stays within its engineering limits most of the time
    for tag in spec.cvs:
        v = df.filter(pl.col("tag") == tag.name)["value"]
        assert ((v >= tag.lo) & (v <= tag.hi)).mean() > 0.95, tag.name  # type: ignore[operator]

    con = duckdb.connect()
    rows = con.execute(
        f"select count(*), count(distinct tag) from read_parquet('{out}/**/*.parquet', hive_partitioning=true)"
    ).fetchone()
    assert rows == (n * len(spec.tags), len(spec.tags))


def test_same_seed_same_data(tmp_path: Path) -> None:
    def run(seed: int, folder: str) -> pl.DataFrame:
        record(make_plant("cstr", seed=seed), 0.5, tmp_path / folder, seed=seed, progress=False)
        return pl.read_parquet(tmp_path / folder / "**" / "*.parquet").sort("tag", "ts")

    a, b, c = run(7, "a"), run(7, "b"), run(8, "c")
    assert a.equals(b)
    assert not a["value"].equals(c["value"])


def test_record_cli_writes_the_store_and_refuses_a_naive_start(tmp_path: Path) -> None:
    from twin.cli import main

    out = tmp_path / "cli"
    args = ["plant", "record", "woodberry", "--hours", "2", "--out", str(out), "--no-progress"]
    assert main([*args, "--start", "2026-03-01T00:00Z"]) == 0
    df = pl.read_parquet(out / "**" / "*.parquet")
    assert df.height == 120 * 5 and df["ts"].min().isoformat().startswith("2026-03-01T00:00")
    with pytest.raises(SystemExit) as info:
        main([*args, "--start", "2026-03-01T00:00"])  # no offset: a guess, refused
    assert info.value.code == 2
    assert main(["plant", "record", "nope", "--hours", "1", "--out", str(out)]) == 2
