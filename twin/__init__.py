"""Process-control digital twin: plant specs, historian, latent dynamics model, MPC.

The public API is re-exported here. This package learns from data alone: it never imports the
simulated plants in ``connectors.sim``.
"""

from twin.errors import ConnectorError, DataQualityError, SimulationError, SpecError, TwinError
from twin.spec import NodeRef, PlantSpec, Tag, builtin_spec, load_spec, parse_spec

__all__ = [
    "ConnectorError",
    "DataQualityError",
    "NodeRef",
    "PlantSpec",
    "SimulationError",
    "SpecError",
    "Tag",
    "TwinError",
    "builtin_spec",
    "load_spec",
    "parse_spec",
]
