"""``twin demo``: serve a simulated plant over OPC-UA and watch its tags live through a subscription.

An interim demo: the plant server runs in this process on a free loopback port, an asyncua client
subscribes to every spec tag (plus ``Tripped``) and the terminal shows each tag's latest value,
unit, status and source time. Later the collector, the twin and the dashboard take its place.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

from twin.spec import PlantSpec

if TYPE_CHECKING:
    from connectors.sim.base import SimPlant

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    from twin.cliargs import positive_float

    p = sub.add_parser(
        "demo",
        help="serve a simulated plant and watch it live over OPC-UA",
        description="Start a simulated plant's OPC-UA server on a free 127.0.0.1 port, subscribe "
        "to its tags and show them live until Ctrl-C (or --duration).",
    )
    p.add_argument("--plant", default="cstr", help="built-in plant (see `twin plant list`)")
    p.add_argument("--speed", type=positive_float, default=10.0, help="times faster than real time")
    p.add_argument("--seed", type=int, default=0, help="seed of the plant's noise")
    p.add_argument(
        "--duration",
        type=positive_float,
        default=None,
        help="stop after S seconds (default: Ctrl-C)",
    )
    p.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from connectors.plant_cli import quiet_asyncua
    from connectors.sim import make_plant

    plant = make_plant(args.plant, seed=args.seed)  # an unknown name exits 2 via twin.cli
    quiet_asyncua(args)
    received = asyncio.run(watch_plant(plant, speed=args.speed, duration=args.duration))
    return 0 if received else 1


@dataclass(frozen=True)
class Reading:
    """The latest DataValue of one tag, as the subscription delivered it."""

    value: Any
    status: str  # good / uncertain / bad (the StatusCode's name when not good)
    source_ts: datetime | None


class _Latest:
    """Subscription handler: the latest Reading per tag, and how many notifications came."""

    def __init__(self, names: dict[Any, str]) -> None:
        self.names = names  # node id -> tag name
        self.readings: dict[str, Reading] = {}
        self.count = 0

    def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
        dv = data.monitored_item.Value  # the DataValue: value, status and timestamps
        label = "good" if dv.StatusCode.is_good() else dv.StatusCode.name
        value = dv.Value.Value if dv.Value is not None else None
        self.readings[self.names[node.nodeid]] = Reading(value, label, dv.SourceTimestamp)
        self.count += 1


async def watch_plant(
    plant: SimPlant,
    *,
    speed: float = 10.0,
    duration: float | None = None,
    out: TextIO | None = None,
) -> int:
    """Serve ``plant`` on a free loopback port and show its tags live; return updates received."""
    out = out or sys.stdout  # looked up per call, not bound at import
    from asyncua import Client, ua

    from connectors.sim.server import PlantServer, stop_on_signals, trip_nodes

    stop = asyncio.Event()
    stop_on_signals(stop)
    spec = plant.spec
    async with PlantServer(plant, port=0, speed=speed) as server:
        client = Client(server.endpoint)
        client.session_timeout = 600_000  # what asyncua servers grant; no warning on connect
        async with client:
            namespaces = await client.get_namespace_array()
            refs = {t.name: t.node for t in spec.tags} | {"Tripped": trip_nodes(spec)[0]}
            nodes = {name: client.get_node(ref.resolve(namespaces)) for name, ref in refs.items()}
            latest = _Latest({node.nodeid: name for name, node in nodes.items()})
            interval_ms = min(max(server.period * 500, 50.0), 500.0)
            params = ua.CreateSubscriptionParameters(
                RequestedPublishingInterval=interval_ms,
                RequestedMaxKeepAliveCount=ua.UInt32(10_000 // interval_ms),  # ~10 s, below caps
                RequestedLifetimeCount=ua.UInt32(10_000),
            )
            sub = await client.create_subscription(params, latest)
            await sub.subscribe_data_change(list(nodes.values()))
            until = "Ctrl-C" if duration is None else f"{duration:g} s"
            print(
                f"{spec.name}: {spec.description}\nserved at {server.endpoint}, x{speed:g} real "
                f"time; watching {len(spec.tags)} tags ({until})",
                file=out,
                flush=True,
            )
            refresh = min(max(server.period, 0.2), 1.0)
            await _show(spec, latest.readings, stop, duration, out, refresh)
            await sub.delete()
    print(f"received {latest.count} updates from {spec.name}", file=out, flush=True)
    return latest.count


async def _show(
    spec: PlantSpec,
    latest: dict[str, Reading],
    stop: asyncio.Event,
    duration: float | None,
    out: TextIO,
    refresh: float,
) -> None:
    """Redraw the table in place on a terminal; elsewhere print one line per refresh."""
    tty = out.isatty()
    end = None if duration is None else time.monotonic() + duration
    drawn = 0
    shown: dict[str, Reading] = {}
    while not stop.is_set():
        wait = refresh if end is None else min(refresh, end - time.monotonic())
        if wait <= 0:
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), wait)
        if latest == shown:
            continue
        shown = dict(latest)
        if tty:
            lines = _table(spec, shown)
            up = f"\x1b[{drawn}F" if drawn else ""
            out.write(up + "".join(f"\x1b[2K{line}\n" for line in lines))
            drawn = len(lines)
        else:
            out.write(_line(spec, shown) + "\n")
        out.flush()


def _fmt(reading: Reading | None) -> str:
    if reading is None:
        return "-"
    if reading.status != "good":
        return reading.status
    return f"{reading.value:.5g}" if isinstance(reading.value, float) else str(reading.value)


def _table(spec: PlantSpec, latest: dict[str, Reading]) -> list[str]:
    lines = [f"{'tag':8s} {'value':>10s} {'unit':8s} {'status':10s} source time"]
    for tag in spec.tags:
        r = latest.get(tag.name)
        ts = r.source_ts.strftime("%H:%M:%S.%f")[:-3] if r and r.source_ts else ""
        status = r.status if r else ""
        lines.append(f"{tag.name:8s} {_fmt(r):>10s} {tag.unit:8s} {status:10s} {ts}")
    trip = latest.get("Tripped")
    lines.append(f"tripped: {trip.value if trip else '-'}")
    return lines


def _line(spec: PlantSpec, latest: dict[str, Reading]) -> str:
    stamps = [r.source_ts for r in latest.values() if r.source_ts]
    when = max(stamps).strftime("%H:%M:%S.%f")[:-3] if stamps else "--:--:--"
    cells = [f"{t.name}={_fmt(latest.get(t.name))} {t.unit}" for t in spec.tags]
    trip = latest.get("Tripped")
    if trip is not None and trip.value:
        cells.append("TRIPPED")
    return f"{when}  " + "  ".join(cells)
