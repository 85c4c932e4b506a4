"""The control loop: the one place that joins feed, historian, twin, controller and writer.

    feed = OpcUaFeed("opc.tcp://127.0.0.1:4840/cstr")          # connectors.collect
    stats = asyncio.run(run_loop(spec, feed, twin, "hist/"))

:func:`run_loop` runs the sample feed (:class:`~twin.loop.ports.SampleFeed`, which keeps the
historian fed) and a recommender side by side in one asyncio loop. Every ``interval_s`` the
recommender reads the last stretch of history from the historian, asks the controller for the
next moves (:func:`twin.loop.step.recommend_from_historian`, in a worker thread, so the feed
never stalls), appends the recommendation to the historian folder's
:class:`~twin.control.recommendation_log.RecommendationLog` and logs one line with the model's
health. By default it is advisory: nothing is written to the plant. Given a move writer
(:class:`~twin.loop.ports.MoveWriter`) each recommendation goes through the guarded write-back
(:class:`twin.loop.writer.LoopWriter`: limits, rate limits against the measured MVs, fresh data,
model health, watchdog, optional operator approval, audit log in ``<historian>/audit.jsonl``); a
change of the spec file or the model folder under the running loop stops writing until restart.
Data older than ``stale_after_s`` gives no recommendation but a logged ``success=False`` one
with message ``"stale data ..."``, so the operator app shows why. The bands the recommendations
carry adapt to the live errors of each tag (:mod:`twin.model.adaptive`); what they learned is
kept in ``<historian>/bands.json``, so a restarted loop goes on from it. When the feed stops
(SIGINT / SIGTERM, or its duration) the recommender stops too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from twin.control.recommendation import Recommendation
from twin.control.recommendation_log import RecommendationLog
from twin.control.setpoints import Setpoints
from twin.errors import TwinError
from twin.loop.ports import MoveWriter, SampleFeed
from twin.loop.step import Step, default_interval, default_stale_after, recommend_from_historian
from twin.loop.writer import WriteCounts, make_writer
from twin.model.adaptive import BANDS_FILE, GAMMA, AdaptiveBands
from twin.spec import PlantSpec, spec_difference
from twin.store.historian import Historian

if TYPE_CHECKING:
    from twin.control.controller import Controller
    from twin.model.twin import Twin

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoopSettings:
    """How :func:`run_loop` recommends, and writes when it is given a move writer."""

    interval_s: float | None = None
    """seconds between recommendations (None: :func:`~twin.loop.step.default_interval`, one
    per sample period, no faster than the feed flushes)"""
    stale_after_s: float | None = None
    """no recommendation from data older than this many seconds (None:
    :func:`~twin.loop.step.default_stale_after`, a flush plus a few sample periods)"""
    setpoints: Mapping[str, float] | None = None
    """CV setpoints over the spec's (checked and merged once, at start:
    :meth:`~twin.control.setpoints.Setpoints.resolve`)"""
    approve: bool = False
    """with a move writer: write only recommendations an operator approved in
    ``<historian>/approvals.jsonl``, each once"""
    max_error_ratio: float = 3.0
    """with a move writer: no write while the live forecast error exceeds this many times the
    validation error"""
    rate_slack: float = 0.0
    """with a move writer: extra allowance on each rate limit against the measured MV, as a
    fraction of it (for noisy MV readings)"""
    model_dir: str | Path | None = None
    """the twin's saved folder: a change of it under the running loop stops writing"""
    band_gamma: float | None = GAMMA
    """step size of the adaptive bands (:mod:`twin.model.adaptive`); None: the calibrated band
    as it is, nothing learned live"""
    release: tuple[str, ...] = ()
    """MVs the twin never saw move that the controller may move all the same (by default such
    an MV is frozen: :class:`~twin.control.controller.Controller`)"""


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
    coverage: dict[str, float] | None = None
    """the latest recent band coverage per CV and DV"""
    last: Recommendation | None = None
    collect: object | None = None
    """the feed's counters, as its ``run`` returned them (``PumpStats`` for OPC-UA)"""
    write: WriteCounts | None = None
    """the write-back's counters (None when advisory)"""


