"""What the controller recommends: :class:`Recommendation` and one :class:`MoveRec` per MV.

Plain frozen data (no torch), so that the app and the exports read recommendations without
loading a model. ``to_dict`` / ``from_dict`` give the JSON form (``schema_version`` 1): ``ts``
ISO 8601 UTC, the forecast as nested lists ``[H][n_tags]``, non-finite numbers as ``null``.
The controller that makes them is :class:`twin.control.controller.Controller`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from twin.model.forecast import Forecast
from twin.times import as_utc

SCHEMA_VERSION = 1
#: tolerance of the limit checks (engineering units)
LIMIT_TOL = 1e-9


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

    def move(self, tag: str) -> MoveRec:
        """The recommendation for MV ``tag``; KeyError naming the MVs if there is none."""
        for m in self.moves:
            if m.tag == tag:
                return m
        raise KeyError(f"no MV {tag!r} in this recommendation (MVs: {[m.tag for m in self.moves]})")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (``schema_version`` 1): ts ISO 8601, forecast as lists, nan as null."""
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
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Recommendation:
        """Inverse of :meth:`to_dict`; ValueError on another schema version."""
        version = d.get("schema_version", SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            raise ValueError(
                f"recommendation schema_version {version} is not supported "
                f"(this version reads {SCHEMA_VERSION})"
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
