"""What-if scenarios: what each one changes, checked, and the spec and setpoints it runs with.

A :class:`Scenario` changes CV setpoints at given times, or the economics and limits the
controller works to (prices, operating limits, priorities), or both (closed loop: the
controller acts); or it fixes an MV schedule (open loop). :func:`scenario_spec` is the spec a
scenario's controller runs on: the given one with the scenario's prices, operating limits and
priorities put on its tags; :func:`scenario_controller` the controller, with the settings of
the one given, that runs on it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from twin.control.setpoints import Setpoints, check_setpoint
from twin.errors import TwinError
from twin.spec import PlantSpec, Tag

if TYPE_CHECKING:
    from twin.control.controller import Controller, Predictor


@dataclass(frozen=True)
class Scenario:
    """One what-if case: setpoint and economics changes (closed loop) or an MV schedule (open
    loop), not both."""

    name: str
    setpoints: tuple[tuple[str, float, float], ...] = ()
    """``(cv tag, value, minutes from now)``; the value holds from then on"""
    mv_schedule: dict[str, tuple[float, ...]] | None = None
    """open loop: MV tag -> value per step (the last one held); MVs not named hold their value"""
    prices: tuple[tuple[str, float], ...] = ()
    """``(cv or mv tag, cost per unit)``: replaces the spec's ``cost`` of the tag (negative: a
    product's value); the cost rate is the sum of cost times value over the tags"""
    limits: tuple[tuple[str, float | None, float | None], ...] = ()
    """``(cv or mv tag, op_lo, op_hi)``: new operating limits (None keeps that side)"""
    priorities: tuple[tuple[str, int], ...] = ()
    """``(cv tag, priority)``: the rank of the CV's operating limits (1: given up last)"""

    @property
    def open_loop(self) -> bool:
        """True when the MVs follow a fixed schedule instead of the controller."""
        return self.mv_schedule is not None

    @property
    def changes_economics(self) -> bool:
        """True when the scenario changes a price, an operating limit or a priority: its
        controller runs on :func:`scenario_spec`, not on the given spec."""
        return bool(self.prices or self.limits or self.priorities)


#: the baseline: the setpoints in force now and the spec's economics, the controller acting
HOLD = Scenario("hold")


def check_scenario(spec: PlantSpec, scenario: Scenario) -> None:
    """TwinError naming the scenario, the tag and what is wrong with it."""
    where = f"scenario {scenario.name!r}"
    if scenario.mv_schedule is not None and (scenario.setpoints or scenario.changes_economics):
        raise TwinError(
            f"{where}: give setpoint, price, limit or priority changes (closed loop) or an MV "
            "schedule (open loop), not both"
        )
    for tag, value, minutes in scenario.setpoints:
        try:
            check_setpoint(spec, tag, value)
        except TwinError as exc:
            raise TwinError(f"{where}: {exc}") from None
        if not (math.isfinite(minutes) and minutes >= 0):
            raise TwinError(
                f"{where}: setpoint {tag}={value:g} at {minutes} min: time must be >= 0"
            )
    _check_schedule(spec, scenario, where)
    for tag, price in scenario.prices:
        _controlled(spec, tag, f"{where}: price of {tag!r}", ("cv", "mv"))
        if not math.isfinite(price):
            raise TwinError(f"{where}: price of {tag!r} must be a finite number, got {price}")
    for tag, lo, hi in scenario.limits:
        _controlled(spec, tag, f"{where}: operating limits of {tag!r}", ("cv", "mv"))
        if lo is None and hi is None:
            raise TwinError(f"{where}: operating limits of {tag!r}: give op_lo, op_hi or both")
    for tag, _ in scenario.priorities:
        _controlled(spec, tag, f"{where}: priority of {tag!r}", ("cv",))
    tags = scenario_spec(spec, scenario, checked=False)
    for tag, _, _ in scenario.limits:
        _check_limits(tags.tag(tag), where)
    for tag, rank in scenario.priorities:
        if isinstance(rank, bool) or not isinstance(rank, int | np.integer) or rank < 1:
            raise TwinError(
                f"{where}: priority of {tag!r} must be a whole number >= 1 (1: its operating "
                f"limits are given up last), got {rank!r}"
            )
        t = tags.tag(tag)
        if t.op_lo is None and t.op_hi is None:
            raise TwinError(
                f"{where}: priority of {tag!r}: a priority ranks the CV's operating limits, "
                "and it has none: give them in the spec or the scenario's limits"
            )


