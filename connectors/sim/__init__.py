"""Simulated plants with citable physics, and the OPC-UA server that serves them.

The twin never imports this package: it learns from data alone.
"""

from __future__ import annotations

from connectors.sim.base import SimPlant
from connectors.sim.cstr import CSTR
from connectors.sim.quadtank import QuadTank
from connectors.sim.woodberry import WoodBerry

#: name -> plant class, for ``twin plant list`` and ``make_plant``
PLANTS: dict[str, type[SimPlant]] = {"cstr": CSTR, "quadtank": QuadTank, "woodberry": WoodBerry}


def make_plant(name: str, seed: int = 0, *, noise: bool = True) -> SimPlant:
    """A fresh simulated plant by name; ValueError listing the known plants otherwise."""
    try:
        cls = PLANTS[name]
    except KeyError:
        raise ValueError(f"unknown plant {name!r}; built-in plants: {sorted(PLANTS)}") from None
    return cls(seed=seed, noise=noise)


__all__ = ["PLANTS", "SimPlant", "make_plant"]
