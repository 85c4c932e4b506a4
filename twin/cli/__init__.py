"""The ``twin`` command line. Each command group lives in its own module with a ``register``.

Command modules import their heavy dependencies inside their handlers, so ``twin --help`` is
fast and the learning code never pulls in the simulated plants.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from importlib.metadata import entry_points

from twin.cli.args import check_lake_args
from twin.errors import TwinError

#: modules that add sub-commands: each defines ``register(subparsers) -> None`` and sets
#: ``func`` on its parsers (``func(args) -> int`` is the exit status).
COMMAND_MODULES = [
    "twin.cli.collect",  # twin collect
    "twin.cli.backfill",  # twin backfill
    "twin.cli.certs",  # twin certs create
    "twin.cli.files",  # twin import | replay
    "twin.cli.spec",  # twin spec infer | discover
    "twin.cli.evaluate",  # twin evaluate
    "twin.cli.train",  # twin train
    "twin.cli.control",  # twin recommend
    "twin.cli.whatif",  # twin whatif
    "twin.cli.run",  # twin run
    "twin.cli.dashboard",  # twin dashboard
    "twin.cli.users",  # twin users add | list | remove | passwd | role
    "twin.cli.lake",  # twin lake add | list
    "twin.cli.frames",  # twin frames build
]

#: entry-point group of command modules that other packages add, declared in pyproject.toml:
#: the simulated plants add ``twin plant`` and ``twin demo`` this way, so the library (its
#: command line included) never imports ``connectors.sim``
PLUGIN_GROUP = "twin.commands"

log = logging.getLogger("twin")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="twin",
        description="Process-control digital twin: collect, learn, forecast, recommend.",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log verbosity",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for plugin in entry_points(group=PLUGIN_GROUP):
        plugin.load().register(sub)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_lake_args(parser, args)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args) or 0)
    except TwinError as exc:
        log.error("%s", exc)
        return 2
    except KeyboardInterrupt:
        log.info("interrupted")
        return 130
