"""The control loop's guarded write-back (``twin run --write``): one :class:`LoopWriter` per run.

After each recommendation step :func:`twin.loop.run.run_loop` hands the step to
:meth:`LoopWriter.on_step`, which

- beats the watchdog: "collector" when the newest stored sample advanced since the last step,
  "twin" at the end of every step, so a step that comes late (a solve that overran, a stalled
  recommender) finds the twin's heartbeat old and writes nothing;
- holds every write while the spec file or the model folder the loop started with has changed
  on disk (:class:`FileWatch`). That is latched: the loop goes on collecting and advising with
  what it loaded, logs an error once and audits each refusal, and writes again only after
  ``twin run`` is restarted (which loads, and checks, the new spec and model);
- in approval mode tries the newest recent recommendation an operator approved
  (``<historian>/approvals.jsonl``, the app's approve button) instead of the step's own, once;
- calls :func:`twin.loop.writeback.maybe_write` over its own session to the plant (a
  :class:`~twin.loop.ports.MoveWriter`, e.g. ``connectors.opcua_write.OpcUaMoveWriter`` with
  the collector's security), reopened at the next step after it is lost; without a session the
  recommendation is refused and audited.

Nothing here raises for a plant problem: every outcome is a :class:`~twin.loop.guard.Decision`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from twin.control.recommendation import Recommendation
from twin.errors import TwinError
from twin.loop.audit import ApprovalQueue, AuditLog
from twin.loop.guard import Decision, Watchdog, WriteGuard
from twin.loop.ports import MoveWriter
from twin.loop.step import Step
from twin.loop.writeback import WAITING, maybe_write
from twin.spec import PlantSpec
from twin.times import now_utc

log = logging.getLogger(__name__)

#: audited reason while the spec file differs from the one the loop started with
SPEC_CHANGED = "spec file changed under the running loop"
#: audited reason while the model folder differs from the one the loop started with
MODEL_CHANGED = "model changed"
#: files of a saved twin whose change stops writing
MODEL_FILES = ("model.pt", "config.json", "spec.toml", "normalizer.json", "calibration.json")
#: the watchdog holds writes when the collector or the twin is this many intervals late
LAG_INTERVALS = 3.0
#: recent successful recommendations kept for late approvals (a stale one is refused, audited)
KEEP_RECS = 100


def _digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _stat_key(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


@dataclass
class _Watched:
    path: Path
    reason: str
    digest: str | None
    key: tuple[int, int] | None


class FileWatch:
    """Content hashes of files taken when the loop started; which changed since (latched).

    ``groups`` maps a reason (:data:`SPEC_CHANGED`, :data:`MODEL_CHANGED`) to its files. A file
    is re-hashed only when its mtime or size changed, so a ``touch`` is not a change; a file
    that changed and changed back stays reported (the loop may have read it in between).
    """

    def __init__(self, groups: Mapping[str, Sequence[Path]]) -> None:
        self._files = [
            _Watched(p, reason, _digest(p), _stat_key(p))
            for reason, paths in groups.items()
            for p in paths
        ]
        self._changed: dict[str, str] = {}

    @classmethod
    def for_loop(cls, spec: PlantSpec, model_dir: str | Path | None) -> FileWatch:
        """Watch ``spec``'s file (when it came from one) and the saved twin in ``model_dir``."""
        groups: dict[str, list[Path]] = {}
        source = Path(spec.source)
        if source.is_file():
            groups[SPEC_CHANGED] = [source]
        if model_dir is not None:
            groups[MODEL_CHANGED] = [
                Path(model_dir) / f for f in MODEL_FILES if (Path(model_dir) / f).is_file()
            ]
        return cls(groups)

    @property
    def paths(self) -> list[Path]:
        """The files watched."""
        return [w.path for w in self._files]

    def changed(self) -> tuple[str, ...]:
        """One line per changed group: the reason and the file (empty while all are as loaded)."""
        for w in self._files:
            if w.reason in self._changed:
                continue
            key = _stat_key(w.path)
            if key == w.key:
                continue
            w.key = key
            digest = _digest(w.path) if key is not None else None
            if digest == w.digest:
                continue
            what = "removed" if digest is None else "edited"
            self._changed[w.reason] = (
                f"{w.reason} ({w.path} {what}): writes stay off until `twin run` restarts"
            )
            log.error(
                "%s: %s was %s; write-back stops (collecting and advising go on with what was "
                "loaded); restart `twin run` to check and use the new one",
                w.reason,
                w.path,
                what,
            )
        return tuple(self._changed.values())


