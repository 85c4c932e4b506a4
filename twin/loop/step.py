"""One recommender step: read the newest history, recommend, and say how old and how good it was.

    step = recommend_from_historian(controller, twin, historian, setpoints=sp, stale_after_s=10)

:func:`recommend_from_historian` never raises on bad data: stale data, gaps or no data give a
holding ``success=False`` recommendation (:func:`hold_recommendation`) whose message says why.
:func:`twin.loop.run.run_loop` calls it every interval in a worker thread; ``twin recommend``
calls it once. The loop's timing defaults (:func:`default_interval`,
:func:`default_stale_after`) and the history a step reads (:func:`history_rows`,
:func:`newest_sample`, :func:`recent_frame`) live here too.

Given the loop's adaptive bands (:class:`~twin.model.adaptive.AdaptiveBands`), a step first
scores the twin's forecasts of the recent past against what was measured since
(:func:`twin.model.health.observe`), then puts the adapted band on the recommendation's
forecast: the band the operator reads follows the live errors of each tag and step. The
controller's own plan is unchanged (its optional risk term uses the calibrated band).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import polars as pl

from twin.control.recommendation import MoveRec, Recommendation
from twin.control.setpoints import Setpoints
from twin.errors import TwinError
from twin.spec import PlantSpec
from twin.store.frames import read_frame
from twin.store.historian import Historian
from twin.store.liveness import liveness_tags
from twin.times import now_utc

if TYPE_CHECKING:
    from twin.control.controller import Controller
    from twin.model.adaptive import AdaptiveBands
    from twin.model.twin import Twin

log = logging.getLogger(__name__)

#: data is stale when its newest sample is older than the flush period plus this many periods
STALE_PERIODS = 3


def default_interval(spec: PlantSpec, flush_every_s: float) -> float:
    """One recommendation per sample period, but no faster than the historian gets new data.

    A recommendation's first move is meant for the next sample, so recommending less often
    leaves the operator a stale move; recommending faster than the collector flushes (every
    ``flush_every_s``) only repeats the last answer on the same data.
    """
    return max(spec.sample_period, flush_every_s)


def default_stale_after(spec: PlantSpec, flush_every_s: float) -> float:
    """Seconds after which the newest sample is stale: a flush's delay plus a few periods."""
    return flush_every_s + STALE_PERIODS * spec.sample_period


def history_rows(twin: Twin) -> int:
    """Grid rows a recommendation reads: window + horizon + the longest gap carried over.

    The controller's offset-free correction re-forecasts "now" from up to H samples back, each
    from its own window; the health check replays fewer (:func:`twin.model.health.health_rows`).
    """
    return twin.window + twin.horizon + twin.config.max_gap


def newest_sample(
    historian: Historian,
    spec: PlantSpec,
    since: datetime | None = None,
    before: datetime | None = None,
) -> datetime | None:
    """How current ``spec``'s data in ``[since, before)`` is; None if there is none.

    The newest sample's time, or the collector's newest liveness mark if later: while its
    session lives, a tag that sends nothing holds its value (report-by-exception), so a plant
    whose tags all hold still is current, not stale.
    """
    tags = [*spec.tag_names, *liveness_tags(spec.tag_names)]
    ts = historian.scan(tags, since, before).select(pl.col("ts").max()).collect().item()
    return ts if isinstance(ts, datetime) else None


def recent_frame(
    historian: Historian, spec: PlantSpec, rows: int, newest: datetime
) -> pl.DataFrame:
    """The frame of the last ``rows`` grid points on the spec's period, ending at ``newest``.

    A still tag carries its value for as long as the collector's session lived
    (:func:`twin.store.frames.read_frame`), not only ``max_gap``: an MV parked at its
    setpoint never blocks a recommendation.
    """
    period = timedelta(seconds=spec.sample_period)
    start, end = newest - (rows - 1) * period, newest + timedelta(microseconds=1)
    return read_frame(historian, spec, start, end)


def hold_recommendation(
    spec: PlantSpec,
    ts: datetime,
    message: str,
    current: Mapping[str, float],
    setpoints: Mapping[str, float],
    horizon: int,
) -> Recommendation:
    """A failed recommendation (``success=False``) that holds every MV at its current value."""
    moves = []
    for t in spec.mvs:
        value = float(current.get(t.name, math.nan))
        moves.append(
            MoveRec(
                tag=t.name,
                node=None if t.node is None else str(t.node),
                write_node=None if t.write_node is None else str(t.write_node),
                unit=t.unit,
                current=value,
                recommended=value,
                change=0.0,
                lo=t.lo,
                hi=t.hi,
                rate_limit=float(t.rate_limit or 0.0),
                plan=(value,) * horizon,
                limits_held=math.isfinite(value) and t.lo <= value <= t.hi,
            )
        )
    return Recommendation(
        ts=ts,
        plant=spec.name,
        success=False,
        message=message,
        moves=tuple(moves),
        setpoints=dict(setpoints),
        forecast=None,
        objective=math.nan,
        solve_time_s=0.0,
        iterations=0,
        limits_held=all(m.limits_held for m in moves),
    )


