"""The simulated plants by name: the named ones (``NAMED_PLANTS``), generated ``zoo-<n>``, simulated
sites ``site-<n>`` (several generated units side by side), and ``make_plant`` for all."""

from __future__ import annotations

from connectors.sim.base import SimPlant
from connectors.sim.cstr import CSTR
from connectors.sim.fedbatch import FedBatch
from connectors.sim.ph import PHNeutralisation
from connectors.sim.quadtank import QuadTank
from connectors.sim.recycle import ReactorFlashRecycle
from connectors.sim.site import SITE_PREFIX, SitePlant, site_index
from connectors.sim.woodberry import WoodBerry
from connectors.sim.zoo import ZOO_PREFIX, ZooPlant, zoo_index
from twin.errors import TwinError

#: the three plants the twin was first shaped on (name -> class): the existing benchmarks' and
#: integration tests' default set, kept as it was
PLANTS: dict[str, type[SimPlant]] = {"cstr": CSTR, "quadtank": QuadTank, "woodberry": WoodBerry}
#: plants of a character new to the project, each written from its paper (the zoo's physical
#: plants, see benchmarks/zoo.py)
NEW_PLANTS: dict[str, type[SimPlant]] = {
    "ph": PHNeutralisation,
    "recycle": ReactorFlashRecycle,
    "fedbatch": FedBatch,
}
#: every named plant, each with a spec in ``data/plants/``: for ``twin plant list``, ``make_plant``
NAMED_PLANTS: dict[str, type[SimPlant]] = {**PLANTS, **NEW_PLANTS}
#: how generated plants are named: ``zoo-0``, ``zoo-1``, ... (any n >= 0)
ZOO_NAMES = f"{ZOO_PREFIX}<n>"
#: how simulated sites are named: ``site-0``, ``site-1``, ... (any n >= 0)
SITE_NAMES = f"{SITE_PREFIX}<n>"


class UnknownPlantError(TwinError, ValueError):
    """No plant has that name (the CLI reports it and exits 2)."""


def is_plant_name(name: str) -> bool:
    """Whether ``make_plant`` knows ``name``: a named plant, ``zoo-<n>`` or ``site-<n>``."""
    return name in NAMED_PLANTS or zoo_index(name) is not None or site_index(name) is not None


def make_plant(name: str, seed: int = 0, *, noise: bool = True) -> SimPlant:
    """A fresh simulated plant by name (``seed``: its noise); UnknownPlantError otherwise.

    ``zoo-<n>`` is generated plant number n (:mod:`connectors.sim.generator`): the same n gives
    the same plant, the same seed the same noise; ``site-<n>`` likewise a site of generated units
    (:mod:`connectors.sim.site`).
    """
    index = zoo_index(name)
    if index is not None:
        return ZooPlant(index, seed=seed, noise=noise)
    index = site_index(name)
    if index is not None:
        return SitePlant(index, seed=seed, noise=noise)
    try:
        cls = NAMED_PLANTS[name]
    except KeyError:
        raise UnknownPlantError(
            f"unknown plant {name!r}; plants: {sorted(NAMED_PLANTS)}, or a generated one, "
            f"{ZOO_NAMES} (e.g. zoo-17), or a simulated site, {SITE_NAMES} (e.g. site-1)"
        ) from None
    return cls(seed=seed, noise=noise)


__all__ = [
    "NAMED_PLANTS",
    "NEW_PLANTS",
    "PLANTS",
    "SITE_NAMES",
    "ZOO_NAMES",
    "SimPlant",
    "UnknownPlantError",
    "is_plant_name",
    "make_plant",
]
