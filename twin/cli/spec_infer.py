"""``twin spec infer``: draft a plant spec from a CSV/Parquet export (:mod:`connectors.infer`)."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from twin.cli.files import add_read_args, column_tag, mapping, read_options
from twin.errors import TwinError


def register(actions: argparse._SubParsersAction) -> None:
    p = actions.add_parser(
        "infer",
        help="draft a spec from a CSV/Parquet export",
        description="Write a spec draft for the export FILE: one tag per numeric column (a "
        "valid tag name made from the column's, the column kept as the tag's 'column'), the "
        "sample period from the median time spacing, lo/hi from the 0.5%/99.5% quantiles "
        "with a 10% margin, roles from --cv/--mv/--dv (other columns: DV, to confirm), units "
        "empty unless --unit. The draft has no OPC-UA node ids: it serves import, train, "
        "evaluate and what-if as it is; its comments, and the lines printed, say what is left "
        "to confirm or fill.",
    )
    p.add_argument("--input", required=True, type=Path, metavar="FILE", help="CSV or Parquet file")
    p.add_argument("--out", required=True, type=Path, metavar="SPEC", help="TOML file to write")
    p.add_argument("--name", help="plant name (default: from the file name)")
    for role, what in (("cv", "controlled"), ("mv", "manipulated"), ("dv", "disturbance")):
        p.add_argument(
            f"--{role}", type=names, action="extend", default=[], metavar="A,B",
            help=f"columns (or tag names) of the {what} variables",
        )  # fmt: skip
    p.add_argument(
        "--map", type=column_tag, action="append", default=[], metavar="COL=TAG",
        help="name the tag of column COL (repeatable; default: made from the column's name)",
    )  # fmt: skip
    p.add_argument(
        "--unit", type=column_tag, action="append", default=[], metavar="COL=UNIT",
        help="unit of a column or tag (repeatable; default: empty, to fill)",
    )  # fmt: skip
    p.add_argument("--force", action="store_true", help="overwrite SPEC if it exists")
    add_read_args(p)
    p.set_defaults(func=_infer)


def names(text: str) -> list[str]:
    """``A,B,C`` as a list (blanks dropped)."""
    return [n.strip() for n in text.split(",") if n.strip()]


def _infer(args: argparse.Namespace) -> int:
    from connectors.infer import infer_spec
    from twin.spec import load_spec
    from twin.store.jsonl import replace_text

    if args.out.exists() and not args.force:
        raise TwinError(f"{args.out} exists: give --force to overwrite it")
    if not args.out.parent.is_dir():
        raise TwinError(f"{args.out}: no folder {args.out.parent}")
    draft = infer_spec(
        args.input,
        read_options(args),
        name=args.name,
        cv=args.cv,
        mv=args.mv,
        dv=args.dv,
        names=mapping(args.map),
        units=dict(args.unit),
    )
    replace_text(args.out, draft.toml)
    spec = load_spec(args.out)  # what the engineer will load
    counts = ", ".join(f"{len(spec.by_role(r))} {r.upper()}" for r in ("cv", "mv", "dv"))
    print(
        f"wrote {args.out}: plant {spec.name!r}, {len(spec.tags)} tags ({counts}), sample period "
        f"{spec.sample_period:g} s (median spacing of {draft.rows} rows)"
    )
    print("left to confirm or fill (marked in the file's comments):")
    for line in draft.to_fill:
        print(f"  - {line}")
    print(
        f"then: twin import --spec {args.out} --input {args.input} --historian DIR{_read_flags(args)}"
    )
    return 0


def _read_flags(args: argparse.Namespace) -> str:
    """The reading options given, as ``twin import`` takes them."""
    flags = {
        "--format": args.format,
        "--ts-column": args.ts_column,
        "--delimiter": args.delimiter,
        "--time-format": args.time_format,
        "--tz": None if args.tz == "UTC" else args.tz,
    }
    out = [f"{k} {shlex.quote(v)}" for k, v in flags.items() if v is not None]
    if args.decimal_comma is not None:
        out.append("--decimal-comma" if args.decimal_comma else "--no-decimal-comma")
    if args.dayfirst:
        out.append("--dayfirst")
    return "".join(f" {f}" for f in out)