def _last_values(
    frame: pl.DataFrame, spec: PlantSpec, roles: tuple[str, ...] = ("mv",)
) -> dict[str, float]:
    """The last finite value of each tag of ``roles`` in ``frame`` (tags without one left out)."""
    out = {}
    for t in spec.tags:
        if t.role not in roles:
            continue
        values = frame.get_column(t.name).drop_nulls().drop_nans() if t.name in frame else None
        if values is not None and not values.is_empty():
            out[t.name] = float(values[-1])
    return out


@dataclass(frozen=True)
class Step:
    """One recommender step: the recommendation, the model's health, how old the data was."""

    rec: Recommendation
    health: float | None
    """live / validation forecast error (:func:`twin.model.health.model_health`); None if unknown"""
    age_s: float | None
    """seconds from the newest sample to now (None when the historian has none)"""
    measured: dict[str, float]
    """the last finite value of every tag in the history used"""
    newest: datetime | None = None
    """time of the newest stored sample (None when the historian has none)"""
    coverage: dict[str, float] | None = None
    """recent coverage per CV and DV of the band the recommendation carries (the adaptive one
    when the step had adaptive bands, else the calibrated one); None if unknown"""


def recommend_from_historian(
    controller: Controller,
    twin: Twin,
    historian: Historian,
    *,
    setpoints: Mapping[str, float] | None = None,
    at: datetime | None = None,
    now: datetime | None = None,
    stale_after_s: float | None = None,
    health: bool = True,
    spec: PlantSpec | None = None,
    bands: AdaptiveBands | None = None,
) -> Step:
    """Recommend from the newest history (at or before ``at``); never raises on bad data.

    With ``stale_after_s``, data whose newest sample is older than that (seen from ``now``,
    default the clock) gives a holding ``success=False`` recommendation, message "stale data".
    Unusable history (gaps, no data) gives one too, with the reason as its message. ``spec``
    (default the twin's) names the nodes in those. ``setpoints`` are best resolved once by the
    caller (:meth:`Setpoints.resolve`, which passes a resolved one through as it is).
    ``bands`` (updated in place) learn from the outcomes measured since the last step and adapt
    the recommendation's band.
    """
    spec = spec or twin.spec
    sps = Setpoints.resolve(spec, setpoints)
    now = now or now_utc()
    before = at + timedelta(microseconds=1) if at is not None else None
    since = None
    if stale_after_s is not None:  # a live loop: only the recent files need opening
        since = now - timedelta(seconds=stale_after_s + history_rows(twin) * spec.sample_period)
    newest = newest_sample(historian, spec, since, before)
    if newest is None:
        where = f" since {since:%Y-%m-%d %H:%M:%S}" if since else ""
        rec = hold_recommendation(spec, now, f"stale data: no sample{where}", {}, sps, twin.horizon)
        return Step(rec, None, None, {})
    age = (now - newest).total_seconds()
    frame = recent_frame(historian, spec, history_rows(twin), newest)
    measured = _last_values(frame, spec, ("cv", "mv", "dv"))
    if stale_after_s is not None and age > stale_after_s:
        # stamped now, not with the old sample: it is a decision of now, and the newest entry
        message = f"stale data: newest sample {age:.0f} s old (limit {stale_after_s:g} s)"
        rec = hold_recommendation(spec, now, message, _last_values(frame, spec), sps, twin.horizon)
        return Step(rec, None, age, measured, newest)
    try:
        rec = controller.recommend(frame, sps)
    except TwinError as exc:  # unusable history: gaps, missing tags
        rec = hold_recommendation(
            spec, newest, str(exc), _last_values(frame, spec), sps, twin.horizon
        )
    score, coverage = None, None
    if health:
        from twin.model.health import model_health

        try:
            score = model_health(twin, frame)
        except TwinError as exc:
            log.warning("model health not computed: %s", exc)
    if bands is not None:
        rec, coverage = _adapt(bands, twin, frame, rec)
    elif health:
        from twin.model.health import band_coverage

        try:
            coverage = band_coverage(twin, frame)
        except TwinError as exc:
            log.warning("band coverage not computed: %s", exc)
    return Step(rec, score, age, measured, newest, coverage)


def _adapt(
    bands: AdaptiveBands, twin: Twin, frame: pl.DataFrame, rec: Recommendation
) -> tuple[Recommendation, dict[str, float]]:
    """Learn from the outcomes in ``frame``; the recommendation with the adapted band."""
    from twin.model.health import observe

    try:
        scored = observe(bands, twin, frame)
        log.debug("adaptive bands: %d outcomes scored", scored)
    except (TwinError, ValueError) as exc:  # a frame the replay cannot use: bands unchanged
        log.warning("adaptive bands not updated: %s", exc)
    if rec.forecast is not None:
        try:
            rec = dataclasses.replace(rec, forecast=bands.adjust(rec.forecast))
        except ValueError as exc:  # a forecast of other tags than the bands were started for
            log.warning("adaptive bands not applied: %s", exc)
    return rec, bands.tag_coverage()
