"""The alarm book: alarms across refreshes, the operator's actions on them, and their history.

:class:`AlarmBook` holds the alarms :func:`dashboards.alarms.evaluate` finds, one per tag and
kind: an alarm stays until it has cleared *and* been acknowledged; a shelved one is hidden from
the list until its expiry and returns then if still active. :func:`summary` condenses a book
for the overview.

Every change is an :class:`Event` in an append-only log (:class:`AlarmLog`), one JSON line each
in ``<historian>/alarms/YYYY-MM-DD.jsonl`` (UTC day of the event), appended with
:func:`twin.store.jsonl.append_line` (fsynced; a torn last line is skipped on read), e.g.::

    {"ts": "2026-05-01T12:00:03+00:00", "event": "acknowledged", "tag": "T", "kind": "limit",
     "priority": "high", "message": "T 350 K above hi 345 K", "user": "ada"}

A restarted app replays the log (:meth:`AlarmBook.restore`). A folder the app cannot write is
warned about once and the alarms go on unlogged.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from twin.store.jsonl import append_line

log = logging.getLogger(__name__)

LOG_FOLDER = "alarms"
PRIORITIES = ("high", "medium", "low")
EVENTS = ("raised", "acknowledged", "shelved", "unshelved", "cleared")


@dataclass(frozen=True)
class Event:
    """One change of one alarm."""

    ts: datetime
    event: str
    """one of :data:`EVENTS`"""
    tag: str
    kind: str
    priority: str
    message: str
    user: str = ""
    """who acknowledged or shelved ("" for what the app did: raised, cleared, unshelved)"""
    reason: str = ""
    """shelved: why"""
    until: datetime | None = None
    """shelved: until when"""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ts": self.ts.isoformat(),
            "event": self.event,
            "tag": self.tag,
            "kind": self.kind,
            "priority": self.priority,
            "message": self.message,
            "user": self.user,
        }
        if self.reason:
            out["reason"] = self.reason
        if self.until is not None:
            out["until"] = self.until.isoformat()
        return out

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Event:
        until = doc.get("until")
        return cls(
            datetime.fromisoformat(doc["ts"]),
            str(doc["event"]),
            str(doc["tag"]),
            str(doc["kind"]),
            str(doc["priority"]),
            str(doc["message"]),
            str(doc.get("user", "")),
            str(doc.get("reason", "")),
            datetime.fromisoformat(until) if until else None,
        )


class AlarmLog:
    """Append-only JSON-lines log of alarm events beside a historian (one file per UTC day)."""

    def __init__(self, historian_dir: str | Path) -> None:
        self.folder = Path(historian_dir) / LOG_FOLDER
        self._warned = False

    def append(self, events: list[Event]) -> None:
        """Add ``events`` (each line fsynced); an unwritable folder is warned about once."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            for ev in events:
                line = json.dumps(ev.to_dict(), separators=(",", ":"))
                append_line(self.folder / f"{ev.ts.date().isoformat()}.jsonl", line)
        except OSError as exc:
            if not self._warned:
                log.warning("cannot write the alarm log in %s: %s", self.folder, exc)
                self._warned = True

    def files(self) -> list[Path]:
        """The day files, oldest first."""
        if not self.folder.is_dir():
            return []
        return sorted(self.folder.glob("????-??-??.jsonl"))

    def read(self, start: datetime | None = None) -> list[Event]:
        """The events at or after ``start`` (None: all), oldest first."""
        first = start.date().isoformat() if start is not None else ""
        out = [
            ev
            for path in self.files()
            if path.stem >= first
            for ev in _events(path)
            if start is None or ev.ts >= start
        ]
        return sorted(out, key=lambda ev: ev.ts)

    def tail(self, n: int) -> list[Event]:
        """The last ``n`` events, oldest first (reads the newest day files only)."""
        out: list[Event] = []
        for path in reversed(self.files()):
            out = _events(path) + out
            if len(out) >= n:
                break
        return out[-n:] if n > 0 else []


