"""The ``twin`` command line. Each command group lives in its own module with a ``register``.

Command modules import their heavy dependencies inside their handlers, so ``twin --help`` is
fast and the learning code never pulls in the simulated plants.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from twin.errors import TwinError

#: modules that add sub-commands: each defines ``register(subparsers) -> None`` and sets
#: ``func`` on its parsers (``func(args) -> int`` is the exit status).
COMMAND_MODULES = [
    "connectors.plant_cli",  # twin plant list | serve | record
    "connectors.demo",  # twin demo
    "connectors.collect_cli",  # twin collect
    "connectors.certs_cli",  # twin certs create
    "connectors.files_cli",  # twin import | replay
    "twin.evaluate_cli",  # twin evaluate
    "twin.train_cli",  # twin train
    "twin.control_cli",  # twin recommend | whatif | run
    "dashboards.cli",  # twin dashboard
]

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
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
