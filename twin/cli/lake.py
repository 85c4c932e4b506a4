"""``twin lake add | list``: a lake of many plants, one historian folder per ``plant=NAME``.

The commands that take ``--historian DIR`` also take ``--lake ROOT --plant NAME`` for the
historian ``ROOT/plant=NAME`` (:func:`twin.cli.args.add_historian_arg`); see
:mod:`twin.store.lake` for the layout and reading all plants at once.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from twin.cli.args import plant_name


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "lake",
        help="a lake of many plants: move a historian in, list the plants",
        description="A lake is one folder holding one historian folder per plant, "
        "ROOT/plant=NAME/day=YYYY-MM-DD/... (Hive-style, readable by Spark, DuckDB or polars "
        "as it is). Commands that take --historian DIR also take --lake ROOT --plant NAME.",
    )
    cmds = p.add_subparsers(dest="lake_command", metavar="COMMAND", required=True)
    # dests other than lake/plant: those mean a historian to the commands of add_historian_arg
    add = cmds.add_parser(
        "add",
        help="move a historian folder into a lake as one plant",
        description="Move the historian folder DIR to ROOT/plant=NAME with one atomic rename "
        "(stop its collector first). A lake on another filesystem is refused, nothing moved.",
    )
    add.add_argument("source", type=Path, metavar="DIR", help="the historian folder to move")
    add.add_argument("--lake", dest="lake_root", required=True, type=Path, metavar="ROOT")
    add.add_argument(
        "--plant", dest="plant_name", required=True, type=plant_name, metavar="NAME",
        help="the plant's name in the lake (letters, digits, _ . -; e.g. its spec's name)",
    )  # fmt: skip
    add.set_defaults(func=_add)
    ls = cmds.add_parser("list", help="list a lake's plants with their day range and files")
    ls.add_argument("--lake", dest="lake_root", required=True, type=Path, metavar="ROOT")
    ls.set_defaults(func=_list)


def _add(args: argparse.Namespace) -> int:
    from twin.store.lake import Lake

    dest = Lake(args.lake_root).add(args.source, args.plant_name)
    print(f"moved {args.source} to {dest}: use --lake {args.lake_root} --plant {args.plant_name}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from twin.store.lake import Lake

    lake = Lake(args.lake_root)
    plants = lake.plants()
    if not plants:
        print(f"no plants in {lake.root}")
        return 0
    print(f"{'plant':<24} {'first day':<10}  {'last day':<10}  {'days':>5} {'files':>6} {'MB':>9}")
    for name in plants:
        i = lake.info(name)
        first = i.first_day.isoformat() if i.first_day else "-"
        last = i.last_day.isoformat() if i.last_day else "-"
        print(f"{name:<24} {first:<10}  {last:<10}  {i.days:>5} {i.files:>6} {i.bytes / 1e6:>9.1f}")
    return 0
