"""The spec as an APC engineer states a controller: operating limits, priorities, costs, scales.

Old specs load unchanged; each new field is checked with an error that names file, tag and field.
"""

from __future__ import annotations

import pytest

from twin.errors import SpecError
from twin.spec import PLANTS_DIR, builtin_spec, parse_spec, spec_to_toml

APC = """
[plant]
name = "reactor"
sample_period_s = 60.0

[[tags]]
name = "P"
unit = "kPa"
role = "cv"
lo = 0.0
hi = 3000.0
setpoint = 2740.0
op_lo = 2700.0
op_hi = 2780.0
priority = 2

[[tags]]
name = "L"
unit = "%"
role = "cv"
lo = 0.0
hi = 100.0
op_lo = 30.0
op_hi = 70.0

[[tags]]
name = "X"
unit = "mol%"
role = "cv"
lo = 0.0
hi = 100.0
cost = -12.5
scale = 0.5

[[tags]]
name = "A"
unit = "%"
role = "cv"
lo = 0.0
hi = 100.0

[[tags]]
name = "F"
unit = "kg/h"
role = "mv"
lo = 0.0
hi = 5000.0
rate_limit = 50.0
op_lo = 1000.0
op_hi = 4000.0
ideal = 2500.0
cost = 0.02
"""


def test_old_specs_load_unchanged() -> None:
    """Every built-in spec reads as before: setpoints stay setpoints, errors scale by the span,
    no operating limits or costs appear, and writing it back gives the same spec."""
    for path in sorted(PLANTS_DIR.glob("*.toml")):
        spec = builtin_spec(path.stem)
        for t in spec.tags:
            assert t.op_lo is None and t.op_hi is None and t.cost is None, t.name
            assert (t.op_low, t.op_high) == (t.lo, t.hi)
        for t in spec.cvs:
            assert t.setpoint is not None and t.weight is not None
            assert t.error_scale == t.span and t.priority is None
        again = parse_spec(spec_to_toml(spec), source="again")
        assert [t.__dict__ for t in again.tags] == [t.__dict__ for t in spec.tags]


def test_apc_fields_load_and_round_trip() -> None:
    spec = parse_spec(APC, source="apc.toml")
    p, lev, x, a, f = (spec.tag(n) for n in ("P", "L", "X", "A", "F"))
    assert (p.op_lo, p.op_hi, p.priority, p.setpoint) == (2700.0, 2780.0, 2, 2740.0)
    # errors scale by what matters: the operating range, an explicit scale, else the span
    assert p.error_scale == 80.0 and lev.error_scale == 40.0 and x.error_scale == 0.5
    assert a.error_scale == 100.0
    # a CV may be zone-only, economic only, or shown only: no setpoint needed
    assert lev.setpoint is None and x.setpoint is None and a.setpoint is None
    assert x.cost == -12.5 and (f.op_low, f.op_high, f.ideal, f.cost) == (1000, 4000, 2500, 0.02)
    text = spec_to_toml(spec)
    assert "priority = 2\n" in text  # an integer stays an integer
    again = parse_spec(text, source="again")
    assert [t.__dict__ for t in again.tags] == [t.__dict__ for t in spec.tags]


@pytest.mark.parametrize(
    ("tag", "edit", "field", "words"),
    [
        ("P", ("op_lo = 2700.0", "op_lo = -5.0"), "op_lo", "outside the instrument limits"),
        ("P", ("op_hi = 2780.0", "op_hi = 2600.0"), "op_hi", "must be below op_hi"),
        ("P", ("setpoint = 2740.0", "setpoint = 2900.0"), "setpoint", "operating limits"),
        ("P", ("priority = 2", "priority = 0"), "priority", "whole number >= 1"),
        ("P", ("priority = 2", "priority = 1.5"), "priority", "whole number >= 1"),
        ("X", ("scale = 0.5", "scale = 0.0"), "scale", "must be > 0"),
        ("X", ("cost = -12.5", 'cost = "high"'), "cost", "finite number"),
        ("F", ("ideal = 2500.0", "ideal = 4500.0"), "ideal", "outside the MV's limits"),
        ("F", ("cost = 0.02", "cost = 0.02\nscale = 3.0"), "scale", "unknown field"),
    ],
)
def test_bad_apc_fields_name_tag_and_field(
    tag: str, edit: tuple[str, str], field: str, words: str
) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(APC.replace(*edit, 1), source="apc.toml")
    text = str(err.value)
    assert "apc.toml" in text and tag in text and field in text and words in text, text


def test_priority_needs_operating_limits() -> None:
    bad = APC.replace("cost = -12.5\n", "cost = -12.5\npriority = 3\n", 1)
    with pytest.raises(SpecError, match="priority ranks the CV's operating limits"):
        parse_spec(bad, source="apc.toml")


def test_a_tag_may_name_its_unit_or_area() -> None:
    spec = parse_spec(APC.replace('name = "P"\n', 'name = "P"\ngroup = "Reactor"\n', 1))
    assert spec.tag("P").group == "Reactor" and spec.tag("L").group == ""
    again = parse_spec(spec_to_toml(spec))
    assert again.tag("P").group == "Reactor"
