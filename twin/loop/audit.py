"""The write-back's records: the append-only audit log and the operators' approvals.

:class:`AuditLog` is one JSON line per event (write, read-back, refusal, approval): who, when,
what, why. :class:`ApprovalQueue` holds the approvals the operator app writes (one JSON line per
press of its approve button); each releases one recommendation, once. Both files live in the
historian folder, written with ``O_APPEND`` and fsynced line by line: nothing is ever rewritten,
and a line torn by a crash is skipped on read.
"""

from __future__ import annotations

import getpass
import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from twin.errors import TwinError
from twin.store.jsonl import append_line
from twin.times import as_utc, now_utc

log = logging.getLogger(__name__)

#: file name of the audit log inside a historian folder (the app reads it there)
AUDIT_FILE = "audit.jsonl"
#: file name of the operator approvals inside a historian folder (the app's button writes it)
APPROVALS_FILE = "approvals.jsonl"


def current_user() -> str:
    """The OS user this process runs as ("unknown" where it cannot be told)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry, no LOGNAME in a container
        return "unknown"


def iso(ts: datetime) -> str:
    """ISO 8601 in UTC."""
    return ts.astimezone(UTC).isoformat()


def _parse_ts(value: object) -> datetime | None:
    try:
        ts = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return as_utc(ts)


def _append_line(path: Path, entry: Mapping[str, Any]) -> None:
    """Append one JSON line, flushed and fsynced (O_APPEND: never rewrites what is there)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    append_line(path, json.dumps(entry, allow_nan=False, default=str))


def _read_lines(path: Path) -> list[dict[str, Any]]:
    """Every complete JSON-object line of ``path``; a torn or foreign line is skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict):
            out.append(entry)
    return out


def _json_num(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


class AuditLog:
    """Append-only JSON lines ``{ts, who, action, tag, value, why, ...}``, one per event.

    ``action`` is ``write`` | ``readback`` | ``refuse`` | ``approve``; ``ok`` says whether a write
    or read-back succeeded. ``path`` is the file, or a folder (then ``<folder>/audit.jsonl``).
    ``who`` defaults to the OS user running the writer.
    """

    def __init__(self, path: str | Path, who: str | None = None) -> None:
        p = Path(path)
        self.path = p / AUDIT_FILE if p.is_dir() or not p.suffix else p
        self.who = who or current_user()

    def record(
        self,
        action: str,
        *,
        tag: str | None,
        value: float | None,
        why: str,
        who: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Append one entry (now, by ``who`` or this log's user) and return it."""
        entry = {
            "ts": iso(now_utc()),
            "who": who or self.who,
            "action": action,
            "tag": tag,
            "value": _json_num(value),
            "why": why,
            **extra,
        }
        _append_line(self.path, entry)
        return entry

    def read(self) -> list[dict[str, Any]]:
        """Every entry so far, oldest first (a torn last line is ignored)."""
        return _read_lines(self.path)


@dataclass(frozen=True)
class Approval:
    """One operator's release of one recommendation (a line of ``approvals.jsonl``)."""

    ts: datetime
    rec_ts: datetime
    operator: str
    """the approver's name (the signed-in user of the operator app)"""
    role: str | None = None
    """the approver's role when signed in (viewer | operator | engineer); None in older files"""
    via: str | None = None
    """how the approver signed in (password | oidc | station); None in older files"""

    @property
    def why(self) -> str:
        """The audit log's reason for the write: when it was approved, and by whom signed in how."""
        signed = f" by a signed-in {self.role} ({self.via})" if self.role else ""
        return f"approved at {iso(self.ts)}{signed}"


@dataclass
class ApprovalQueue:
    """Operator approvals in ``<historian>/approvals.jsonl``; each releases one recommendation once.

    The app's approve button calls :meth:`approve`; the writer calls :meth:`take`, which returns
    the approval of a recommendation (by its ``ts``) unless that approval was used already
    (an ``approve`` entry of the audit log).
    """

    historian_dir: str | Path
    _used: set[datetime] | None = field(default=None, init=False, repr=False)

    @property
    def path(self) -> Path:
        """The approvals file."""
        return Path(self.historian_dir) / APPROVALS_FILE

    def approve(
        self, rec_ts: datetime, operator: str, *, role: str | None = None, via: str | None = None
    ) -> Approval:
        """Release the recommendation made at ``rec_ts`` in the name of ``operator`` (signed in
        as ``role`` by ``via``: written as ``"role"`` and ``"via"`` when given)."""
        operator = operator.strip()
        if not operator:
            raise TwinError("an approval needs the operator's name")
        approval = Approval(now_utc(), rec_ts.astimezone(UTC), operator, role, via)
        entry = {"ts": iso(approval.ts), "rec_ts": iso(approval.rec_ts), "operator": operator}
        signed = {"role": role, "via": via}
        _append_line(self.path, entry | {k: v for k, v in signed.items() if v is not None})
        return approval

    def pending(self) -> list[Approval]:
        """Approvals on file, oldest first (used ones included)."""
        out = []
        for entry in _read_lines(self.path):
            ts, rec_ts = _parse_ts(entry.get("ts")), _parse_ts(entry.get("rec_ts"))
            operator = str(entry.get("operator") or "").strip()
            role, via = (str(v) if (v := entry.get(k)) else None for k in ("role", "via"))
            if ts and rec_ts and operator:
                out.append(Approval(ts, rec_ts, operator, role, via))
        return out

    def take(self, rec_ts: datetime, audit: AuditLog) -> Approval | None:
        """The unused approval of the recommendation at ``rec_ts``, now marked used; else None."""
        if self._used is None:
            self._used = {
                ts
                for e in audit.read()
                if e.get("action") == "approve" and (ts := _parse_ts(e.get("rec_ts")))
            }
        key = rec_ts.astimezone(UTC)
        if key in self._used:
            return None
        for approval in self.pending():
            if approval.rec_ts == key:
                self._used.add(key)
                return approval
        return None
