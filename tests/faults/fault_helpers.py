"""Fault suite helpers: a plant server that can be restarted or frozen, and store checks.

The server runs in this process, in a thread with its own event loop (as in
tests/integration/conftest.py), so that a fault costs no interpreter start: on two busy cores an
asyncua server takes 5-15 s to come up from scratch, which would make ten restarts per run
impossible. :meth:`FaultyServer.restart` stops the OPC-UA service (every connection and session
closed, the port refused) and starts it again on the same port; :meth:`FaultyServer.stall`
freezes the server's event loop, like a SIGSTOPped process or a dead network link: the port still
accepts TCP connections but nothing answers and no value changes. A real ``twin plant serve``
process SIGKILLed and restarted is covered by tests/integration/test_collector_faults.py.

:func:`check_store` is what every fault test asserts after each fault: every Parquet file reads
(no torn file), no (tag, ts) is stored twice, nothing was quarantined.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
from asyncua import Server

from connectors.sim.base import SimPlant
from connectors.sim.server import PlantServer
from twin.store.historian import Historian

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
import collector_helpers

__all__ = [
    "Fault",
    "FaultyServer",
    "check_holes",
    "check_store",
    "collector_helpers",
    "faulty",
]

#: how long a server may take to come up on a loaded 2-core CI machine
START_TIMEOUT = 90.0


@dataclass(frozen=True)
class Fault:
    """One planted fault: what it was and the wall-clock window it lasted."""

    kind: str
    start: datetime
    end: datetime

    def covers(self, t0: datetime, t1: datetime, before: float, after: float) -> bool:
        """Whether ``[t0, t1]`` lies within this fault's window widened by the given seconds."""
        return self.start - timedelta(seconds=before) <= t0 and t1 <= self.end + timedelta(
            seconds=after
        )


class FaultyServer:
    """A :class:`PlantServer` in a background thread that a test can restart and freeze."""

    def __init__(self, plant: SimPlant, speed: float) -> None:
        self.plant = plant
        self.speed = speed
        self.loop = asyncio.new_event_loop()
        self.server: PlantServer | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, daemon=True, name="faulty-server")
        self._started = threading.Event()
        self._error: BaseException | None = None
        self.faults: list[Fault] = []

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._serve())
        # sessions of clients cut off by a restart leave asyncua tasks behind: end them quietly
        left = asyncio.all_tasks(self.loop)
        for task in left:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        try:
            async with PlantServer(self.plant, port=0, speed=self.speed) as server:
                # pin the bound port so that a restart listens where the clients look
                server.server.set_endpoint(server.endpoint)
                self.server = server
                self._started.set()
                await self._stop.wait()
        except BaseException as exc:  # handed to the test thread
            self._error = exc
        finally:
            self._started.set()

    def __enter__(self) -> FaultyServer:
        self._thread.start()
        assert self._started.wait(START_TIMEOUT), "plant server did not start"
        if self._error is not None:
            raise RuntimeError("plant server failed to start") from self._error
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        self.loop.close()

    @property
    def endpoint(self) -> str:
        assert self.server is not None
        return self.server.endpoint

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.port

    def _call(self, coro: object, timeout: float = START_TIMEOUT) -> None:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)  # type: ignore[arg-type]
        future.result(timeout)

    def restart(self, down_s: float) -> Fault:
        """Stop the OPC-UA service (sessions and sockets closed), wait, start it again."""
        assert self.server is not None
        ua_server = self.server.server
        start = datetime.now(UTC)
        self._call(_stop_service(ua_server))
        time.sleep(down_s)
        self._call(ua_server.start())
        collector_helpers.wait_port(self.port)
        fault = Fault("restart", start, datetime.now(UTC))
        self.faults.append(fault)
        return fault

    def stall(self, seconds: float) -> Fault:
        """Freeze the server for ``seconds``: no answer, no new value (its loop is blocked)."""
        start = datetime.now(UTC)
        frozen = threading.Event()

        def freeze() -> None:
            frozen.set()
            time.sleep(seconds)

        self.loop.call_soon_threadsafe(freeze)
        assert frozen.wait(10), "server loop did not pick up the stall"
        time.sleep(seconds)
        # the loop runs again once the sleep returns; wait for one more loop turn to be sure
        self._call(asyncio.sleep(0))
        fault = Fault("stall", start, datetime.now(UTC))
        self.faults.append(fault)
        return fault


