"""The load side of the ingest benchmark: a plant server with N tags and a bare counting client.

``serve`` runs an asyncua server on 127.0.0.1 with ``N`` Double variables (``nsu=URI;s=tag0001``
...) and writes a new value with a source timestamp to every one of them ``rate`` times a second.
``count`` is a bare asyncua client: one subscription on all tags whose data-change callback only
counts. Both write a JSON status file about once a second (and on exit) holding their counts per
whole second of source timestamp, so that the benchmark can compare the server, the bare client
and the collector over the same window of plant time.

    python benchmarks/loadserver.py serve --port 4840 --tags 1000 --rate 10 --status s.json
    python benchmarks/loadserver.py count --endpoint opc.tcp://127.0.0.1:4840/load/ \
        --tags 1000 --rate 10 --duration 60 --status c.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import signal
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asyncua import Client, Server, ua

LOAD_URI = "urn:process-twin:bench:load"
log = logging.getLogger("benchmarks.loadserver")


def tag_name(i: int) -> str:
    """Name (and string node id) of the i-th load tag, from 1."""
    return f"tag{i:04d}"


def publishing_interval_s(rate: float) -> float:
    """The publishing interval both clients use: half the update period, at most 0.5 s."""
    return min(0.5, 0.5 / rate)


def write_spec(path: Path, n_tags: int, rate: float) -> Path:
    """A plant spec TOML for the load server's tags, so that ``twin collect`` can use it."""
    lines = ['[plant]\nname = "load"', f"sample_period_s = {1.0 / rate!r}"]
    for i in range(1, n_tags + 1):
        lines.append(
            f'[[tags]]\nname = "{tag_name(i)}"\nnode = "nsu={LOAD_URI};s={tag_name(i)}"\n'
            'unit = "-"\nrole = "dv"\nlo = -1e9\nhi = 1e9'
        )
    path.write_text("\n\n".join(lines) + "\n", encoding="utf-8")
    return path


def _dump(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)


def _stop_event() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def serve(port: int, n_tags: int, rate: float, status: Path) -> None:
    """Serve ``n_tags`` Doubles, each updated every 1/rate s, until SIGINT / SIGTERM."""
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/load/")
    idx = await server.register_namespace(LOAD_URI)
    folder = await server.nodes.objects.add_folder(idx, "load")
    ids = []
    for i in range(1, n_tags + 1):
        node = await folder.add_variable(
            ua.NodeId(tag_name(i), idx), tag_name(i), 0.0, varianttype=ua.VariantType.Double
        )
        ids.append(node.nodeid)
    stop = _stop_event()
    per_s: Counter[int] = Counter()
    ticks = late = 0
    period = 1.0 / rate
    async with server:
        started = time.time()
        last_dump = 0.0
        _dump(status, {"ready": True, "started": started, "updates": 0, "per_s": {}})
        while not stop.is_set():
            now = datetime.now(UTC)
            for j, nodeid in enumerate(ids):
                dv = ua.DataValue(
                    ua.Variant(ticks + j * 1e-4, ua.VariantType.Double),
                    SourceTimestamp=now,
                    ServerTimestamp=now,
                )
                await server.write_attribute_value(nodeid, dv)
            per_s[math.floor(now.timestamp())] += len(ids)
            ticks += 1
            wait = started + ticks * period - time.time()
            if wait < 0:  # the server cannot keep up: next tick at once, and count it
                late += 1
            t = time.time()
            if t - last_dump >= 1.0:
                last_dump = t
                _dump(status, _server_status(started, ticks, late, per_s))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, wait))
        _dump(status, _server_status(started, ticks, late, per_s))


def _server_status(started: float, ticks: int, late: int, per_s: Counter[int]) -> dict[str, Any]:
    return {
        "ready": True,
        "started": started,
        "elapsed": time.time() - started,
        "ticks": ticks,
        "late_ticks": late,
        "updates": sum(per_s.values()),
        "per_s": {str(k): v for k, v in per_s.items()},
    }


class _Counting:
    """Subscription handler that only counts, by whole second of source timestamp."""

    def __init__(self) -> None:
        self.total = 0
        self.per_s: Counter[int] = Counter()
        self.last_at = 0.0

    def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
        self.total += 1
        self.last_at = time.time()
        ts = data.monitored_item.Value.SourceTimestamp
        if ts is not None:
            ts = ts if ts.tzinfo else ts.replace(tzinfo=UTC)
            self.per_s[math.floor(ts.timestamp())] += 1

    def status_change_notification(self, status: Any) -> None:
        log.warning("subscription status changed: %s", status)


async def count(endpoint: str, n_tags: int, rate: float, duration: float, status: Path) -> None:
    """Subscribe to every load tag for ``duration`` seconds and count the notifications."""
    handler = _Counting()
    stop = _stop_event()
    # the collector's request timeout and watchdog; a lost session is restored (auto_reconnect)
    client = Client(endpoint, timeout=4.0, watchdog_intervall=1.0, auto_reconnect=True)
    async with client:
        idx = await client.get_namespace_index(LOAD_URI)
        nodes = [client.get_node(ua.NodeId(tag_name(i), idx)) for i in range(1, n_tags + 1)]
        interval_ms = publishing_interval_s(rate) * 1000
        params = ua.CreateSubscriptionParameters(
            RequestedPublishingInterval=interval_ms,
            RequestedMaxKeepAliveCount=max(1, math.ceil(1000 / interval_ms)),
            RequestedLifetimeCount=max(30, math.ceil(60_000 / interval_ms)),
            MaxNotificationsPerPublish=0,
            PublishingEnabled=True,
        )
        sub = await client.create_subscription(params, handler)
        # the same item settings as the collector: fastest sampling, a queue of 16 per item
        await sub.subscribe_data_change(nodes, queuesize=16, sampling_interval=0.0)
        started = time.time()
        deadline = started + duration
        while not stop.is_set() and time.time() < deadline:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), min(1.0, deadline - time.time()))
            _dump(status, _count_status(started, handler))
        await sub.delete()
    _dump(status, {**_count_status(started, handler), "done": True})


def _count_status(started: float, handler: _Counting) -> dict[str, Any]:
    return {
        "started": started,
        "elapsed": time.time() - started,
        "notifications": handler.total,
        "last_notification_at": handler.last_at,
        "per_s": {str(k): v for k, v in handler.per_s.items()},
    }


def main() -> None:
    """Command line: ``serve`` or ``count`` (see the module doc)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="run the load server")
    s.add_argument("--port", type=int, required=True)
    c = sub.add_parser("count", help="run the bare counting client")
    c.add_argument("--endpoint", required=True)
    c.add_argument("--duration", type=float, required=True)
    for p in (s, c):
        p.add_argument("--tags", type=int, default=1000)
        p.add_argument("--rate", type=float, default=1.0)
        p.add_argument("--status", type=Path, required=True, help="JSON status file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    if args.cmd == "serve":
        asyncio.run(serve(args.port, args.tags, args.rate, args.status))
    else:
        asyncio.run(count(args.endpoint, args.tags, args.rate, args.duration, args.status))


if __name__ == "__main__":
    main()
