"""``twin plant list | serve | record``: run the built-in simulated plants."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    plant = sub.add_parser(
        "plant", help="simulated plants: list, serve over OPC-UA, record history"
    )
    psub = plant.add_subparsers(dest="plant_command", metavar="ACTION", required=True)

    p = psub.add_parser("list", help="list the built-in plants")
    p.set_defaults(func=_list)


def _list(args: argparse.Namespace) -> int:
    from connectors.sim import PLANTS

    for name, cls in sorted(PLANTS.items()):
        plant = cls(noise=False)
        spec = plant.spec
        tags = ", ".join(f"{t.name} [{t.unit}] {t.role}" for t in spec.tags)
        print(f"{name:10s} {spec.description}\n{'':10s} every {spec.sample_period:g} s: {tags}")
    return 0
