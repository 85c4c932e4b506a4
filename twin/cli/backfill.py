"""``twin backfill``: read a plant's history from its OPC-UA server (HistoryRead) into a historian.

Resumable (a rerun fetches only what is missing), stops cleanly on Ctrl-C with what arrived
stored, and exits non-zero only when no tag's history could be read.
"""

from __future__ import annotations

import argparse
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from twin.cli.args import add_historian_arg, aware_time, positive_int
from twin.cli.collect import add_connection_args, quiet_asyncua, security_from_args
from twin.errors import TwinError
from twin.spec import spec_from_arg

if TYPE_CHECKING:
    from connectors.backfill import Backfill, BackfillReport

log = logging.getLogger(__name__)

#: the options of ``add_connection_args`` a one-shot history read uses (the others, for a
#: subscription that reconnects, are accepted but hidden from ``--help``)
_USED = {"endpoint", "user", "password_file", "cert_auth", "cert", "key"}
_USED |= {"security_policy", "security_mode"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "backfill",
        help="read a plant's history from its OPC-UA server into a historian",
        description="Read the raw history of every tag of SPEC over [--start, --end) from the "
        "OPC-UA server at URL (HistoryRead, several nodes per request, page by page) and append "
        "each sample with its status code and source timestamp to the historian in DIR. A rerun "
        "fetches only what is missing: each tag starts after its last stored sample in the "
        "range. A tag the server keeps no history for is named and skipped. Ctrl-C stops with "
        "what arrived stored. The password for --user is read from $TWIN_OPCUA_PASSWORD.",
    )
    p.add_argument("--spec", required=True, help="plant spec: a TOML file or a built-in name")
    add_historian_arg(p)
    p.add_argument(
        "--start", required=True, type=aware_time, metavar="T", help="ISO 8601 with offset or Z"
    )
    p.add_argument(
        "--end", type=aware_time, metavar="T", help="ISO 8601 with offset or Z (default: now)"
    )
    p.add_argument(
        "--batch-nodes",
        type=positive_int,
        default=10,
        metavar="N",
        help="nodes per HistoryRead request (default 10; at most what the server allows)",
    )
    p.add_argument(
        "--page-size",
        type=positive_int,
        default=10_000,
        metavar="N",
        help="values per node per response (default 10000)",
    )
    p.add_argument(
        "--no-resume",
        action="store_true",
        help="read the whole range again, also for tags with samples stored in it "
        "(duplicates are dropped); e.g. to fill history before data collected live",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    before = len(p._actions)
    add_connection_args(p)
    for action in p._actions[before:]:
        if action.dest not in _USED:
            action.help = argparse.SUPPRESS
    p.set_defaults(func=_backfill)


def _backfill(args: argparse.Namespace) -> int:
    import asyncio

    from connectors.backfill import Backfill, BackfillSettings
    from connectors.opcua_security import check_endpoint

    spec = spec_from_arg(args.spec)
    endpoint = check_endpoint(args.endpoint)
    if args.historian.exists() and not args.historian.is_dir():
        raise TwinError(f"historian {args.historian} is a file, not a folder: name a folder")
    security = security_from_args(args)
    end = args.end or datetime.now(UTC)
    if args.start >= end:
        log.error("--start %s is not before --end %s", args.start.isoformat(), end.isoformat())
        return 2
    settings = BackfillSettings(
        batch_nodes=args.batch_nodes, page_size=args.page_size, resume=not args.no_resume
    )
    quiet_asyncua(args.log_level, security.password)
    job = Backfill(
        spec,
        endpoint,
        args.historian,
        args.start,
        end,
        settings=settings,
        security=security,
        progress=not args.no_progress,
    )
    report = asyncio.run(run_until_signal(job))
    rate = report.samples / report.seconds if report.seconds > 0 else 0.0
    print(
        f"backfilled {spec.name} from {endpoint}: {report.samples} samples of "
        f"{len(report.read) - len(report.no_history)} tags, {report.stored} new rows in "
        f"{args.historian} ({report.seconds:.1f} s, {rate:,.0f} samples/s)"
    )
    for title, tags in (("no history", report.no_history), ("failed", report.failed)):
        if tags:
            print(f"{title}: " + "; ".join(f"{t} ({why})" for t, why in tags.items()))
    if report.cancelled:
        print("interrupted: run the same command again to fetch the rest")
        return 130
    if not report.any_read:
        log.error("no tag's history could be read from %s", endpoint)
        return 1
    return 0


async def run_until_signal(job: Backfill) -> BackfillReport:
    """Run ``job`` until done or SIGINT / SIGTERM: then it releases its continuation points,
    stores what arrived and reports ``cancelled``."""
    import asyncio
    import contextlib
    import signal

    task = asyncio.create_task(job.run())
    loop = asyncio.get_running_loop()

    def on_signal(name: str) -> None:
        log.info("%s: stopping; what arrived is stored", name)
        task.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig.name)
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await task
        job.report.cancelled |= task.cancelled()  # also when cancelled before it connected
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return job.report
