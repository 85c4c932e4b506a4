"""Backfill benchmark: samples per second from an OPC-UA server's history into the historian.

A bare asyncua server in a child process on 127.0.0.1 serves ``--tags`` Double variables (the
load server's ``nsu=urn:process-twin:bench:load;s=tag0001`` ...) whose history storage (asyncua's
``HistoryDict``, in memory, answering at most 10,000 values per node per response) is pre-filled
with ``--hours`` of samples every ``--period`` seconds. Then :class:`connectors.backfill.Backfill`
(what ``twin backfill`` runs) reads all of it into a fresh historian, and once more (a rerun with
nothing missing). Every sample is checked stored once.

Printed and written to ``benchmarks/results/backfill.{json,md}``: samples, wall time, samples/s,
CPU seconds of the client (this process) and of the server, and the historian's size.

    nice -n 15 .venv/bin/python benchmarks/backfill.py            # 50 tags x 24 h every 10 s
    .venv/bin/python benchmarks/backfill.py --period 1            # 4.3 M samples, ~1.5 GB server
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing as mp
import platform
import socket
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from loadserver import LOAD_URI, tag_name, write_spec  # noqa: E402

log = logging.getLogger("benchmarks.backfill")
END = datetime(2026, 1, 2, tzinfo=UTC)  # history ends here (fixed: same data every run)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(port: int, n_tags: int, n_samples: int, period: float, ready: Any, stop: Any) -> None:
    """Child process: serve ``n_tags`` variables with ``n_samples`` each in history until ``stop``."""
    from asyncua import Server, ua
    from asyncua.server.history import HistoryDict

    async def main() -> None:
        server = Server()
        storage = HistoryDict()
        server.iserver.history_manager.set_storage(storage)
        await server.init()
        server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/load/")
        idx = await server.register_namespace(LOAD_URI)
        folder = await server.nodes.objects.add_folder(idx, "load")
        start = END - timedelta(seconds=period * n_samples)
        async with server:
            for i in range(1, n_tags + 1):
                node_id = ua.NodeId(tag_name(i), idx)
                node = await folder.add_variable(node_id, tag_name(i), 0.0)
                await server.historize_node_data_change(node, period=None, count=0)
                values = storage._datachanges[node_id]  # pre-filled in time order, as stored
                values.clear()  # the variable's initial value, stamped now: not history
                good = ua.StatusCode(ua.StatusCodes.Good)
                for k in range(n_samples):
                    ts = start + timedelta(seconds=period * k)
                    variant = ua.Variant(i + 0.001 * k, ua.VariantType.Double)
                    values.append(
                        ua.DataValue(
                            variant, StatusCode=good, SourceTimestamp=ts, ServerTimestamp=ts
                        )
                    )
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.2)

    logging.getLogger("asyncua").setLevel(logging.ERROR)
    asyncio.run(main())


async def backfill_once(
    spec: Any, endpoint: str, hist: Path, start: datetime, settings: Any
) -> Any:
    from connectors.backfill import Backfill
    from twin.store.historian import Historian

    job = Backfill(spec, endpoint, Historian(hist), start, END, settings=settings, progress=True)
    return await job.run()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tags", type=int, default=50)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--period", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--batch-nodes", type=int, default=10)
    parser.add_argument("--page-size", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=HERE / "results", help="report folder")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("asyncua").setLevel(logging.ERROR)

    from connectors.backfill import BackfillSettings
    from twin.spec import load_spec

    n_samples = round(args.hours * 3600 / args.period)
    total = n_samples * args.tags
    start = END - timedelta(seconds=args.period * n_samples)
    settings = BackfillSettings(batch_nodes=args.batch_nodes, page_size=args.page_size)
    port = free_port()
    ctx = mp.get_context("spawn")
    ready, stop = ctx.Event(), ctx.Event()
    child = ctx.Process(target=serve, args=(port, args.tags, n_samples, args.period, ready, stop))
    t0 = time.perf_counter()
    child.start()
    try:
        if not ready.wait(1800):
            raise SystemExit("the history server did not come up")
        log.info("server up with %d samples of history in %.0f s", total, time.perf_counter() - t0)
        server_proc = psutil.Process(child.pid)
        me = psutil.Process()
        with tempfile.TemporaryDirectory(prefix="backfill-bench-") as tmp:
            spec = load_spec(write_spec(Path(tmp) / "load.toml", args.tags, 1.0 / args.period))
            hist = Path(tmp) / "hist"
            endpoint = f"opc.tcp://127.0.0.1:{port}/load/"
            cpu0 = (sum(me.cpu_times()[:2]), sum(server_proc.cpu_times()[:2]))
            report = asyncio.run(backfill_once(spec, endpoint, hist, start, settings))
            cpu1 = (sum(me.cpu_times()[:2]), sum(server_proc.cpu_times()[:2]))
            rerun = asyncio.run(backfill_once(spec, endpoint, hist, start, settings))
            size = sum(f.stat().st_size for f in hist.rglob("*.parquet"))
            server_rss = server_proc.memory_info().rss
    finally:
        stop.set()
        child.join(30)
        if child.is_alive():
            child.kill()
    ok = report.samples == total and report.stored == total and rerun.stored == 0
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {psutil.cpu_count()} cores",
        "tags": args.tags,
        "hours": args.hours,
        "period_s": args.period,
        "samples": total,
        "batch_nodes": args.batch_nodes,
        "page_size": args.page_size,
        "seconds": round(report.seconds, 2),
        "samples_per_s": round(report.samples / report.seconds),
        "client_cpu_s": round(cpu1[0] - cpu0[0], 1),
        "server_cpu_s": round(cpu1[1] - cpu0[1], 1),
        "server_rss_mib": round(server_rss / 2**20),
        "historian_mib": round(size / 2**20, 1),
        "bytes_per_sample": round(size / max(1, total), 2),
        "rerun_seconds": round(rerun.seconds, 2),
        "rerun_new_rows": rerun.stored,
        "all_stored_once": ok,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "backfill.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    md = ["# Backfill benchmark", "", "| measure | value |", "|---|---|"]
    md += [f"| {k} | {v} |" for k, v in result.items()]
    (args.out / "backfill.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    print(
        f"backfill: {args.tags} tags x {args.hours:g} h every {args.period:g} s = {total:,} samples "
        f"in {report.seconds:.1f} s: {result['samples_per_s']:,} samples/s (client CPU "
        f"{result['client_cpu_s']} s, server CPU {result['server_cpu_s']} s); rerun "
        f"{rerun.seconds:.1f} s, {rerun.stored} new rows; "
        f"{'every sample stored once' if ok else 'MISMATCH'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
