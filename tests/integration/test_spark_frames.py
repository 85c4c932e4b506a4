"""Frames at scale: Spark (local mode) builds exactly the frames ``read_frame`` builds.

A small lake of two plants holds what real history holds: irregular samples, stretches with no
data, bad, uncertain and NaN samples, recorded outages (one across a chunk boundary), the same
rows in two files of a day (as after a crash mid-compaction), collector sessions with liveness
marks (one for all tags, sparse enough that a later mark must vouch for the chunk's end; one
for a single tag), a still MV whose only value is days older than the range, a from-row MV
stamped on a chunk boundary and ``max_gap`` + 1 µs before one, and a spec tag never recorded.
Every value, mask and state of the shards must equal ``Historian.frame`` over the whole range,
however the range is cut into chunks.
"""

from __future__ import annotations

import json
import math
import random
import shutil
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from twin.cli import main
from twin.scale import read_shards
from twin.scale.spark_frames import build_frames, plan_jobs, spark_session
from twin.spec import PlantSpec, parse_spec
from twin.store.frames import read_frame
from twin.store.historian import Historian
from twin.store.lake import Lake
from twin.store.liveness import ALIVE, alive_tag

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BAD, UNCERTAIN = 0x8000_0000, 0x4000_0000
T0 = datetime(2026, 3, 1, tzinfo=UTC)
START, END = T0 + timedelta(hours=6), T0 + timedelta(days=2, hours=18)
#: adaptive query execution re-plans every stage: on rows this few, that is most of the time
FAST = {"spark.sql.adaptive.enabled": "false"}
HALF_DAY = timedelta(hours=12)  # the chunks of chunk_days=0.5 start at START + k * HALF_DAY


def _spec(name: str, period: float, tags: tuple[str, str, str], timing: str = "") -> PlantSpec:
    cv, mv, dv = tags
    return parse_spec(
        f"""
[plant]
name = "{name}"
sample_period_s = {period}
{timing}
[[tags]]
name = "{cv}"
unit = "K"
role = "cv"
lo = 0.0
hi = 100.0
setpoint = 50.0
weight = 1.0

[[tags]]
name = "{mv}"
unit = "kg/s"
role = "mv"
lo = 0.0
hi = 10.0
rate_limit = 1.0

[[tags]]
name = "{dv}"
unit = "-"
role = "dv"
lo = 0.0
hi = 1.0
""",
        source=f"{name}.toml",
    )


ALPHA = _spec("alpha", 60.0, ("T", "F", "Never"))
BETA = _spec("beta", 30.0, ("L", "U", "Q"), 'mv_timing = "from_row"')
SPECS = {"alpha": ALPHA, "beta": BETA}


def _rows(tag: str, times: list[datetime], rng: random.Random) -> pl.DataFrame:
    """Samples of ``tag``: mostly good, some bad, uncertain or NaN."""
    values, status = [], []
    for _ in times:
        roll = rng.random()
        values.append(float("nan") if roll < 0.01 else round(rng.uniform(0, 100), 3))
        status.append(BAD if roll < 0.03 else UNCERTAIN if roll < 0.06 else 0)
    return pl.DataFrame({"tag": tag, "ts": times, "value": values, "status": status}).cast(
        {"ts": pl.Datetime("us", "UTC"), "status": pl.UInt32}
    )


def _irregular(first: datetime, last: datetime, mean_s: float, rng: random.Random) -> list:
    """Times from ``first`` to ``last`` about ``mean_s`` apart, with stretches of silence."""
    out, t = [], first
    while t < last:
        out.append(t)
        quiet = rng.random() < 0.005  # a stretch of 5 to 20 minutes without data
        t += timedelta(seconds=rng.uniform(300, 1200) if quiet else rng.uniform(0.3, 1.7) * mean_s)
    return out