def _events(path: Path) -> list[Event]:
    out = []
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        log.warning("cannot read the alarm log %s: %s", path, exc)
        return []
    for line in text.splitlines():
        try:
            out.append(Event.from_dict(json.loads(line)))
        except (ValueError, KeyError, TypeError):
            continue  # a torn last line (a crash mid-write): skipped
    return out


@dataclass(frozen=True)
class Alarm:
    """One abnormal state of one tag (or of the plant: tag ``*``, :data:`dashboards.alarms.PLANT`)."""

    tag: str
    kind: str
    """one of :data:`dashboards.alarms.KINDS`"""
    priority: str
    """one of :data:`PRIORITIES`"""
    message: str
    since: datetime
    active: bool = True
    acked: bool = False
    shelved_until: datetime | None = None
    shelved_by: str = ""
    shelve_reason: str = ""
    seen: datetime | None = None
    """stale: when the tag was last heard of (sample or liveness mark); None: not in the window"""

    @property
    def key(self) -> str:
        return f"{self.tag}:{self.kind}"

    def shelved(self, now: datetime) -> bool:
        return self.shelved_until is not None and self.shelved_until > now

    def event(
        self,
        what: str,
        ts: datetime,
        user: str = "",
        reason: str = "",
        until: datetime | None = None,
    ) -> Event:
        """The log entry of ``what`` (raised, acknowledged, ...) happening to this alarm."""
        return Event(
            ts, what, self.tag, self.kind, self.priority, self.message, user, reason, until
        )


def _order(alarm: Alarm) -> tuple[int, bool, float, str]:
    """Priority first, then unacknowledged before acknowledged, then the newest first."""
    return (PRIORITIES.index(alarm.priority), alarm.acked, -alarm.since.timestamp(), alarm.key)


