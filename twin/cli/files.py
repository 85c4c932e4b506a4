"""``twin import`` (CSV/Parquet exports into a historian) and ``twin replay`` (a history, as live)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass

from twin.cli.args import aware_time
from twin.spec import spec_from_arg

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import",
        help="import a CSV or Parquet export into a historian",
        description="Append the samples of FILE to the historian in DIR. FILE is wide (a 'ts' "
        "column and one column per tag) or long ('ts', 'tag', 'value' and optionally "
        "'quality' or 'status'). Times: ISO 8601 with an offset or Z, naive ones in --tz, or "
        "epoch seconds. Rows that cannot be used are listed with their line and reason. Exit "
        "status: 0 when samples were read, 1 when every row was bad, 2 when the file cannot be "
        "imported at all. MV values are read with the spec's mv_timing: by default the value at "
        "a row was held over the interval that ends at that row; an export of the MV applied "
        'from each row on needs mv_timing = "from_row" in the spec\'s [plant] table.',
    )
    p.add_argument("--spec", required=True, help="plant spec: a TOML file or a built-in name")
    p.add_argument("--input", required=True, type=Path, metavar="FILE", help="CSV or Parquet file")
    p.add_argument("--historian", required=True, type=Path, metavar="DIR", help="historian folder")
    p.add_argument(
        "--tz", default="UTC", metavar="ZONE", help="IANA zone of naive times (default UTC)"
    )
    p.add_argument(
        "--format", choices=["csv", "parquet"], help="file format (default: from the extension)"
    )
    p.add_argument("--ts-column", default="ts", metavar="NAME", help="time column (default ts)")
    p.add_argument(
        "--show", type=int, default=20, metavar="N", help="bad rows to list (default 20)"
    )
    p.set_defaults(func=_import)

    p = sub.add_parser(
        "replay",
        help="replay a stored history into another historian, as if it were live",
        description="Stream the history of SPEC's tags in --from into the historian in "
        "--historian at --speed times real time (0: as fast as possible), recorded gaps "
        "included, so that a dashboard or the control loop can run on OUT_DIR as if live.",
    )
    p.add_argument("--spec", required=True, help="plant spec: a TOML file or a built-in name")
    p.add_argument(
        "--from", dest="source", required=True, type=Path, metavar="DIR", help="stored history"
    )
    p.add_argument("--historian", required=True, type=Path, metavar="OUT_DIR", help="target")
    p.add_argument("--speed", type=float, default=1.0, help="times real time (0: no waiting)")
    p.add_argument("--start", type=aware_time, metavar="T", help="ISO 8601 time with offset")
    p.add_argument("--end", type=aware_time, metavar="T", help="ISO 8601 time with offset")
    p.add_argument(
        "--shift-to-now",
        action="store_true",
        help="shift timestamps so that the replay ends now (at speed 1: live timestamps)",
    )
    p.add_argument(
        "--flush-every", type=float, default=2.0, metavar="S", help="flush at least every S s"
    )
    p.set_defaults(func=_replay)


def _import(args: argparse.Namespace) -> int:
    from connectors.files import ImportFileError, import_file
    from twin.store.historian import Historian

    spec = spec_from_arg(args.spec)
    try:
        report = import_file(
            args.input,
            spec,
            Historian(args.historian),
            tz=args.tz,
            ts_column=args.ts_column,
            fmt=args.format,
        )
    except ImportFileError as exc:
        if exc.report is None or exc.report.rows_read == 0:
            raise
        print(exc.report.summary(args.show))
        print(f"nothing imported: every row of {exc.file} was bad")
        return 1
    print(report.summary(args.show))
    if spec.mvs:
        print(
            f"MVs will be read as mv_timing = {spec.mv_timing.value!r} ({spec.source}): the value "
            f"at a row is {spec.mv_timing.meaning}"
        )
    return 0


def _replay(args: argparse.Namespace) -> int:
    import asyncio

    from connectors.replay import ReplaySource
    from connectors.source import pump
    from twin.store.historian import Historian

    spec = spec_from_arg(args.spec)
    if args.source.resolve() == args.historian.resolve():
        log.error("--from and --historian are the same folder: replay into another one")
        return 2
    source = ReplaySource(
        args.source,
        spec,
        start=args.start,
        end=args.end,
        speed=args.speed,
        shift_to_now=args.shift_to_now,
    )
    stats = asyncio.run(pump(source, Historian(args.historian), flush_every_s=args.flush_every))
    print(
        f"replayed {stats.received} samples of {spec.name} into {args.historian}: "
        f"{stats.stored} stored, {stats.gaps} gaps, {stats.dropped} dropped"
    )
    return 0
