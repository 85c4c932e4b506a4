"""Plant specs: which tags a plant has, where they live on the OPC-UA server, and their limits.

A spec is a TOML file (see ``data/plants/*.toml`` and the README). Loading it returns frozen
dataclasses; anything wrong raises :class:`~twin.errors.SpecError` naming the file, the tag and
the field, so an engineer can fix the file without reading this code.
"""

from twin.spec.files import (
    PLANTS_DIR,
    builtin_spec,
    load_spec,
    parse_spec,
    spec_from_arg,
    spec_to_toml,
)
from twin.spec.plant import (
    MV_TIMING,
    ROLES,
    MvTiming,
    NodeRef,
    PlantSpec,
    Role,
    Tag,
    make_tag_name,
    spec_difference,
)

__all__ = [
    "MV_TIMING",
    "PLANTS_DIR",
    "ROLES",
    "MvTiming",
    "NodeRef",
    "PlantSpec",
    "Role",
    "Tag",
    "builtin_spec",
    "load_spec",
    "make_tag_name",
    "parse_spec",
    "spec_difference",
    "spec_from_arg",
    "spec_to_toml",
]