def _marks(tag: str, since: datetime, first: datetime, until: datetime, every_s: float):
    """The marks of a session alive since ``since``, one every ``every_s`` from ``first``."""
    n = int((until - first).total_seconds() // every_s)
    ts = [first + timedelta(seconds=every_s * i) for i in range(n)]
    values = [(t - since).total_seconds() for t in ts]
    return pl.DataFrame({"tag": tag, "ts": ts, "value": values, "status": 0}).cast(
        {"ts": pl.Datetime("us", "UTC"), "status": pl.UInt32}
    )


def _write_lake(root: Path) -> Lake:
    rng = random.Random(16)
    lake = Lake(root)
    far, stop = START - timedelta(hours=2), END + timedelta(hours=1)
    alpha = lake.historian("alpha")
    alpha.append(_rows("T", _irregular(far, stop, 50.0, rng), rng))
    alpha.append(_rows("F", _irregular(far, stop, 400.0, rng), rng))
    # an outage across the first chunk boundary, and one of F alone
    alpha.record_gap(["T", "F"], START + HALF_DAY - timedelta(minutes=10),
                     START + HALF_DAY + timedelta(minutes=20), "server restart")  # fmt: skip
    alpha.record_gap(["F"], START + 3 * HALF_DAY, START + 3 * HALF_DAY + timedelta(hours=1), "x")

    beta = lake.historian("beta")
    beta.append(_rows("L", _irregular(far, stop, 20.0, rng), rng))
    boundary = START + 2 * HALF_DAY
    u = [  # the from-row MV: still for days, then on and just before chunk boundaries
        (START - timedelta(days=3), 1.0, 0),
        (START + HALF_DAY, 2.0, 0),
        (boundary - timedelta(seconds=90, microseconds=1), 3.0, 0),
        (START + timedelta(hours=33, seconds=17.3), 4.0, 0),
        (START + timedelta(hours=40), 5.0, BAD),
        (START + timedelta(hours=41), 6.0, UNCERTAIN),
    ]
    beta.append(
        pl.DataFrame(u, schema=["ts", "value", "status"], orient="row")
        .with_columns(tag=pl.lit("U"))
        .cast({"ts": pl.Datetime("us", "UTC"), "status": pl.UInt32})
    )
    q_times = _irregular(START + timedelta(hours=19), START + timedelta(hours=21), 200.0, rng)
    beta.append(_rows("Q", q_times, rng))
    # sessions: one since the MV's value, up to 20 h; none to 30 h; then marks 5 min apart
    # (more than max_gap): only a later mark says the session lived at a chunk's end
    since = START - timedelta(days=3)
    beta.append(_marks(ALIVE, since, START - timedelta(hours=3), START + timedelta(hours=20), 60))
    second = START + timedelta(hours=30)
    beta.append(_marks(ALIVE, second, second + timedelta(seconds=7), stop, 300))
    q_since = START + timedelta(hours=19, minutes=30)
    beta.append(_marks(alive_tag("Q"), q_since, q_since, START + timedelta(hours=26), 120))
    beta.record_gap(["L", "U"], START + timedelta(hours=35), START + timedelta(hours=35.5), "x")
    beta.record_gap(["L"], boundary - timedelta(seconds=90), boundary - timedelta(seconds=30), "y")

    # the same rows in two files of a day, as a crash in the middle of a compaction leaves them
    day = lake.path("beta") / f"day={(START + timedelta(days=1)).date().isoformat()}"
    first_file = sorted(day.glob("*.parquet"))[0]
    shutil.copy(first_file, day / "part-zz-duplicate.parquet")
    return lake


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    return _write_lake(tmp_path_factory.mktemp("spark") / "lake")


@pytest.fixture(scope="module")
def spark():
    session = spark_session("local[2]", FAST)
    yield session
    session.stop()


def _expected(lake: Lake, plant: str, max_gap: float | None) -> pl.DataFrame:
    return read_frame(Historian(lake.path(plant)), SPECS[plant], START, END, max_gap)


def _build(spark, lake: Lake, out: Path, max_gap: float | None, chunk_days: float) -> dict:
    jobs = plan_jobs(lake.root, SPECS, START, END, max_gap=max_gap, chunk_days=chunk_days)
    return build_frames(spark, lake.root, jobs, out)


def test_the_lake_holds_every_case(lake: Lake) -> None:
    """Guards the test itself: what the frames must get right is really in the history."""
    frame = _expected(lake, "beta", None)
    states = {t: set(frame[f"{t}__state"].cast(pl.String)) for t in ("L", "U", "Q")}
    assert states["L"] == {"good", "uncertain", "bad", "gap", "missing"}
    assert {"good", "bad", "uncertain", "missing", "gap"} <= states["U"]
    assert frame["U"][0] == 1.0  # the still MV's value from three days before
    alpha = _expected(lake, "alpha", None)
    assert set(alpha["Never__state"].cast(pl.String)) == {"missing"}
    assert "gap" in set(alpha["T__state"].cast(pl.String))


@pytest.mark.parametrize(("max_gap", "chunk_days"), [(None, 0.25), (math.inf, 10.0)])
def test_spark_frames_equal_the_historians_frames(
    spark, lake: Lake, tmp_path: Path, max_gap: float | None, chunk_days: float
) -> None:
    """Quarter-day chunks (default max_gap), and one chunk with no limit, equal the whole."""
    out = tmp_path / "frames"
    doc = _build(spark, lake, out, max_gap, chunk_days)
    assert set(doc["plants"]) == {"alpha", "beta"}
    for plant in ("alpha", "beta"):
        whole = _expected(lake, plant, max_gap)
        assert_frame_equal(read_shards(out, plant), whole)  # values, masks, states, dtypes
        lo, hi = START + timedelta(hours=11), START + timedelta(hours=25)
        window = whole.filter(pl.col("ts") >= lo, pl.col("ts") < hi)
        assert_frame_equal(read_shards(out, plant, lo, hi), window)
    for entry in doc["plants"].values():  # shards follow one another over the whole range
        shards = entry["shards"]
        assert shards[0]["start"] == START.isoformat() and shards[-1]["end"] == END.isoformat()
        assert all(a["end"] == b["start"] for a, b in pairwise(shards))
    assert len(doc["plants"]["beta"]["shards"]) == math.ceil((END - START) / timedelta(chunk_days))


def test_twin_frames_build_end_to_end(
    spark, lake: Lake, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command as a user types it, run in this process so that it reuses the module's Spark
    session (a second JVM would double the test's time); it leaves that session running."""
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "alpha.toml").write_text(_toml(ALPHA))
    beta_file = tmp_path / "beta-spec.toml"
    beta_file.write_text(_toml(BETA))
    out = tmp_path / "frames"
    cmd = ["frames", "build", "--lake", str(lake.root),
           "--plants", "alpha,beta", "--spec-dir", str(specs), "--spec", f"beta={beta_file}",
           "--start", START.isoformat(), "--end", END.isoformat(), "--out", str(out),
           "--master", "local[2]", "--chunk-days", "0.37", "--max-gap", "45",
           "--conf", "spark.sql.adaptive.enabled=false"]  # fmt: skip
    assert main(cmd) == 0
    assert "wrote 14 shards of 2 plants" in capsys.readouterr().out  # 7 chunks of 0.37 days
    assert not spark.sparkContext._jsc.sc().isStopped()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["plants"]["beta"]["spec"]["plant"]["mv_timing"] == "from_row"
    for plant in ("alpha", "beta"):
        assert_frame_equal(read_shards(out, plant), _expected(lake, plant, 45.0))


def _toml(spec: PlantSpec) -> str:
    from twin.spec import spec_to_toml

    return spec_to_toml(spec)
