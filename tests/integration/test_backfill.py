"""``twin backfill`` against a real asyncua server that keeps its tags' history (127.0.0.1).

The server is a simulated plant served with ``historize=True``; its history storage (asyncua's
``HistoryDict``) is pre-filled with an hour of known samples in the past, some uncertain and
some bad, with server timestamps that differ from the source timestamps. It answers at most
:data:`SERVER_PAGE` values per node per response and a continuation point for the rest, as a
plant historian does.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from asyncua import ua
from asyncua.server.history import HistoryDict
from conftest import REPO, plant_server_thread

from connectors.backfill import Backfill, BackfillSettings
from connectors.sim.address_space import trip_nodes
from connectors.sim.plants import make_plant
from connectors.sim.server import PlantServer
from twin.cli import build_parser
from twin.cli import main as twin_main
from twin.spec import PlantSpec, Tag
from twin.store.historian import Historian

pytestmark = pytest.mark.integration

SERVER_PAGE = 70  # values per node per response before the server hands out a continuation point
PERIOD = timedelta(seconds=6)
SAMPLES = 600  # per tag: an hour at 6 s
UNCERTAIN = ua.StatusCodes.UncertainLastUsableValue
BAD = ua.StatusCodes.BadSensorFailure


@dataclasses.dataclass
class Served:
    """The historizing server, the history it holds and the HistoryRead requests it answered."""

    server: PlantServer
    spec: PlantSpec
    start: datetime  # of the pre-filled history
    expected: pl.DataFrame  # tag, ts, value, status: what a backfill of [start, end) must store
    requests: list[ua.HistoryReadParameters] = dataclasses.field(default_factory=list)
    delay_s: float = 0.0  # answer each HistoryRead this much later (to interrupt a backfill)

    @property
    def end(self) -> datetime:
        return self.start + SAMPLES * PERIOD

    @property
    def releases(self) -> list[ua.HistoryReadParameters]:
        return [p for p in self.requests if p.ReleaseContinuationPoints]


def _status(k: int) -> int:
    return UNCERTAIN if k % 50 == 7 else BAD if k % 97 == 11 else ua.StatusCodes.Good


async def _prefill(server: PlantServer, start: datetime) -> pl.DataFrame:
    """Write SAMPLES known values per tag straight into the server's history storage."""
    assert server.history is not None
    rows: dict[str, list[Any]] = {"tag": [], "ts": [], "value": [], "status": []}
    for i, (tag, node) in enumerate(server.nodes.values.items()):
        for k in range(SAMPLES):
            ts, code = start + k * PERIOD, _status(k)
            value = None if code == BAD else 100.0 * i + 0.5 * k
            variant = ua.Variant(value, ua.VariantType.Double) if value is not None else None
            dv = ua.DataValue(
                variant,
                StatusCode=ua.StatusCode(code),
                SourceTimestamp=ts,
                ServerTimestamp=ts + timedelta(seconds=2),  # never the one to store
            )
            await server.history.save_node_value(node, dv)
            for column, v in zip(rows, (tag, ts, value, code), strict=True):
                rows[column].append(v)
    return pl.DataFrame(rows).with_columns(
        pl.col("ts").dt.cast_time_unit("us"), pl.col("status").cast(pl.UInt32)
    )


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    plant = make_plant("cstr", seed=1)
    storage = HistoryDict(max_history_data_response_size=SERVER_PAGE)
    with plant_server_thread(plant, 10.0, historize=True, history=storage) as server:
        start = (datetime.now(UTC) - timedelta(hours=3)).replace(microsecond=0)
        expected = asyncio.run(_prefill(server, start))
        got = Served(server, plant.spec, start, expected)
        manager = server.server.iserver.history_manager
        real_read = manager.read_history

        async def observed(params: ua.HistoryReadParameters) -> list[ua.HistoryReadResult]:
            got.requests.append(params)
            if got.delay_s and not params.ReleaseContinuationPoints:
                await asyncio.sleep(got.delay_s)
            return await real_read(params)

        manager.read_history = observed  # type: ignore[method-assign]  # the real read, observed
        yield got


def _stored(hist: Path) -> pl.DataFrame:
    return Historian(hist).read().select("tag", "ts", "value", "status", "quality")


def _cli(served: Served, hist: Path, *extra: str) -> list[str]:
    return [
        "backfill",
        "--spec",
        "cstr",
        "--endpoint",
        served.server.endpoint,
        "--start",
        served.start.isoformat(),
        "--end",
        served.end.isoformat(),
        "--historian",
        str(hist),
        "--no-progress",
        *extra,
    ]