class LoopWatchdog(Watchdog):
    """The writer's watchdog: heartbeats, and a hold while a watched file changed."""

    def __init__(
        self,
        max_lag_s: float,
        watch: FileWatch | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(max_lag_s, clock=clock)
        self.watch = watch

    def reasons(self) -> tuple[str, ...]:
        """The file changes first, then the heartbeats' reasons."""
        changed = self.watch.changed() if self.watch is not None else ()
        return (*changed, *super().reasons())


@dataclass
class WriteCounts:
    """What the writer did, step by step."""

    written: int = 0
    """recommendations written and confirmed by read-back"""
    approved: int = 0
    """of those, released by an operator's approval"""
    refused: int = 0
    """steps that wrote nothing: refused by a check, or a write that failed (all audited)"""
    waiting: int = 0
    """steps whose recommendation passed every check but waits for an operator's approval"""
    sessions: int = 0
    """sessions the writer opened (more than 1: it reconnected)"""
    last: Decision | None = None


class LoopWriter:
    """Writes each step's recommendation through the guard over its own session to the plant."""

    def __init__(
        self,
        spec: PlantSpec,
        plant: MoveWriter,
        historian_dir: str | Path,
        *,
        guard: WriteGuard,
        watchdog: Watchdog,
        approve: bool = False,
        connect_timeout_s: float = 4.0,
    ) -> None:
        self.spec = spec
        self.plant = plant
        self.guard = guard
        self.watchdog = watchdog
        self.audit = AuditLog(Path(historian_dir))
        self.approvals = ApprovalQueue(historian_dir) if approve else None
        self.connect_timeout_s = connect_timeout_s
        self.counts = WriteCounts()
        self._open = False  # a session was opened and not closed since (a lost one is reopened)
        self._offline_logged = False
        self._newest: datetime | None = None
        self._recent: dict[datetime, Recommendation] = {}
        watchdog.beat("twin")  # the loop starts now: the first step is measured from here

    async def on_step(self, step: Step) -> Decision:
        """Write ``step``'s recommendation (or an approved earlier one) if every check passes."""
        if step.newest is not None and (self._newest is None or step.newest > self._newest):
            self._newest = step.newest
            self.watchdog.beat("collector")
        rec = step.rec
        if self.approvals is not None:
            if rec.success:
                self._keep(rec)
            rec = self._approved() or rec
        age = None if step.newest is None else (now_utc() - step.newest).total_seconds()
        try:
            decision = await maybe_write(
                await self._session(),
                self.spec,
                rec,
                guard=self.guard,
                audit=self.audit,
                watchdog=self.watchdog,
                last_measured=step.measured,
                data_age_s=age,
                health_ratio=step.health,
                enabled=True,
                approvals=self.approvals,
            )
        finally:
            self.watchdog.beat("twin")
        self._count(rec, decision)
        return decision

    async def close(self) -> None:
        """Close the writer's session (if any)."""
        was_open, self._open = self._open, False
        if was_open:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.plant.close(), self.connect_timeout_s)

    def _keep(self, rec: Recommendation) -> None:
        self._recent[rec.ts] = rec
        while len(self._recent) > KEEP_RECS:
            del self._recent[min(self._recent)]

    def _approved(self) -> Recommendation | None:
        """The newest kept recommendation with an approval on file, taken out (tried once)."""
        assert self.approvals is not None
        wanted = {a.rec_ts for a in self.approvals.pending()}
        for ts in sorted(self._recent, reverse=True):
            if ts in wanted:
                log.info("operator approval found for the recommendation of %s", ts.isoformat())
                return self._recent.pop(ts)
        return None

    async def _session(self) -> MoveWriter | None:
        """The plant with an open session; a new one if it was lost; None while none can be had."""
        if self._open and not self.plant.connected:
            log.warning("write-back session to %s lost; opening a new one", self.plant.endpoint)
            await self.close()
        if self._open:
            return self.plant
        timeout = self.connect_timeout_s
        try:
            await asyncio.wait_for(self.plant.open(timeout), 2 * timeout)
        except Exception as exc:  # the plant is away: refused and audited, retried next step
            if not self._offline_logged:
                log.warning("write-back has no OPC-UA session (%s); retrying each step", exc)
                self._offline_logged = True
            return None
        self._open = True
        self.counts.sessions += 1
        if self._offline_logged:
            log.info("write-back session to %s open again", self.plant.endpoint)
        self._offline_logged = False
        return self.plant

    def _count(self, rec: Recommendation, decision: Decision) -> None:
        c = self.counts
        c.last = decision
        if decision.allowed:
            c.written += 1
            c.approved += decision.approved_by is not None
        elif decision.reasons == (WAITING,):
            c.waiting += 1
            log.info("recommendation of %s awaits an operator's approval", rec.ts.isoformat())
        else:
            c.refused += 1


def make_writer(
    spec: PlantSpec,
    plant: MoveWriter,
    historian_dir: str | Path,
    *,
    interval_s: float,
    stale_after_s: float,
    flush_every_s: float,
    approve: bool = False,
    max_error_ratio: float = 3.0,
    rate_slack: float = 0.0,
    model_dir: str | Path | None = None,
) -> LoopWriter:
    """The loop's write-back to ``plant``, with limits that fit its timing.

    Data is fresh for a write as long as it is for a recommendation (``stale_after_s``); a
    recommendation may be written up to ``stale_after_s`` + 2 intervals after its newest sample
    (4 sample periods at least: an approval needs a moment); the watchdog holds writes once the
    collector's newest sample or the recommender is :data:`LAG_INTERVALS` intervals (or flush
    periods, if longer) late.
    """
    if not (max_error_ratio > 0 and rate_slack >= 0):
        raise TwinError(
            f"max error ratio ({max_error_ratio}) must be > 0 and rate slack ({rate_slack}) >= 0"
        )
    rec_periods = max(4.0, (stale_after_s + 2 * interval_s) / spec.sample_period)
    guard = WriteGuard(
        spec,
        max_error_ratio=max_error_ratio,
        max_age_s=stale_after_s,
        max_rec_periods=rec_periods,
        rate_slack=rate_slack,
    )
    watch = FileWatch.for_loop(spec, model_dir)
    if model_dir is None:
        log.warning("write-back: no model folder given, so a changed model goes unnoticed")
    watchdog = LoopWatchdog(LAG_INTERVALS * max(interval_s, flush_every_s), watch)
    return LoopWriter(
        spec,
        plant,
        historian_dir,
        guard=guard,
        watchdog=watchdog,
        approve=approve,
        connect_timeout_s=min(4.0, max(1.0, interval_s)),
    )
