"""Process-control digital twin: plant specs, historian, latent dynamics model, MPC.

The public API is re-exported here. This package learns from data alone: it never imports the
simulated plants in ``connectors.sim``.
"""

import importlib
from typing import TYPE_CHECKING, Any

from twin.errors import ConnectorError, DataQualityError, SimulationError, SpecError, TwinError
from twin.frames import FRAME_STATES, frame_report, make_frame
from twin.historian import QUALITIES, SCHEMA, Historian, quality_of
from twin.spec import NodeRef, PlantSpec, Tag, builtin_spec, load_spec, parse_spec

if TYPE_CHECKING:
    from twin.export import RecommendationLog, write_export
    from twin.forecast import Forecast
    from twin.model import TwinConfig
    from twin.mpc import Controller
    from twin.recommendation import MoveRec, Recommendation
    from twin.twin import Twin
    from twin.whatif import Scenario, WhatIf  # whatif() itself: twin.whatif.whatif

#: re-exported lazily: they import torch, which ``twin --help`` and the historian do not need
_LAZY = {
    "Controller": "twin.mpc",
    "Forecast": "twin.forecast",
    "MoveRec": "twin.recommendation",
    "Recommendation": "twin.recommendation",
    "RecommendationLog": "twin.export",
    "Scenario": "twin.whatif",
    "Twin": "twin.twin",
    "TwinConfig": "twin.model",
    "WhatIf": "twin.whatif",
    "write_export": "twin.export",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'twin' has no attribute {name!r}")


__all__ = [
    "FRAME_STATES",
    "QUALITIES",
    "SCHEMA",
    "ConnectorError",
    "Controller",
    "DataQualityError",
    "Forecast",
    "Historian",
    "MoveRec",
    "NodeRef",
    "PlantSpec",
    "Recommendation",
    "RecommendationLog",
    "Scenario",
    "SimulationError",
    "SpecError",
    "Tag",
    "Twin",
    "TwinConfig",
    "TwinError",
    "WhatIf",
    "builtin_spec",
    "frame_report",
    "load_spec",
    "make_frame",
    "parse_spec",
    "quality_of",
    "write_export",
]
