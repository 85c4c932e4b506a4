"""``twin spec``: draft a plant spec from a live OPC-UA server (``discover``) or an export (``infer``).

Each action lives in its own module with a ``register(subparsers)``; this one only groups them.
"""

from __future__ import annotations

import argparse

from twin.cli import spec_discover, spec_infer


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "spec",
        help="draft a plant spec from an OPC-UA server or a CSV/Parquet export",
        description="Write a plant spec draft for an engineer to confirm: 'discover' browses a "
        "live OPC-UA server, 'infer' reads a historian export.",
    )
    actions = p.add_subparsers(dest="spec_action", metavar="ACTION", required=True)
    spec_discover.register(actions)
    spec_infer.register(actions)
