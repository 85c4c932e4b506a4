"""``twin import`` (CSV/Parquet exports into a historian) and ``twin replay`` (a history, as live)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from twin.cli.args import add_historian_arg, aware_time
from twin.errors import TwinError
from twin.spec import spec_from_arg

if TYPE_CHECKING:
    from connectors.files_read import ReadOptions

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import",
        help="import a CSV or Parquet export into a historian",
        description="Append the samples of FILE to the historian in DIR. FILE is wide (a time "
        "column and one column per tag) or long ('ts', 'tag', 'value' and optionally "
        "'quality' or 'status'). A tag is read from the column of its name, its spec 'column' "
        "or --map COL=TAG. Times: ISO 8601 with an offset or Z, dd.mm.yyyy HH:MM:SS, "
        "mm/dd/yyyy (--dayfirst: dd/mm/yyyy), any --time-format, naive ones in --tz, or epoch "
        "seconds. Rows that cannot be used are listed with their line and reason; spec tags "
        "missing from FILE, values outside [lo, hi] (stored as uncertain) and MVs that never "
        "move are warned about by name. Exit "
        "status: 0 when samples were read, 1 when every row was bad, 2 when the file cannot be "
        "imported at all. MV values are read with the spec's mv_timing: by default the value at "
        "a row was held over the interval that ends at that row; an export of the MV applied "
        'from each row on needs mv_timing = "from_row" in the spec\'s [plant] table.',
    )
    p.add_argument("--spec", required=True, help="plant spec: a TOML file or a built-in name")
    p.add_argument("--input", required=True, type=Path, metavar="FILE", help="CSV or Parquet file")
    add_historian_arg(p)
    add_read_args(p)
    p.add_argument(
        "--map", type=column_tag, action="append", default=[], metavar="COL=TAG",
        help="read TAG from column COL (repeatable; default: a tag's spec 'column', else its name)",
    )  # fmt: skip
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
    add_historian_arg(p, help="target historian", metavar="OUT_DIR")
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


def add_read_args(p: argparse.ArgumentParser) -> None:
    """The options that say how an export is written (shared with ``twin spec infer``)."""
    g = p.add_argument_group("how the export is written (default: found out from the file)")
    g.add_argument(
        "--format", choices=["csv", "parquet"], help="file format (default: from the extension)"
    )
    g.add_argument(
        "--ts-column", metavar="NAME",
        help="time column (default: the one called ts, timestamp, time, datetime, date, ...)",
    )  # fmt: skip
    g.add_argument(
        "--delimiter", type=delimiter, metavar="C",
        help="CSV field separator, e.g. ';' or tab (default: ',' unless ';', tab or '|' splits "
        "the header into more fields)",
    )  # fmt: skip
    g.add_argument(
        "--decimal-comma", action=argparse.BooleanOptionalAction,
        help="numbers are written 1,5 (default: yes in a ';'-separated file)",
    )  # fmt: skip
    g.add_argument(
        "--time-format", metavar="FMT",
        help="strftime format of the times, e.g. '%%d.%%m.%%Y %%H:%%M:%%S' (%%z for an offset)",
    )  # fmt: skip
    g.add_argument(
        "--dayfirst", action="store_true", help="read 01/02/2024 as 1 February (default: 2 January)"
    )
    g.add_argument(
        "--tz", default="UTC", metavar="ZONE", help="IANA zone of naive times (default UTC)"
    )


def read_options(args: argparse.Namespace) -> ReadOptions:
    """:class:`~connectors.files_read.ReadOptions` from the options of :func:`add_read_args`."""
    from connectors.files_read import ReadOptions

    return ReadOptions(
        fmt=args.format,
        ts_column=args.ts_column,
        delimiter=args.delimiter,
        decimal_comma=args.decimal_comma,
        time_format=args.time_format,
        dayfirst=args.dayfirst,
        tz=args.tz,
    )


def column_tag(text: str) -> tuple[str, str]:
    """``COL=TAG`` (split at the last '=': a tag name has none) for ``--map``."""
    col, sep, tag = text.rpartition("=")
    if not sep or not col.strip() or not tag.strip():
        raise argparse.ArgumentTypeError(f"expected COL=TAG, got {text!r}")
    return col.strip(), tag.strip()


def delimiter(text: str) -> str:
    """One character; ``tab`` or ``\\t`` for a tab."""
    text = "\t" if text in ("tab", "\\t", "TAB") else text
    if len(text) != 1:
        raise argparse.ArgumentTypeError(f"a delimiter is one character (or 'tab'), got {text!r}")
    return text


def mapping(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """``--map`` pairs as a dict; TwinError for a column given twice."""
    out: dict[str, str] = {}
    for col, tag in pairs:
        if col in out and out[col] != tag:
            raise TwinError(f"--map: column {col!r} is mapped to both {out[col]!r} and {tag!r}")
        out[col] = tag
    return out


def _import(args: argparse.Namespace) -> int:
    from connectors.files import ImportFileError, import_file
    from twin.store.historian import Historian

    spec = spec_from_arg(args.spec)
    try:
        report = import_file(
            args.input,
            spec,
            Historian(args.historian),
            read_options(args),
            columns=mapping(args.map),
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