async def run_loop(
    spec: PlantSpec,
    feed: SampleFeed,
    twin: Twin,
    historian_dir: str | Path,
    *,
    settings: LoopSettings | None = None,
    writer: MoveWriter | None = None,
    controller: Controller | None = None,
    on_step: Callable[[Step], Awaitable[None]] | None = None,
) -> LoopStats:
    """Run ``feed`` into ``historian_dir`` and recommend every ``settings.interval_s``.

    Runs until the feed returns (SIGINT / SIGTERM or its duration). ``on_step`` is awaited
    after each logged step (after the write-back); an error in it is logged and counted, and
    the loop goes on.

    Advisory unless a ``writer`` is given: then each recommendation is written to the spec's
    write nodes through it when every check passes (:func:`twin.loop.writer.make_writer`;
    ``settings`` bound the model health and widen the rate limits for noisy MV readings). With
    ``settings.approve`` only recommendations an operator approved are written, each once. The
    spec's file (when it has one) and the twin's saved folder ``settings.model_dir`` are
    watched: a change stops writing until restart.
    """
    settings = settings or LoopSettings()
    diff = spec_difference(twin.spec, spec)
    if diff:
        raise TwinError(f"the twin does not fit plant spec {spec.source}: {diff}")
    setpoints = Setpoints.resolve(spec, settings.setpoints)
    if controller is None:
        from twin.control.controller import Controller

        controller = Controller(twin, spec, release=settings.release)
    flush = feed.flush_every_s
    interval = default_interval(spec, flush) if settings.interval_s is None else settings.interval_s
    stale = (
        default_stale_after(spec, flush)
        if settings.stale_after_s is None
        else settings.stale_after_s
    )
    if not (interval > 0 and stale > 0):
        raise TwinError(f"interval ({interval}) and stale limit ({stale}) must be > 0 seconds")
    if settings.approve and writer is None:
        raise TwinError("approval mode releases writes: it needs write-back enabled (--write)")
    stats = LoopStats()
    recs = RecommendationLog(historian_dir)
    reader = Historian(historian_dir)
    loop_writer = None
    if writer is not None:
        loop_writer = make_writer(
            spec,
            writer,
            historian_dir,
            interval_s=interval,
            stale_after_s=stale,
            flush_every_s=flush,
            approve=settings.approve,
            max_error_ratio=settings.max_error_ratio,
            rate_slack=settings.rate_slack,
            model_dir=settings.model_dir,
        )
        stats.write = loop_writer.counts
    bands, bands_path = None, Path(historian_dir) / BANDS_FILE
    if settings.band_gamma is not None:
        bands = AdaptiveBands.resume(
            bands_path, twin.spec.tag_names, twin.calibration, settings.band_gamma
        )

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
                    bands=bands,
                )
                recs.append(step.rec)
                _note(stats, step)
                if bands is not None:
                    await asyncio.to_thread(_keep, bands, bands_path)
                if loop_writer is not None:
                    await loop_writer.on_step(step)
                if on_step is not None:
                    await on_step(step)
            except Exception:  # a bug or a full disk must not stop the collector
                stats.errors += 1
                log.exception("recommendation step failed; the loop goes on")

    if loop_writer is None:
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
            " and an operator approved them" if settings.approve else "",
            loop_writer.audit.path,
        )
    recommender = asyncio.create_task(recommend_forever())
    try:
        stats.collect = await feed.run(spec, Path(historian_dir))
    finally:
        recommender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await recommender
        if loop_writer is not None:
            await loop_writer.close()
    log.info(
        "loop stopped: %d steps, %d recommendations, %d failed (%d stale), %d errors",
        stats.steps,
        stats.recommended,
        stats.failed,
        stats.stale,
        stats.errors,
    )
    if loop_writer is not None:
        c = loop_writer.counts
        log.info(
            "write-back: %d written (%d approved), %d refused, %d awaited approval; %d sessions",
            c.written,
            c.approved,
            c.refused,
            c.waiting,
            c.sessions,
        )
    return stats


def _keep(bands: AdaptiveBands, path: Path) -> None:
    """Save the adaptive bands; a failure is logged, and they live on in memory."""
    try:
        bands.save(path)
    except OSError as exc:
        log.warning("adaptive bands not saved to %s: %s", path, exc)


def _note(stats: LoopStats, step: Step) -> None:
    """Count one step and log its one line."""
    rec = step.rec
    stats.steps += 1
    stats.last = rec
    stats.health = step.health
    stats.coverage = step.coverage or stats.coverage
    health = "n/a" if step.health is None else f"{step.health:.2f}"
    if step.coverage:
        health += ", band coverage " + ", ".join(f"{k} {v:.0%}" for k, v in step.coverage.items())
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