async def _stop_service(ua_server: Server) -> None:
    """Stop an asyncua server's service, refusing new connections first.

    asyncua closes the open connections, then the listening socket, then waits until every
    connection is gone: a client reconnecting in between would hold that wait forever.
    """
    bserver = ua_server.bserver
    listener = getattr(bserver, "_server", None)
    if listener is not None:
        listener.close()
    await ua_server.stop()


@contextlib.contextmanager
def faulty(plant: SimPlant, speed: float) -> Iterator[FaultyServer]:
    """``with faulty(plant, speed) as server:`` a restartable, freezable plant server."""
    with FaultyServer(plant, speed) as server:
        yield server


def check_store(
    root: Path, tags: Sequence[str] | None = None, *, quiet: bool = False
) -> pl.DataFrame:
    """Assert the store under ``root`` is whole; return its rows (the historian's read).

    Every ``*.parquet`` file opens and reads in full with pyarrow (a torn file would not), the
    historian reads the store without quarantining anything and with no (tag, ts) twice. With
    ``quiet`` (no writer running), the files as stored hold no (tag, ts) twice either, as any
    other Parquet reader sees them, and exactly the rows the historian reads.
    """
    history = Historian(root)  # a fresh open, as a later process would: recovery runs first
    stored = []
    for path in sorted(root.glob("day=*/*.parquet")):
        try:
            table = pq.read_table(path)
        except FileNotFoundError:
            continue  # compacted away by the running collector meanwhile
        stored.append(pl.from_arrow(table).select("tag", "ts"))
    rows = history.read(tags)
    quarantine = root / "quarantine"
    quarantined = list(quarantine.rglob("*.corrupt")) if quarantine.exists() else []
    assert not quarantined, f"files were quarantined: {quarantined}"
    dup = rows.group_by("tag", "ts").len().filter(pl.col("len") > 1)
    assert dup.is_empty(), f"duplicate rows in the historian's read: {dup.head()}"
    if quiet and stored:
        raw = pl.concat(stored)  # type: ignore[arg-type]
        if tags is not None:
            raw = raw.filter(pl.col("tag").is_in(list(tags)))
        twice = raw.group_by("tag", "ts").len().filter(pl.col("len") > 1)
        assert twice.is_empty(), f"(tag, ts) stored in more than one file: {twice.head()}"
        assert raw.height == rows.height
    return rows


def check_holes(
    rows: pl.DataFrame,
    faults: Sequence[Fault],
    *,
    before: float,
    after: float,
    longest: float | None = None,
    start: datetime | None = None,
) -> pl.DataFrame:
    """Assert every hole in each tag's samples lies within a planted fault; return the holes.

    With ``longest``, a hole is a step of more than ``longest`` seconds between samples. Without
    it the values are the toy server's counters (collector_helpers.toy_server: +1 per update),
    and a hole is a step other than +1: samples the server sent that were not stored, however
    late a busy server sent them. A hole, from the sample before it to the one after, must fit
    a fault's window widened by ``before`` seconds at its start and ``after`` at its end.
    """
    data = rows if start is None else rows.filter(pl.col("ts") >= start)
    step = (
        (pl.col("ts") - pl.col("t0")) > timedelta(seconds=longest)
        if longest is not None
        else (pl.col("value").diff().over("tag") - 1.0).abs() > 1e-6
    )
    holes = (
        data.sort("tag", "ts")
        .with_columns(t0=pl.col("ts").shift(1).over("tag"))
        .filter(step & pl.col("t0").is_not_null())
        .select("tag", "t0", t1="ts")
    )
    for tag, t0, t1 in holes.iter_rows():
        assert any(f.covers(t0, t1, before, after) for f in faults), (
            f"{tag}: samples lost from {t0} to {t1}, outside any planted fault {faults}"
        )
    return holes