def scenario_spec(spec: PlantSpec, scenario: Scenario, *, checked: bool = True) -> PlantSpec:
    """``spec`` with the scenario's prices, operating limits and priorities on its tags.

    A CV whose operating limits change keeps the error scale it had (its ``scale`` is set to
    its old :attr:`~twin.spec.Tag.error_scale` unless the spec gave one): a scenario moves a
    limit, not the weight of the CV's errors. ``checked``: :func:`check_scenario` first.
    """
    if checked:
        check_scenario(spec, scenario)
    if not scenario.changes_economics:
        return spec
    tags = {t.name: t for t in spec.tags}
    for tag, price in scenario.prices:
        tags[tag] = replace(tags[tag], cost=float(price))
    for tag, lo, hi in scenario.limits:
        t = tags[tag]
        scale = t.scale if t.scale is not None or t.role != "cv" else spec.tag(tag).error_scale
        tags[tag] = replace(
            t,
            op_lo=t.op_lo if lo is None else float(lo),
            op_hi=t.op_hi if hi is None else float(hi),
            scale=scale,
        )
    for tag, rank in scenario.priorities:
        tags[tag] = replace(tags[tag], priority=rank)
    return replace(spec, tags=tuple(tags[t.name] for t in spec.tags))


def scenario_controller(
    model: Predictor, spec: PlantSpec, like: Controller | None = None
) -> Controller:
    """A controller on ``spec`` with the settings of ``like`` (default: the default ones).

    Its weights, blocking, horizon, frozen MVs and solver settings are ``like``'s; its limits,
    priorities and costs are ``spec``'s.
    """
    from twin.control.controller import Controller

    if like is None:
        return Controller(model, spec)
    return like.with_spec(spec)


def setpoint_path(
    spec: PlantSpec,
    scenario: Scenario,
    steps: int,
    setpoints: Mapping[str, float] | None = None,
) -> dict[str, np.ndarray]:
    """CV -> setpoint ``[steps + 1]`` in force at ``k`` sample periods from now (k = 0..steps).

    Starts from ``setpoints`` (resolved with :meth:`Setpoints.resolve`: the spec's, with the
    given ones over them; NaN for a CV with neither: it is not tracked, only held within its
    limits); a change at ``m`` minutes holds from the first step at or after ``m`` minutes on.
    Changes to one tag apply in time order.
    """
    start = Setpoints.resolve(spec, setpoints)
    offsets_min = np.arange(steps + 1) * spec.sample_period / 60.0
    paths = {t.name: np.full(steps + 1, start.get(t.name, math.nan)) for t in spec.cvs}
    for tag, value, minutes in sorted(scenario.setpoints, key=lambda s: s[2]):
        paths[tag][offsets_min >= minutes - 1e-9] = value
    return paths


def _check_schedule(spec: PlantSpec, scenario: Scenario, where: str) -> None:
    mvs = [t.name for t in spec.mvs]
    for tag, values in (scenario.mv_schedule or {}).items():
        if tag not in mvs:
            raise TwinError(f"{where}: schedule for {tag!r}, which is not an MV (MVs: {mvs})")
        if len(values) == 0:
            raise TwinError(f"{where}: schedule for {tag!r} has no values")
        t = spec.tag(tag)
        for k, v in enumerate(values):
            if not (math.isfinite(v) and t.lo <= v <= t.hi):
                raise TwinError(
                    f"{where}: {tag} = {v:g} {t.unit} at step {k + 1} is outside its limits "
                    f"[{t.lo:g}, {t.hi:g}] {t.unit}"
                )


def _controlled(spec: PlantSpec, tag: str, what: str, roles: tuple[str, ...]) -> None:
    """TwinError unless ``tag`` is a tag of ``spec`` in one of ``roles``."""
    allowed = [t.name for t in spec.tags if t.role in roles]
    kinds = " or ".join(f"{r.upper()}s" for r in roles)
    if tag not in spec.tag_names:
        raise TwinError(f"{what}: plant {spec.name!r} has no tag {tag!r} ({kinds}: {allowed})")
    role = spec.tag(tag).role
    if role not in roles:
        article = "an" if role == "mv" else "a"
        raise TwinError(
            f"{what}: {tag!r} is {article} {role.upper()}; this is for {kinds}: {allowed}"
        )


def _check_limits(t: Tag, where: str) -> None:
    """TwinError unless ``t``'s operating limits are finite, within ``[lo, hi]`` and uncrossed."""
    u = f" {t.unit}" if t.unit else ""
    for name, value in (("op_lo", t.op_lo), ("op_hi", t.op_hi)):
        if value is None:
            continue
        if not math.isfinite(value):
            raise TwinError(f"{where}: {name} of {t.name!r} must be a finite number, got {value}")
        if not t.lo <= value <= t.hi:
            raise TwinError(
                f"{where}: {name} of {t.name!r} = {value:g}{u} is outside its instrument limits "
                f"[{t.lo:g}, {t.hi:g}]{u}"
            )
    if t.op_lo is not None and t.op_hi is not None and not t.op_lo < t.op_hi:
        raise TwinError(
            f"{where}: operating limits of {t.name!r} are crossed: op_lo {t.op_lo:g}{u} is not "
            f"below op_hi {t.op_hi:g}{u}"
        )
