"""The optional fields of a tag that depend on its role (a CV's setpoint and limits, a DV's
clock), read from a spec file's table and checked: every error names the file, tag and field."""

from __future__ import annotations

import math
from typing import Any

from twin.errors import SpecError


def get_number(
    table: dict[str, Any], key: str, source: str, tag: str | None, why: str = ""
) -> float:
    if key not in table:
        raise SpecError("missing" + (f" ({why})" if why else ""), file=source, tag=tag, field=key)
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SpecError(f"must be a finite number, got {value!r}", file=source, tag=tag, field=key)
    return float(value)


def operating(raw: dict[str, Any], lo: float, hi: float, source: str, name: str) -> dict[str, Any]:
    """A CV's or MV's optional operating limits (inside ``[lo, hi]``) and cost."""
    out: dict[str, Any] = {}
    for fld in ("op_lo", "op_hi"):
        if fld in raw:
            value = get_number(raw, fld, source, name)
            if not lo <= value <= hi:
                raise SpecError(
                    f"operating limit {value} is outside the instrument limits [lo, hi] = "
                    f"[{lo}, {hi}]",
                    file=source,
                    tag=name,
                    field=fld,
                )
            out[fld] = value
    if "op_lo" in out and "op_hi" in out and not out["op_lo"] < out["op_hi"]:
        raise SpecError(
            f"op_lo ({out['op_lo']}) must be below op_hi ({out['op_hi']})",
            file=source,
            tag=name,
            field="op_hi",
        )
    if "cost" in raw:
        out["cost"] = get_number(raw, "cost", source, name)
    return out


def cv_fields(
    raw: dict[str, Any], lo: float, hi: float, op: dict[str, Any], source: str, name: str
) -> dict[str, Any]:
    """A CV's optional setpoint, weight, priority and error scale, checked."""
    out: dict[str, Any] = {}
    low, high = op.get("op_lo", lo), op.get("op_hi", hi)
    if "setpoint" in raw:
        sp = get_number(raw, "setpoint", source, name)
        if not low <= sp <= high:
            which = (
                "operating limits [op_lo, op_hi]"
                if op.keys() & {"op_lo", "op_hi"}
                else ("[lo, hi]")
            )
            raise SpecError(
                f"setpoint {sp} is outside {which} = [{low}, {high}]",
                file=source,
                tag=name,
                field="setpoint",
            )
        out["setpoint"] = sp
    if "weight" in raw:
        weight = get_number(raw, "weight", source, name)
        if weight < 0:
            raise SpecError(f"must be >= 0, got {weight}", file=source, tag=name, field="weight")
        out["weight"] = weight
    if "priority" in raw:
        pr = raw["priority"]
        if isinstance(pr, bool) or not isinstance(pr, int) or pr < 1:
            raise SpecError(
                f"must be a whole number >= 1 (1: the operating limits given up last), got {pr!r}",
                file=source,
                tag=name,
                field="priority",
            )
        if not op.keys() & {"op_lo", "op_hi"}:
            raise SpecError(
                "a priority ranks the CV's operating limits: give op_lo and/or op_hi",
                file=source,
                tag=name,
                field="priority",
            )
        out["priority"] = pr
    if "scale" in raw:
        scale = get_number(raw, "scale", source, name)
        if not scale > 0:
            raise SpecError(f"must be > 0, got {scale}", file=source, tag=name, field="scale")
        out["scale"] = scale
    return out


def clock(raw: dict[str, Any], lo: float, source: str, name: str) -> dict[str, Any]:
    """A DV's optional clock: how far it counts per sample, and the value it restarts after."""
    out: dict[str, Any] = {}
    if "clock_step" in raw:
        step = get_number(raw, "clock_step", source, name)
        if not step > 0:
            raise SpecError(f"must be > 0, got {step}", file=source, tag=name, field="clock_step")
        out["clock_step"] = step
    if "clock_reset" in raw:
        if "clock_step" not in out:
            raise SpecError(
                "a clock that restarts needs clock_step, how far it counts every sample",
                file=source,
                tag=name,
                field="clock_reset",
            )
        reset = get_number(raw, "clock_reset", source, name)
        if not reset > lo:
            raise SpecError(
                f"the clock restarts from lo ({lo}), so clock_reset must be above it, got {reset}",
                file=source,
                tag=name,
                field="clock_reset",
            )
        out["clock_reset"] = reset
    return out