@dataclass
class AlarmBook:
    """Alarms across refreshes (see the module doc); thread safe, every change logged to
    ``log`` when given. Methods taking ``now`` default to the time of the last update."""

    log: AlarmLog | None = None
    alarms: dict[str, Alarm] = field(default_factory=dict)
    last: datetime | None = None
    """the ``now`` of the last :meth:`update`"""
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def _now(self, now: datetime | None) -> datetime:
        return now or self.last or datetime.now(UTC)

    @staticmethod
    def _stamp(now: datetime | None) -> datetime:
        return now or datetime.now(UTC)  # an operator's action happens on the wall clock

    def _write(self, events: list[Event]) -> None:
        if self.log is not None and events:
            self.log.append(events)

    def update(self, current: list[Alarm], now: datetime) -> None:
        """Merge the alarms found at ``now``: new ones raised, gone ones cleared, expired
        shelves lifted. An update older than the last one (another session's) is ignored."""
        with self._lock:
            if self.last is not None and now < self.last:
                return
            self.last = now
            events, seen = [], set()
            for alarm in current:
                seen.add(alarm.key)
                old = self.alarms.get(alarm.key)
                if old is None or not old.active:  # new, or back before it was acknowledged
                    events.append(alarm.event("raised", now))
                if old is None:
                    self.alarms[alarm.key] = alarm
                else:  # keep when it started, whether it was acknowledged or shelved
                    self.alarms[alarm.key] = replace(
                        old, message=alarm.message, seen=alarm.seen, active=True
                    )
            for key, alarm in list(self.alarms.items()):
                if alarm.shelved_until is not None and not alarm.shelved(now):
                    alarm = replace(alarm, shelved_until=None, shelved_by="", shelve_reason="")
                    self.alarms[key] = alarm
                    events.append(alarm.event("unshelved", now))
                if key not in seen and alarm.active:
                    events.append(alarm.event("cleared", now))
                    if alarm.acked or alarm.shelved(now):
                        del self.alarms[key]
                    else:
                        self.alarms[key] = replace(alarm, active=False)
            self._write(events)

    def acknowledge(self, key: str, user: str, now: datetime | None = None) -> bool:
        """``user`` has seen alarm ``key`` (a cleared one then drops out); False if none to ack."""
        with self._lock:
            alarm = self.alarms.get(key)
            if alarm is None or alarm.acked:
                return False
            if alarm.active:
                self.alarms[key] = replace(alarm, acked=True)
            else:
                del self.alarms[key]
            self._write([alarm.event("acknowledged", self._stamp(now), user)])
            return True

    def acknowledge_all(self, user: str, now: datetime | None = None) -> int:
        """Acknowledge every unacknowledged alarm listed (not the shelved ones); how many."""
        with self._lock:
            keys = [a.key for a in self.listing(now) if not a.acked]
            return sum(self.acknowledge(key, user, now) for key in keys)

    def shelve(
        self, key: str, user: str, reason: str, until: datetime, now: datetime | None = None
    ) -> None:
        """Hide alarm ``key`` until ``until`` for ``reason`` (ValueError without a reason)."""
        if not reason.strip():
            raise ValueError("a shelved alarm needs a reason")
        with self._lock:
            alarm = self.alarms.get(key)
            if alarm is None:
                return
            alarm = replace(alarm, shelved_until=until, shelved_by=user, shelve_reason=reason)
            self.alarms[key] = alarm
            self._write([alarm.event("shelved", self._stamp(now), user, reason, until)])

    def listing(self, now: datetime | None = None) -> list[Alarm]:
        """Alarms to show (not shelved): by priority, unacknowledged first, newest first."""
        now = self._now(now)
        with self._lock:
            return sorted((a for a in self.alarms.values() if not a.shelved(now)), key=_order)

    def shelved(self, now: datetime | None = None) -> list[Alarm]:
        """The shelved alarms, soonest back first."""
        now = self._now(now)
        with self._lock:
            hidden = [a for a in self.alarms.values() if a.shelved(now)]
        return sorted(hidden, key=lambda a: (a.shelved_until, a.key))

    @property
    def unacknowledged(self) -> int:
        """Unacknowledged alarms listed (shelved ones are not)."""
        return sum(not a.acked for a in self.listing())

    def restore(self, events: list[Event]) -> None:
        """Replay logged ``events`` (oldest first): the state a restarted app resumes from."""
        with self._lock:
            for ev in events:
                key, alarm = f"{ev.tag}:{ev.kind}", self.alarms.get(f"{ev.tag}:{ev.kind}")
                if ev.event == "raised":
                    base = alarm or Alarm(ev.tag, ev.kind, ev.priority, ev.message, ev.ts)
                    self.alarms[key] = replace(base, message=ev.message, active=True)
                elif alarm is None:
                    continue
                elif ev.event == "acknowledged" or (
                    ev.event == "cleared" and (alarm.acked or alarm.shelved_until)
                ):
                    if alarm.active and ev.event == "acknowledged":
                        self.alarms[key] = replace(alarm, acked=True)
                    else:
                        del self.alarms[key]
                elif ev.event == "cleared":
                    self.alarms[key] = replace(alarm, active=False)
                elif ev.event == "shelved":
                    self.alarms[key] = replace(
                        alarm, shelved_until=ev.until, shelved_by=ev.user, shelve_reason=ev.reason
                    )
                elif ev.event == "unshelved":
                    self.alarms[key] = replace(alarm, shelved_until=None)


@dataclass(frozen=True)
class AlarmSummary:
    """The alarms in a few numbers (what the overview shows)."""

    counts: dict[str, int]
    """active alarms listed (not shelved), by priority (every one of :data:`PRIORITIES`)"""
    unacknowledged: int
    shelved: int
    worst: str | None
    """the message of the first alarm listed (highest priority, newest); None: no alarm"""
    worst_priority: str | None

    @property
    def active(self) -> int:
        return sum(self.counts.values())


def summary(book: AlarmBook, now: datetime | None = None) -> AlarmSummary:
    """The summary of ``book`` at ``now`` (default: its last update)."""
    listing = book.listing(now)
    counts = {p: sum(a.active and a.priority == p for a in listing) for p in PRIORITIES}
    first = listing[0] if listing else None
    return AlarmSummary(
        counts,
        sum(not a.acked for a in listing),
        len(book.shelved(now)),
        first.message if first else None,
        first.priority if first else None,
    )
