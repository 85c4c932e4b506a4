"""The control loop: the one place that joins collector, historian, twin and controller.

    stats = asyncio.run(run_loop(spec, "opc.tcp://127.0.0.1:4840/cstr", twin, "hist/"))

:func:`run_loop` runs the OPC-UA collector (:func:`connectors.collect.run_collect`) and a
recommender side by side in one asyncio loop. Every ``interval_s`` the recommender reads the
last stretch of history from the historian, asks the controller for the next moves (in a worker
thread, so the collector never stalls), appends the recommendation to the historian folder's
:class:`~twin.control.recommendation_log.RecommendationLog` and logs one line with the model's health. By default
it is advisory: nothing is written to the plant. With ``write=True`` each recommendation goes
through the guarded write-back (:class:`twin.loop.writer.LoopWriter`: limits, rate limits against
the measured MVs, fresh data, model health, watchdog, optional operator approval, audit log in
``<historian>/audit.jsonl``); a change of the spec file or the model folder under the running
loop stops writing until restart. Data older than ``stale_after_s`` gives no
recommendation but a logged ``success=False`` one with message ``"stale data ..."``, so the
operator app shows why. SIGINT / SIGTERM (or ``duration_s``) stop both tasks cleanly.

:func:`recommend_from_historian` is the same step, synchronous: ``twin recommend`` uses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from twin.control.recommendation import MoveRec, Recommendation
from twin.errors import TwinError
from twin.spec import PlantSpec
from twin.store.historian import Historian

if TYPE_CHECKING:
    from connectors.opcua import CollectorSettings
    from connectors.opcua_security import Security
    from connectors.source import PumpStats
    from twin.control.controller import Controller
    from twin.loop.writer import WriteCounts
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
    """Time of the newest sample of ``spec``'s tags in ``[since, before)``; None if there is none."""
    ts = historian.scan(spec.tag_names, since, before).select(pl.col("ts").max()).collect().item()
    return ts if isinstance(ts, datetime) else None


def recent_frame(
    historian: Historian, spec: PlantSpec, rows: int, newest: datetime
) -> pl.DataFrame:
    """The frame of the last ``rows`` grid points on the spec's period, ending at ``newest``."""
    period = timedelta(seconds=spec.sample_period)
    return historian.frame(spec, newest - (rows - 1) * period, newest + timedelta(microseconds=1))


