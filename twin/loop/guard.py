"""The write guard: every check a recommendation passes before a value may reach the plant.

:class:`WriteGuard` lists every reason not to write (all of them, not just the first): write-back
not enabled, a failed or old recommendation, a value outside the spec's ``[lo, hi]`` or past its
rate limit from the MV's *last measured* value (and from the value it was planned from), stale
data, an unhealthy model (live forecast error over ``max_error_ratio`` times its validation
error). :class:`Watchdog` holds the last values (writes nothing) while the collector or the twin
falls behind. Each answer is a :class:`Decision`; :mod:`twin.loop.writeback` acts on it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from twin.control.recommendation import Recommendation
from twin.errors import TwinError
from twin.spec import PlantSpec, Tag
from twin.times import now_utc

log = logging.getLogger(__name__)

#: absolute slack of the limit and rate checks (engineering units)
TOL = 1e-9


@dataclass(frozen=True)
class Decision:
    """Whether a recommendation was (or may be) written, and why not."""

    allowed: bool
    reasons: tuple[str, ...] = ()
    """why it was refused (empty when allowed)"""
    written: tuple[tuple[str, float], ...] = ()
    """(MV, value) written and confirmed by read-back"""
    approved_by: str | None = None
    """``operator:<name>`` in approval mode"""

    @property
    def why(self) -> str:
        """The reasons as one line."""
        return "; ".join(self.reasons) or "all checks passed"


class WriteGuard:
    """The checks a recommendation passes before any value reaches the plant."""

    def __init__(
        self,
        spec: PlantSpec,
        *,
        max_error_ratio: float = 3.0,
        max_age_s: float | None = None,
        max_rec_periods: float = 4.0,
        rate_slack: float = 0.0,
    ) -> None:
        self.spec = spec
        self.max_error_ratio = max_error_ratio
        """largest live / validation forecast error allowed"""
        self.max_age_s = 3 * spec.sample_period if max_age_s is None else max_age_s
        """oldest newest-sample age allowed (s)"""
        self.max_rec_age_s = max_rec_periods * spec.sample_period
        """oldest recommendation allowed (s from its ``ts``)"""
        self.rate_slack = rate_slack
        """extra allowance on each rate limit, as a fraction of it (for noisy MV readings)"""

    def check(
        self,
        rec: Recommendation,
        last_measured: Mapping[str, float],
        data_age_s: float | None,
        health_ratio: float | None,
        enabled: bool,
        *,
        now: datetime | None = None,
    ) -> Decision:
        """Every reason not to write ``rec`` now (all of them, not just the first)."""
        reasons: list[str] = []
        if not enabled:
            reasons.append("write-back is not enabled")
        if rec.plant != self.spec.name:
            reasons.append(f"recommendation is for plant {rec.plant!r}, not {self.spec.name!r}")
        if not rec.success:
            reasons.append(f"recommendation failed: {rec.message}")
        rec_age = ((now or now_utc()) - rec.ts).total_seconds()
        if rec_age > self.max_rec_age_s:
            reasons.append(
                f"recommendation is {rec_age:.0f} s old (limit {self.max_rec_age_s:g} s)"
            )
        if data_age_s is None or not math.isfinite(data_age_s):
            reasons.append("data age unknown: no recent sample")
        elif data_age_s > self.max_age_s:
            reasons.append(
                f"stale data: newest sample {data_age_s:.1f} s old (limit {self.max_age_s:g} s)"
            )
        if health_ratio is None or not math.isfinite(health_ratio):
            reasons.append("model health unknown (no live forecast error yet)")
        elif health_ratio > self.max_error_ratio:
            reasons.append(
                f"model unhealthy: live forecast error {health_ratio:.2f}x its validation "
                f"error (limit {self.max_error_ratio:g}x)"
            )
        moves = {m.tag: m for m in rec.moves}
        for tag in self.spec.mvs:
            move = moves.get(tag.name)
            value = None if move is None else move.recommended
            reasons.extend(self._check_mv(tag, value, last_measured.get(tag.name)))
            # the slack only absorbs measurement noise: against the value the controller
            # planned from, the move must keep the spec's rate limit exactly
            if (
                move is not None
                and value is not None
                and tag.rate_limit is not None
                and abs(value - move.current) > tag.rate_limit + TOL
            ):
                reasons.append(
                    f"{tag.name}: move {value - move.current:+.4g} {tag.unit} from the "
                    f"planned-from {move.current:.6g} exceeds the rate limit "
                    f"{tag.rate_limit:g} {tag.unit} per sample"
                )
        return Decision(not reasons, tuple(reasons))

    def _check_mv(self, tag: Tag, value: float | None, last: float | None) -> list[str]:
        name, unit = tag.name, tag.unit
        if tag.write_node is None:
            return [f"{name}: the spec gives it no write node"]
        if value is None or not math.isfinite(value):
            return [f"{name}: no finite recommended value"]
        out = []
        if not tag.lo - TOL <= value <= tag.hi + TOL:
            out.append(f"{name}: {value:g} {unit} outside [{tag.lo:g}, {tag.hi:g}]")
        if tag.rate_limit is not None:
            if last is None or not math.isfinite(last):
                out.append(f"{name}: no measured value to check the rate limit against")
            else:
                allowed = tag.rate_limit * (1 + self.rate_slack) + TOL
                if abs(value - last) > allowed:
                    out.append(
                        f"{name}: move {value - last:+.4g} {unit} from the measured {last:.6g} "
                        f"exceeds the rate limit {tag.rate_limit:g} {unit} per sample"
                    )
        return out


class Watchdog:
    """Heartbeats of the collector and the twin; unhealthy when one falls ``max_lag_s`` behind."""

    KINDS = ("collector", "twin")

    def __init__(self, max_lag_s: float, *, clock: Any = time.monotonic) -> None:
        if not max_lag_s > 0:
            raise TwinError(f"watchdog lag limit must be > 0 s, got {max_lag_s}")
        self.max_lag_s = max_lag_s
        self._clock = clock
        self._beats: dict[str, float] = {}
        self._holding = False

    def beat(self, kind: str) -> None:
        """Record that ``kind`` ("collector" or "twin") made progress just now."""
        if kind not in self.KINDS:
            raise TwinError(f"unknown watchdog heartbeat {kind!r} (use {', '.join(self.KINDS)})")
        self._beats[kind] = self._clock()

    def reasons(self) -> tuple[str, ...]:
        """Why writes are held now (empty when healthy)."""
        now = self._clock()
        out = []
        for kind in self.KINDS:
            last = self._beats.get(kind)
            if last is None:
                out.append(f"watchdog: no heartbeat from the {kind} yet")
            elif now - last > self.max_lag_s:
                out.append(
                    f"watchdog: the {kind} is {now - last:.1f} s behind "
                    f"(limit {self.max_lag_s:g} s); holding the last values"
                )
        if out and not self._holding:
            log.warning("%s", "; ".join(out))
        elif not out and self._holding:
            log.info("watchdog: collector and twin keep up again")
        self._holding = bool(out)
        return tuple(out)

    def healthy(self) -> bool:
        """True when both the collector and the twin beat within ``max_lag_s``."""
        return not self.reasons()
