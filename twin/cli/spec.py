"""``twin spec``: draft a plant spec from a live OPC-UA server (``discover``) or an export (``infer``).

Each action lives in its own module with a ``register(subparsers)``; this one only groups them.
"""

from __future__ import annotations

import argparse
import importlib

#: modules that add ``twin spec`` actions
ACTION_MODULES = [
    "twin.cli.spec_infer",  # twin spec infer --input EXPORT
    "twin.cli.spec_discover",  # twin spec discover --endpoint URL
]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "spec",
        help="draft a plant spec from an OPC-UA server or a CSV/Parquet export",
        description="Write a plant spec draft for an engineer to confirm: 'discover' browses a "
        "live OPC-UA server, 'infer' reads a historian export.",
    )
    actions = p.add_subparsers(dest="spec_action", metavar="ACTION", required=True)
    for name in ACTION_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # TEMPORARY while the actions are being written
            if exc.name != name:
                raise
            continue
        module.register(actions)
