"""Alarms of the Plant page: what is abnormal now, and the operator's acknowledgements.

:func:`detect` finds the abnormal states in the newest sample of each tag:

- ``limit``: a tag outside its ``[lo, hi]`` (a CV limit violation; an MV or DV out of range);
- ``at limit``: an MV within :data:`AT_LIMIT_FRACTION` of its span from a limit (no room to move);
- ``quality``: the newest sample is bad or uncertain;
- ``stale``: the newest sample is older than :data:`STALE_PERIODS` sample periods, or the tag
  has no sample in the window.

:class:`AlarmBook` keeps them across refreshes (in ``st.session_state``): an alarm stays listed
until it has cleared *and* been acknowledged, so a short excursion is not missed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import datetime

import polars as pl

from twin.spec import PlantSpec

STALE_PERIODS = 3
"""a tag is stale when its newest sample is older than this many sample periods"""
AT_LIMIT_FRACTION = 0.005
"""an MV this close to a limit (fraction of its span) is at the limit"""
KINDS = ("limit", "at limit", "quality", "stale")


@dataclass(frozen=True)
class Alarm:
    """One abnormal state of one tag."""

    tag: str
    kind: str
    """one of :data:`KINDS`"""
    message: str
    since: datetime
    active: bool = True
    acked: bool = False

    @property
    def key(self) -> str:
        return f"{self.tag}:{self.kind}"


def detect(spec: PlantSpec, latest: pl.DataFrame, now: datetime) -> list[Alarm]:
    """The alarms of the newest sample of each tag (``latest``: tag, ts, value, quality)."""
    by_tag = {r["tag"]: r for r in latest.iter_rows(named=True)}
    stale_s = STALE_PERIODS * spec.sample_period
    out: list[Alarm] = []
    for tag in spec.tags:
        row = by_tag.get(tag.name)
        if row is None:
            out.append(Alarm(tag.name, "stale", f"{tag.name}: no data in the window", now))
            continue
        ts, value, quality = row["ts"], row["value"], str(row["quality"])
        age = (now - ts).total_seconds()
        if age > stale_s:
            out.append(Alarm(tag.name, "stale", f"{tag.name}: no new sample for {_age(age)}", now))
        if quality != "good" or value is None or not math.isfinite(value):
            out.append(Alarm(tag.name, "quality", f"{tag.name}: quality {quality}", now))
        if value is None or not math.isfinite(value):
            continue
        unit = f" {tag.unit}" if tag.unit else ""
        if value > tag.hi:
            out.append(
                Alarm(
                    tag.name,
                    "limit",
                    f"{tag.name} {value:.4g}{unit} above hi {tag.hi:g}{unit}",
                    now,
                )
            )
        elif value < tag.lo:
            out.append(
                Alarm(
                    tag.name,
                    "limit",
                    f"{tag.name} {value:.4g}{unit} below lo {tag.lo:g}{unit}",
                    now,
                )
            )
        elif tag.role == "mv":
            room = AT_LIMIT_FRACTION * tag.span
            if value >= tag.hi - room or value <= tag.lo + room:
                side = "hi" if value >= tag.hi - room else "lo"
                out.append(
                    Alarm(
                        tag.name,
                        "at limit",
                        f"{tag.name} {value:.4g}{unit} at its {side} limit",
                        now,
                    )
                )
    return out


def _age(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


@dataclass
class AlarmBook:
    """Alarms across refreshes: active or cleared, acknowledged or not (one per tag and kind)."""

    alarms: dict[str, Alarm] = field(default_factory=dict)

    def update(self, current: list[Alarm]) -> None:
        """Merge the alarms detected now; cleared and acknowledged ones drop out."""
        seen = set()
        for alarm in current:
            seen.add(alarm.key)
            old = self.alarms.get(alarm.key)
            if old is None:
                self.alarms[alarm.key] = alarm
            else:  # keep when it started and whether it was acknowledged
                self.alarms[alarm.key] = replace(old, message=alarm.message, active=True)
        for key, alarm in list(self.alarms.items()):
            if key not in seen:
                if alarm.acked:
                    del self.alarms[key]
                else:
                    self.alarms[key] = replace(alarm, active=False)

    def acknowledge(self, key: str) -> None:
        """The operator has seen alarm ``key``; a cleared one then drops out."""
        alarm = self.alarms.get(key)
        if alarm is None:
            return
        if alarm.active:
            self.alarms[key] = replace(alarm, acked=True)
        else:
            del self.alarms[key]

    def listing(self) -> list[Alarm]:
        """Alarms to show: unacknowledged first, then by kind severity and start time."""
        return sorted(
            self.alarms.values(), key=lambda a: (a.acked, KINDS.index(a.kind), a.since, a.tag)
        )

    @property
    def unacknowledged(self) -> int:
        return sum(not a.acked for a in self.alarms.values())