def test_every_tag_arrives_with_source_timestamps_and_status_and_a_rerun_adds_nothing(
    served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hist = tmp_path / "hist"
    served.requests.clear()
    assert twin_main(_cli(served, hist, "--batch-nodes", "3", "--page-size", "1000")) == 0
    stored = _stored(hist)
    want = served.expected.sort("tag", "ts")
    assert stored.select("tag", "ts", "value", "status").equals(want), "not the server's history"
    quality = dict(zip(*stored.group_by("quality").len().to_dict().values(), strict=True))
    bad = sum(_status(k) == BAD for k in range(SAMPLES)) * 4
    uncertain = sum(_status(k) == UNCERTAIN for k in range(SAMPLES)) * 4
    assert quality == {"good": 4 * SAMPLES - bad - uncertain, "uncertain": uncertain, "bad": bad}
    # several nodes per request, pages of SERVER_PAGE values followed by continuation points
    assert max(len(p.NodesToRead) for p in served.requests) == 3
    assert any(v.ContinuationPoint for p in served.requests for v in p.NodesToRead)
    assert f"{4 * SAMPLES} samples of 4 tags, {4 * SAMPLES} new rows" in capsys.readouterr().out

    served.requests.clear()
    assert twin_main(_cli(served, hist)) == 0
    assert "0 samples of 4 tags, 0 new rows" in capsys.readouterr().out
    assert _stored(hist).equals(stored), "the rerun changed the historian"
    assert len(served.requests) == 1, "the rerun read more than one empty page"


def test_truncated_pages_without_continuation_points_are_read_on(
    served: Served, tmp_path: Path
) -> None:
    """asyncua's server truncates at NumValuesPerNode without a continuation point."""
    hist = Historian(tmp_path / "hist")
    settings = BackfillSettings(batch_nodes=4, page_size=40)
    job = Backfill(
        served.spec, served.server.endpoint, hist, served.start, served.end, settings=settings
    )
    report = asyncio.run(job.run())
    assert report.read == dict.fromkeys(served.spec.tag_names, SAMPLES)
    assert _stored(tmp_path / "hist").height == 4 * SAMPLES


def test_a_node_without_history_is_named_and_the_others_arrive(
    served: Served, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tripped = Tag("Tripped", trip_nodes(served.spec)[0], "", "dv", 0.0, 1.0)  # not historized
    spec = dataclasses.replace(served.spec, tags=(*served.spec.tags, tripped))
    hist = Historian(tmp_path / "hist")
    job = Backfill(spec, served.server.endpoint, hist, served.start, served.end)
    report = asyncio.run(job.run())
    assert list(report.no_history) == ["Tripped"]
    assert report.any_read and not report.failed
    assert "Tripped: the server keeps no history for it" in caplog.text
    assert hist.read().group_by("tag").len().sort("tag").to_dict(as_series=False) == {
        "tag": sorted(served.spec.tag_names),
        "len": [SAMPLES] * 4,
    }


def test_nothing_readable_exits_non_zero_naming_the_tags(
    served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    long_ago = served.start - timedelta(days=30)  # the server keeps nothing that old
    argv = _cli(served, tmp_path / "hist")
    argv[argv.index("--start") + 1] = long_ago.isoformat()
    argv[argv.index("--end") + 1] = (long_ago + timedelta(hours=1)).isoformat()
    assert twin_main(argv) == 1
    out = capsys.readouterr().out
    assert "no history: " in out and all(f"{t} (no values" in out for t in served.spec.tag_names)


def test_cancel_releases_continuation_points_and_a_rerun_completes(
    served: Served, tmp_path: Path
) -> None:
    hist = Historian(tmp_path / "hist")
    settings = BackfillSettings(batch_nodes=4, page_size=1000)

    async def interrupted() -> Backfill:
        job = Backfill(
            served.spec, served.server.endpoint, hist, served.start, served.end, settings=settings
        )
        task = asyncio.create_task(job.run())
        while not any(v.ContinuationPoint for p in served.requests for v in p.NodesToRead):
            await asyncio.sleep(0.02)  # cancel while the server holds continuation points
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return job

    served.requests.clear()
    served.delay_s = 0.3
    try:
        job = asyncio.run(interrupted())
    finally:
        served.delay_s = 0.0
    assert job.report.cancelled
    assert served.releases, "no HistoryRead with ReleaseContinuationPoints after the cancel"
    assert all(v.ContinuationPoint for v in served.releases[-1].NodesToRead)
    first = _stored(tmp_path / "hist")
    assert 0 < first.height < 4 * SAMPLES, "the cancel kept nothing, or came too late"

    rerun = asyncio.run(
        Backfill(served.spec, served.server.endpoint, hist, served.start, served.end).run()
    )
    assert rerun.stored == 4 * SAMPLES - first.height  # only what was missing
    assert (
        _stored(tmp_path / "hist")
        .select("tag", "ts", "value", "status")
        .equals(served.expected.sort("tag", "ts"))
    )


def test_ctrl_c_stops_the_command_with_what_it_stored(served: Served, tmp_path: Path) -> None:
    hist = tmp_path / "hist"
    cmd = [sys.executable, "-m", "twin.cli", *_cli(served, hist, "--page-size", "100")]
    served.requests.clear()
    served.delay_s = 0.5
    try:
        proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        deadline = time.monotonic() + 60
        while len(served.requests) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        served.delay_s = 0.0
    assert proc.returncode == 130, err
    assert "interrupted: run the same command again" in out
    assert "Traceback" not in err
    assert 0 < _stored(hist).height < 4 * SAMPLES
    assert served.releases, "Ctrl-C did not release the continuation points"


def test_a_historizing_plant_server_keeps_live_history_for_backfill(tmp_path: Path) -> None:
    """``PlantServer(historize=True)`` (``twin plant serve --historize``): what the plant
    published is there to backfill, with its source timestamps."""
    args = build_parser().parse_args(["plant", "serve", "cstr", "--historize"])
    assert args.historize == 20_000  # the flag's default count
    plant = make_plant("cstr", seed=2)
    start = datetime.now(UTC)
    with plant_server_thread(plant, 120.0, historize=True, history_count=500) as server:
        time.sleep(1.0)  # about 20 steps of 0.05 s
        end = datetime.now(UTC)
        steps = server.steps
        argv = ["backfill", "--spec", "cstr", "--endpoint", server.endpoint, "--start"]
        argv += [start.isoformat(), "--end", end.isoformat(), "--historian", str(tmp_path)]
        assert twin_main([*argv, "--no-progress"]) == 0
    stored = _stored(tmp_path)
    counts = stored.group_by("tag").len()
    assert set(counts["tag"]) == set(plant.spec.tag_names)
    assert counts["len"].min() >= min(steps, 10), counts
    assert stored["quality"].unique().to_list() == ["good"]
    assert stored["ts"].min() >= start and stored["ts"].max() < end
