"""What the controller recommends: :class:`Recommendation` and one :class:`MoveRec` per MV.

Plain frozen data (no torch), so that the app and the exports read recommendations without
loading a model. ``to_dict`` / ``from_dict`` give the JSON form (``schema_version`` 2): ``ts``
ISO 8601 UTC, the forecast as nested lists ``[H][n_tags]``, non-finite numbers as ``null``.

Version 2 adds the steady-state target optimiser's answer: ``targets`` (MV and CV tag -> value),
``constraints`` (each an :class:`ActiveConstraint`, binding or given up), ``cost_rate`` and
``cost_rate_now`` (predicted cost rate at the targets, and at the current measurements), ``frozen`` (MVs
held because the twin never saw them move), and per move ``target`` and ``frozen``.
``from_dict`` reads versions 1 and 2 (a version-1 record gets the defaults: no targets, no
constraints, nan costs, nothing frozen) and refuses any other.

The controller that makes them is :class:`twin.control.controller.Controller`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from twin.model.forecast import Forecast
from twin.times import as_utc

SCHEMA_VERSION = 2
#: the schema versions :meth:`Recommendation.from_dict` reads
READABLE_VERSIONS = (1, 2)
#: tolerance of the limit checks (engineering units)
LIMIT_TOL = 1e-9


@dataclass(frozen=True)
class ActiveConstraint:
    """A limit the steady-state targets sit on (``binding``) or had to give up (``given up``).

    ``kind``: ``"op_lo"`` / ``"op_hi"`` (a CV's operating limit), ``"lo"`` / ``"hi"`` (a CV's
    instrument limit), ``"mv_lo"`` / ``"mv_hi"`` (an MV's limit for the controller: its
    operating limit, else its instrument limit), ``"setpoint"`` (a CV setpoint not reached).
    ``limit``: the limit's value; ``by``: how far the target lies beyond it (engineering units,
    0 when binding); ``priority``: the CV's rank (1 is given up last; None for MVs, instrument
    limits and setpoints).
    """

    tag: str
    kind: str
    limit: float
    state: str
    by: float = 0.0
    priority: int | None = None

    def describe(self, unit: str = "") -> str:
        """One line for a person, e.g. ``T op_hi 330 K given up by 1.2 K (priority 3)``."""
        u = f" {unit}" if unit else ""
        text = f"{self.tag} {self.kind} {self.limit:g}{u} {self.state}"
        if self.state == "given up":
            text += f" by {abs(self.by):.3g}{u}"
        if self.priority is not None:
            text += f" (priority {self.priority})"
        return text

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {
            "tag": self.tag,
            "kind": self.kind,
            "limit": _num(self.limit),
            "state": self.state,
            "by": _num(self.by),
            "priority": self.priority,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ActiveConstraint:
        """Inverse of :meth:`to_dict`."""
        pr = d.get("priority")
        return cls(
            tag=str(d["tag"]),
            kind=str(d["kind"]),
            limit=_float(d["limit"]),
            state=str(d["state"]),
            by=_float(d.get("by", 0.0)),
            priority=None if pr is None else int(pr),
        )


@dataclass(frozen=True)
class MoveRec:
    """One MV's recommendation: current value, next value, planned trajectory, its limits."""

    tag: str
    node: str | None
    write_node: str | None
    unit: str
    current: float
    recommended: float
    change: float
    lo: float
    hi: float
    rate_limit: float
    plan: tuple[float, ...]
    """the planned values at the next H samples (``plan[0] == recommended``)"""
    limits_held: bool
    """``lo <= every plan value <= hi`` and every move (from ``current``) ``<= rate_limit``"""
    target: float = math.nan
    """the steady-state target the plan heads for (nan: no target optimiser)"""
    frozen: bool = False
    """held at ``current``: the twin never saw this MV move (see ``Recommendation.frozen``)"""

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {
            "tag": self.tag,
            "node": self.node,
            "write_node": self.write_node,
            "unit": self.unit,
            "current": _num(self.current),
            "recommended": _num(self.recommended),
            "change": _num(self.change),
            "lo": self.lo,
            "hi": self.hi,
            "rate_limit": self.rate_limit,
            "plan": [_num(v) for v in self.plan],
            "limits_held": self.limits_held,
            "target": _num(self.target),
            "frozen": self.frozen,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MoveRec:
        """Inverse of :meth:`to_dict`."""
        return cls(
            tag=str(d["tag"]),
            node=str(d["node"]),
            write_node=None if d.get("write_node") is None else str(d["write_node"]),
            unit=str(d["unit"]),
            current=_float(d["current"]),
            recommended=_float(d["recommended"]),
            change=_float(d["change"]),
            lo=float(d["lo"]),
            hi=float(d["hi"]),
            rate_limit=float(d["rate_limit"]),
            plan=tuple(_float(v) for v in d["plan"]),
            limits_held=bool(d["limits_held"]),
            target=_float(d.get("target")),
            frozen=bool(d.get("frozen", False)),
        )


@dataclass(frozen=True)
class Recommendation:
    """The controller's answer for one sample: a move per MV, the forecast it expects, status."""

    ts: datetime
    """time of the last sample the decision used (UTC)"""
    plant: str
    success: bool
    message: str
    """solver status, or why it failed ("non-finite forecast", ...)"""
    moves: tuple[MoveRec, ...]
    """one per MV, spec order"""
    setpoints: dict[str, float]
    """CV setpoints used"""
    forecast: Forecast | None
    """predicted trajectories of every tag under the plan (offset-corrected), with bands"""
    objective: float
    """objective value of the plan (nan when the solve failed)"""
    solve_time_s: float
    iterations: int
    limits_held: bool
    """every move's ``limits_held``"""
    targets: dict[str, float] = field(default_factory=dict)
    """steady-state targets, MV and CV tag -> value (empty: no target optimiser)"""
    constraints: tuple[ActiveConstraint, ...] = ()
    """the limits the targets sit on or gave up, most important first"""
    cost_rate: float = math.nan
    """predicted cost rate at the targets (nan: no economics)"""
    cost_rate_now: float = math.nan
    """the cost rate at the current measurements (nan: no economics)"""
    frozen: tuple[str, ...] = ()
    """MVs held at their current value because the twin never saw them move (released ones are
    not listed)"""

    def move(self, tag: str) -> MoveRec:
        """The recommendation for MV ``tag``; KeyError naming the MVs if there is none."""
        for m in self.moves:
            if m.tag == tag:
                return m
        raise KeyError(f"no MV {tag!r} in this recommendation (MVs: {[m.tag for m in self.moves]})")

    def units(self) -> dict[str, str]:
        """Tag -> engineering unit, from the forecast and the moves (empty without either)."""
        fc = self.forecast
        out = dict(zip(fc.tags, fc.units, strict=True)) if fc is not None else {}
        out.update((m.tag, m.unit) for m in self.moves)
        return out

    def constraint_lines(self) -> tuple[str, ...]:
        """:meth:`ActiveConstraint.describe` of each active constraint, with its tag's unit."""
        units = self.units()
        return tuple(c.describe(units.get(c.tag, "")) for c in self.constraints)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (``schema_version`` 2): ts ISO 8601, forecast as lists, nan as null."""
        fc = self.forecast
        return {
            "schema_version": SCHEMA_VERSION,
            "ts": _iso(self.ts),
            "plant": self.plant,
            "success": self.success,
            "message": self.message,
            "moves": [m.to_dict() for m in self.moves],
            "setpoints": {k: float(v) for k, v in self.setpoints.items()},
            "forecast": None if fc is None else _forecast_to_dict(fc),
            "objective": _num(self.objective),
            "solve_time_s": float(self.solve_time_s),
            "iterations": int(self.iterations),
            "limits_held": self.limits_held,
            "targets": {k: _num(v) for k, v in self.targets.items()},
            "constraints": [c.to_dict() for c in self.constraints],
            "cost_rate": _num(self.cost_rate),
            "cost_rate_now": _num(self.cost_rate_now),
            "frozen": list(self.frozen),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Recommendation:
        """Inverse of :meth:`to_dict`; reads versions 1 and 2, ValueError on another."""
        version = d.get("schema_version", SCHEMA_VERSION)
        if version not in READABLE_VERSIONS:
            raise ValueError(
                f"recommendation schema_version {version} is not supported "
                f"(this version reads {', '.join(map(str, READABLE_VERSIONS))})"
            )
        fc = d.get("forecast")
        return cls(
            ts=_parse_ts(d["ts"]),
            plant=str(d["plant"]),
            success=bool(d["success"]),
            message=str(d["message"]),
            moves=tuple(MoveRec.from_dict(m) for m in d["moves"]),
            setpoints={str(k): float(v) for k, v in d["setpoints"].items()},
            forecast=None if fc is None else _forecast_from_dict(fc),
            objective=_float(d["objective"]),
            solve_time_s=float(d["solve_time_s"]),
            iterations=int(d["iterations"]),
            limits_held=bool(d["limits_held"]),
            # version 1 has none of these: the defaults
            targets={str(k): _float(v) for k, v in d.get("targets", {}).items()},
            constraints=tuple(ActiveConstraint.from_dict(c) for c in d.get("constraints", ())),
            cost_rate=_float(d.get("cost_rate")),
            cost_rate_now=_float(d.get("cost_rate_now")),
            frozen=tuple(str(t) for t in d.get("frozen", ())),
        )


def _num(x: float) -> float | None:
    """A float for JSON: non-finite values become null."""
    x = float(x)
    return x if math.isfinite(x) else None


def _float(x: Any) -> float:
    return math.nan if x is None else float(x)


def _iso(ts: datetime) -> str:
    return as_utc(ts).isoformat()


def _parse_ts(text: str) -> datetime:
    return as_utc(datetime.fromisoformat(text))


def _forecast_to_dict(fc: Forecast) -> dict[str, Any]:
    def rows(a: np.ndarray) -> list[list[float | None]]:
        return [[_num(v) for v in row] for row in np.asarray(a, dtype=float)]

    ts = fc.ts.astype("datetime64[us]").astype(datetime)
    return {
        "tags": list(fc.tags),
        "units": list(fc.units),
        "ts": [_iso(t) for t in ts],
        "mean": rows(fc.mean),
        "lower": rows(fc.lower),
        "upper": rows(fc.upper),
        "coverage": fc.coverage,
    }


def _forecast_from_dict(d: dict[str, Any]) -> Forecast:
    def arr(rows: list[list[float | None]]) -> np.ndarray:
        out = np.array([[_float(v) for v in row] for row in rows], dtype=float)
        return out.reshape(len(d["ts"]), len(d["tags"]))

    ts = np.array(
        [np.datetime64(_parse_ts(t).replace(tzinfo=None), "us") for t in d["ts"]],
        dtype="datetime64[us]",
    )
    return Forecast(
        tags=tuple(d["tags"]),
        units=tuple(d["units"]),
        ts=ts,
        mean=arr(d["mean"]),
        lower=arr(d["lower"]),
        upper=arr(d["upper"]),
        coverage=float(d.get("coverage", 0.9)),
    )
