"""The built-in simulated plants by name: ``PLANTS`` and ``make_plant``."""

from __future__ import annotations

from connectors.sim.base import SimPlant
from connectors.sim.cstr import CSTR
from connectors.sim.quadtank import QuadTank
from connectors.sim.woodberry import WoodBerry
from twin.errors import TwinError

#: name -> plant class, for ``twin plant list`` and ``make_plant``
PLANTS: dict[str, type[SimPlant]] = {"cstr": CSTR, "quadtank": QuadTank, "woodberry": WoodBerry}


class UnknownPlantError(TwinError, ValueError):
    """No built-in plant has that name (the CLI reports it and exits 2)."""


def make_plant(name: str, seed: int = 0, *, noise: bool = True) -> SimPlant:
    """A fresh simulated plant by name; UnknownPlantError listing the known plants otherwise."""
    try:
        cls = PLANTS[name]
    except KeyError:
        raise UnknownPlantError(
            f"unknown plant {name!r}; built-in plants: {sorted(PLANTS)}"
        ) from None
    return cls(seed=seed, noise=noise)


__all__ = ["PLANTS", "SimPlant", "UnknownPlantError", "make_plant"]