def hold_recommendation(
    spec: PlantSpec,
    ts: datetime,
    message: str,
    current: dict[str, float],
    setpoints: dict[str, float],
    horizon: int,
) -> Recommendation:
    """A failed recommendation (``success=False``) that holds every MV at its current value."""
    moves = []
    for t in spec.mvs:
        value = float(current.get(t.name, math.nan))
        moves.append(
            MoveRec(
                tag=t.name,
                node=str(t.node),
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


def recommend_from_historian(
    controller: Controller,
    twin: Twin,
    historian: Historian,
    *,
    setpoints: dict[str, float] | None = None,
    at: datetime | None = None,
    now: datetime | None = None,
    stale_after_s: float | None = None,
    health: bool = True,
    spec: PlantSpec | None = None,
) -> Step:
    """Recommend from the newest history (at or before ``at``); never raises on bad data.

    With ``stale_after_s``, data whose newest sample is older than that (seen from ``now``,
    default the clock) gives a holding ``success=False`` recommendation, message "stale data".
    Unusable history (gaps, no data) gives one too, with the reason as its message. ``spec``
    (default the twin's) names the nodes in those.
    """
    spec = spec or twin.spec
    sps = {t.name: t.setpoint for t in spec.cvs if t.setpoint is not None} | (setpoints or {})
    now = now or datetime.now(UTC)
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
    score = None
    if health:
        from twin.model.health import model_health

        try:
            score = model_health(twin, frame)
        except TwinError as exc:
            log.warning("model health not computed: %s", exc)
    return Step(rec, score, age, measured, newest)


@dataclass
class LoopStats:
    """Counters of one :func:`run_loop` run."""

    steps: int = 0
    recommended: int = 0
    """recommendations with success=True"""
    failed: int = 0
    """recommendations with success=False (stale data included)"""
    stale: int = 0
    errors: int = 0
    """steps that raised (logged with a traceback; the loop went on)"""
    health: float | None = None
    """the latest model health (live / validation forecast error)"""
    last: Recommendation | None = None
    collect: PumpStats | None = None
    write: WriteCounts | None = None
    """the write-back's counters (None when advisory)"""


async def run_loop(
    spec: PlantSpec,
    endpoint: str,
    twin: Twin,
    historian_dir: str | Path,
    *,
    interval_s: float | None = None,
    setpoints: dict[str, float] | None = None,
    controller: Controller | None = None,
    settings: CollectorSettings | None = None,
    security: Security | None = None,
    duration_s: float | None = None,
    flush_every_s: float = 2.0,
    stale_after_s: float | None = None,
    log_every_s: float = 30.0,
    on_step: Callable[[Step], Awaitable[None]] | None = None,
    write: bool = False,
    approve: bool = False,
    max_error_ratio: float = 3.0,
    rate_slack: float = 0.0,
    model_dir: str | Path | None = None,
) -> LoopStats:
    """Collect ``spec``'s tags from ``endpoint`` and recommend every ``interval_s``.

    ``interval_s`` defaults to :func:`default_interval`, ``stale_after_s`` to
    :func:`default_stale_after`. Runs until SIGINT / SIGTERM or ``duration_s``. ``on_step`` is
    awaited after each logged step (after the write-back); an error in it is logged and
    counted, and the loop goes on.

    Advisory unless ``write``: then each recommendation is written to the spec's write nodes
    when every check passes (:func:`twin.loop.writer.make_writer`; ``max_error_ratio`` bounds
    the model health, ``rate_slack`` widens the rate limits for noisy MV readings), over a
    session with the collector's ``security``. ``approve`` (with ``write``) writes only
    recommendations an operator approved in ``<historian>/approvals.jsonl``, each once. The
    spec's file (when it has one) and the twin's saved folder ``model_dir`` are watched: a
    change stops writing until restart.
    """
    from connectors.collect import run_collect
    from twin.control.recommendation_log import RecommendationLog
    from twin.spec import spec_difference

    diff = spec_difference(twin.spec, spec)
    if diff:
        raise TwinError(f"the twin does not fit plant spec {spec.source}: {diff}")
    if controller is None:
        from twin.control.controller import Controller

        controller = Controller(twin, spec)
    interval = default_interval(spec, flush_every_s) if interval_s is None else interval_s
    stale = default_stale_after(spec, flush_every_s) if stale_after_s is None else stale_after_s
    if not (interval > 0 and stale > 0):
        raise TwinError(f"interval ({interval}) and stale limit ({stale}) must be > 0 seconds")
    if approve and not write:
        raise TwinError("approval mode releases writes: it needs write-back enabled (--write)")
    stats = LoopStats()
    recs = RecommendationLog(historian_dir)
    reader = Historian(historian_dir)
    writer = None
    if write:
        from twin.loop.writer import make_writer

        writer = make_writer(
            spec,
            endpoint,
            historian_dir,
            interval_s=interval,
            stale_after_s=stale,
            flush_every_s=flush_every_s,
            approve=approve,
            max_error_ratio=max_error_ratio,
            rate_slack=rate_slack,
            security=security,
            model_dir=model_dir,
        )
        stats.write = writer.counts

    async def recommend_forever() -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time() + interval
        while True:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            next_at = max(next_at + interval, loop.time())  # skip ticks a slow solve overran
            try:
                step = await asyncio.to_thread(
                    recommend_from_historian,
                    controller,
                    twin,
                    reader,
                    setpoints=setpoints,
                    stale_after_s=stale,
                    spec=spec,
                )
                recs.append(step.rec)
                _note(stats, step)
                if writer is not None:
                    await writer.on_step(step)
                if on_step is not None:
                    await on_step(step)
            except Exception:  # a bug or a full disk must not stop the collector
                stats.errors += 1
                log.exception("recommendation step failed; the loop goes on")

    if writer is None:
        log.info(
            "advisory loop for %s: recommending every %g s (stale after %g s) into %s; "
            "nothing is written to the plant",
            spec.name,
            interval,
            stale,
            historian_dir,
        )
    else:
        log.warning(
            "WRITE-BACK loop for %s: recommending every %g s (stale after %g s) into %s and "
            "writing the moves to %s when every check passes%s; audit log %s",
            spec.name,
            interval,
            stale,
            historian_dir,
            ", ".join(str(t.write_node) for t in spec.mvs),
            " and an operator approved them" if approve else "",
            writer.audit.path,
        )
    recommender = asyncio.create_task(recommend_forever())
    try:
        stats.collect = await run_collect(
            spec,
            endpoint,
            Path(historian_dir),
            settings=settings,
            security=security,
            duration_s=duration_s,
            flush_every_s=flush_every_s,
            log_every_s=log_every_s,
        )
    finally:
        recommender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await recommender
        if writer is not None:
            await writer.close()
    log.info(
        "loop stopped: %d steps, %d recommendations, %d failed (%d stale), %d errors",
        stats.steps,
        stats.recommended,
        stats.failed,
        stats.stale,
        stats.errors,
    )
    if writer is not None:
        c = writer.counts
        log.info(
            "write-back: %d written (%d approved), %d refused, %d awaited approval; %d sessions",
            c.written,
            c.approved,
            c.refused,
            c.waiting,
            c.sessions,
        )
    return stats


def _note(stats: LoopStats, step: Step) -> None:
    """Count one step and log its one line."""
    rec = step.rec
    stats.steps += 1
    stats.last = rec
    stats.health = step.health
    health = "n/a" if step.health is None else f"{step.health:.2f}"
    if rec.success:
        stats.recommended += 1
        moves = ", ".join(
            f"{m.tag} {m.current:.4g} -> {m.recommended:.4g} {m.unit}" for m in rec.moves
        )
        log.info(
            "recommend %s (limits %s, solve %.0f ms, health %s)",
            moves,
            "held" if rec.limits_held else "NOT held",
            rec.solve_time_s * 1e3,
            health,
        )
        return
    stats.failed += 1
    if rec.message.startswith("stale data"):
        stats.stale += 1
    log.warning("no recommendation: %s (MVs held; health %s)", rec.message, health)
