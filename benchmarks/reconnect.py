"""How soon the collector has data again after an OPC-UA server restart, and how exact the gaps are.

    python benchmarks/reconnect.py                  # 10 restarts, prints p50 / p95 / max
    python benchmarks/reconnect.py --restarts 20 --down 3 --out reconnect.json

A real asyncua server on a free 127.0.0.1 port serves a few changing tags and one that never
changes (an MV parked at its setpoint: notified once per session, with its old timestamp). It
is stopped and started again ``--restarts`` times on the same port, a fresh server each time
(new address space, values stamped at its start-up, as a restarted plant server does). The
collector (:class:`connectors.opcua.OpcUaCollector`, default settings) runs throughout in the
same process. Per restart it measures, from the moment the new server listens:

- ``session_s``: until the collector's session is back (its items monitored: the gap's end);
- ``data_s``: until the first batch of rows reached the collector's consumer;

and checks the recorded gap against the hole: ``gap_start_late_s``, its start minus the last
sample received before the stop (0 to a keep-alive period: the gap starts at the last sample),
and ``covers_hole``: it starts no later than the stop and ends no earlier than the server
listened again (the end is when the session came back, never an old timestamp).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import socket
import statistics
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
from asyncua import Server, ua

from connectors.opcua import OpcUaCollector
from connectors.source import Gap
from twin.spec import PlantSpec, parse_spec
from twin.store.liveness import is_liveness

URI = "urn:process-twin:bench:reconnect"
STILL = "parked"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bench_spec(n_tags: int, period: float) -> PlantSpec:
    """``n_tags`` changing DVs ``x0..`` and the still MV :data:`STILL`."""
    lines = ['[plant]\nname = "bench"', f"sample_period_s = {period}"]
    for name in [f"x{i}" for i in range(n_tags)]:
        lines.append(
            f'[[tags]]\nname = "{name}"\nnode = "nsu={URI};s={name}"\nunit = "-"\n'
            'role = "dv"\nlo = -1e9\nhi = 1e9'
        )
    lines.append(
        f'[[tags]]\nname = "{STILL}"\nnode = "nsu={URI};s={STILL}"\nunit = "-"\nrole = "mv"\n'
        f'lo = 0.0\nhi = 100.0\nrate_limit = 1.0\nwrite_node = "nsu={URI};s={STILL}"'
    )
    return parse_spec("\n\n".join(lines) + "\n")


@dataclass
class Restart:
    """One restart as the collector saw it (seconds; gap errors positive when the gap is short)."""

    session_s: float
    """from the server listening to the session back (the recorded gap's end)"""
    data_s: float
    """from the server listening to the first rows at the collector's consumer"""
    gap_start_late_s: float
    """the gap's start minus the last sample received before the stop"""
    covers_hole: bool
    """the gap starts by the stop and ends once the server listened again"""


async def serve(port: int, spec: PlantSpec, stop: asyncio.Event, up: asyncio.Event) -> None:
    """A fresh server: every changing tag updated each period, the still one set once."""
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/bench/")
    idx = await server.register_namespace(URI)
    nodes = {}
    for tag in spec.tags:
        nodes[tag.name] = await server.nodes.objects.add_variable(
            f"ns={idx};s={tag.name}", tag.name, 50.0, varianttype=ua.VariantType.Double
        )
    await nodes[STILL].write_value(50.0)  # stamped now, never again
    async with server:
        up.set()
        k = 0
        while not stop.is_set():
            for name, node in nodes.items():
                if name != STILL:
                    await node.write_value(float(k))
            k += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), spec.sample_period)


async def measure(
    restarts: int = 10, down_s: float = 2.0, up_s: float = 2.0, n_tags: int = 4, period: float = 0.2
) -> list[Restart]:
    """Restart a server ``restarts`` times under a running collector; one :class:`Restart` each."""
    spec = bench_spec(n_tags, period)
    port = free_port()
    collector = OpcUaCollector(spec, f"opc.tcp://127.0.0.1:{port}/bench/")
    seen: list[tuple[float, pl.DataFrame | Gap]] = []  # (wall time, item)

    async def consume() -> None:
        async for item in collector.stream():
            seen.append((time.time(), item))

    stop, up = asyncio.Event(), asyncio.Event()
    server = asyncio.create_task(serve(port, spec, stop, up))
    await up.wait()
    consumer = asyncio.create_task(consume())
    results: list[Restart] = []
    try:
        await asyncio.sleep(up_s)
        for _ in range(restarts):
            stopped = time.time()
            stop.set()
            await server
            stopped_at = len(seen)
            await asyncio.sleep(down_s)
            stop, up = asyncio.Event(), asyncio.Event()
            server = asyncio.create_task(serve(port, spec, stop, up))
            await up.wait()
            listening = time.time()
            await asyncio.sleep(up_s)
            results.append(_restart(seen, stopped_at, stopped, listening))
    finally:
        collector.stop()
        stop.set()
        await asyncio.gather(consumer, server, return_exceptions=True)
    return results


def _restart(
    seen: list[tuple[float, pl.DataFrame | Gap]], stopped_at: int, stopped: float, listening: float
) -> Restart:
    wall, gap = next((w, g) for w, g in seen if isinstance(g, Gap) and w >= listening)
    before = [r for _, r in seen[:stopped_at] if isinstance(r, pl.DataFrame)]
    samples = ~is_liveness(pl.col("tag")) & (pl.col("tag") != STILL)
    last = pl.concat(before).filter(samples)["ts"].max()
    assert isinstance(last, datetime)
    return Restart(
        session_s=gap.end.timestamp() - listening,
        data_s=wall - listening,
        gap_start_late_s=(gap.start - last).total_seconds(),
        covers_hole=gap.start.timestamp() <= stopped and gap.end.timestamp() >= listening,
    )


def percentile(values: list[float], q: float) -> float:
    """The ``q``-quantile (0..1) of ``values``, linear between the order statistics."""
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--restarts", type=int, default=10)
    parser.add_argument("--down", type=float, default=2.0, help="seconds the server stays down")
    parser.add_argument("--up", type=float, default=2.0, help="seconds it runs between stops")
    parser.add_argument("--out", type=Path, help="write the measurements as JSON here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    results = asyncio.run(measure(args.restarts, args.down, args.up))
    summary = {}
    for key in ("session_s", "data_s", "gap_start_late_s"):
        values = [getattr(r, key) for r in results]
        summary[key] = {
            "p50": statistics.median(values),
            "p95": percentile(values, 0.95),
            "max": max(values),
        }
        print(
            f"{key:>17}: p50 {summary[key]['p50']:6.3f}  p95 {summary[key]['p95']:6.3f}  "
            f"max {summary[key]['max']:6.3f}"
        )
    print(f"gaps cover the hole: {sum(r.covers_hole for r in results)} of {len(results)}")
    print(
        f"{len(results)} restarts, server down {args.down:g} s each ({datetime.now(UTC):%Y-%m-%d})"
    )
    if args.out:
        doc = {"restarts": [asdict(r) for r in results], "summary": summary}
        args.out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
