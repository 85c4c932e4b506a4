"""Process-control digital twin: plant specs, historian, latent dynamics model, MPC.

The public API is re-exported here. This package learns from data alone: it never imports the
simulated plants in ``connectors.sim``.
"""

import importlib
from typing import TYPE_CHECKING, Any

from twin.errors import ConnectorError, DataQualityError, SimulationError, SpecError, TwinError
from twin.spec import NodeRef, PlantSpec, Tag, builtin_spec, load_spec, parse_spec
from twin.store.frames import FRAME_STATES, frame_report, make_frame
from twin.store.historian import Historian
from twin.store.schema import QUALITIES, SCHEMA, quality_of

if TYPE_CHECKING:
    from twin.control.controller import Controller
    from twin.control.export import write_export
    from twin.control.recommendation import MoveRec, Recommendation
    from twin.control.recommendation_log import RecommendationLog
    from twin.control.whatif import Scenario, WhatIf  # whatif() itself: twin.control.whatif.whatif
    from twin.model.forecast import Forecast
    from twin.model.network import TwinConfig
    from twin.model.twin import Twin

#: re-exported lazily: they import torch, which ``twin --help`` and the historian do not need
_LAZY = {
    "Controller": "twin.control.controller",
    "Forecast": "twin.model.forecast",
    "MoveRec": "twin.control.recommendation",
    "Recommendation": "twin.control.recommendation",
    "RecommendationLog": "twin.control.recommendation_log",
    "Scenario": "twin.control.whatif",
    "Twin": "twin.model.twin",
    "TwinConfig": "twin.model.network",
    "WhatIf": "twin.control.whatif",
    "write_export": "twin.control.export",
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
