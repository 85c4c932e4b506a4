"""The recommendation log: every recommendation the loop made, one JSON line each, by UTC day.

:class:`RecommendationLog`: one JSON line (``rec.to_dict()``) per recommendation in
``<historian_dir>/recommendations/YYYY-MM-DD.jsonl`` (UTC day of ``ts``), flushed and fsynced; a
torn last line (a crash mid-write) is skipped on read and never glued to the next record.
"""

from __future__ import annotations

import json
import logging
from datetime import date, datetime, timedelta
from pathlib import Path

from twin.control.recommendation import Recommendation
from twin.errors import TwinError
from twin.store.jsonl import append_line
from twin.times import as_utc

log = logging.getLogger(__name__)

LOG_FOLDER = "recommendations"


class RecommendationLog:
    """Append-only JSON-lines log of recommendations beside a historian (one file per UTC day)."""

    def __init__(self, historian_dir: str | Path) -> None:
        self.folder = Path(historian_dir) / LOG_FOLDER

    def path_for(self, day: date) -> Path:
        """The file of one UTC day."""
        return self.folder / f"{day.isoformat()}.jsonl"

    def append(self, rec: Recommendation) -> Path:
        """Add one recommendation (flushed and fsynced); returns the file it went to."""
        path = self.path_for(as_utc(rec.ts).date())
        line = json.dumps(rec.to_dict(), allow_nan=False, separators=(",", ":"))
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            append_line(path, line)
        except OSError as exc:
            raise TwinError(f"cannot append to the recommendation log {path}: {exc}") from exc
        return path

    def files(self) -> list[Path]:
        """The log's day files, oldest first."""
        if not self.folder.is_dir():
            return []
        return sorted(p for p in self.folder.glob("*.jsonl") if _day_of(p) is not None)

    def read(
        self, start: datetime | None = None, end: datetime | None = None
    ) -> list[Recommendation]:
        """Recommendations with ``start <= ts < end`` (either open), oldest first."""
        lo = None if start is None else as_utc(start)
        hi = None if end is None else as_utc(end)
        out: list[Recommendation] = []
        for path in self.files():
            day = _day_of(path)
            assert day is not None
            if lo is not None and day < (lo - timedelta(days=1)).date():
                continue
            if hi is not None and day > hi.date():
                continue
            for rec in _read_lines(path):
                if (lo is None or rec.ts >= lo) and (hi is None or rec.ts < hi):
                    out.append(rec)
        out.sort(key=lambda r: r.ts)
        return out

    def latest(self, at: datetime | None = None) -> Recommendation | None:
        """The most recent recommendation (the last appended of equal times), or None; with
        ``at``, the most recent made at or before ``at`` (the one in force then).

        Without ``at`` it reads only the end of the newest day file: the app asks every refresh,
        and a day of recommendations with their forecasts runs to tens of MB.
        """
        hi = None if at is None else as_utc(at)
        for path in reversed(self.files()):
            day = _day_of(path)
            if hi is not None and (day is None or day > hi.date()):
                continue
            recs = _read_tail(path) if hi is None else _read_lines(path)
            recs = [r for r in recs if hi is None or r.ts <= hi]
            if recs:
                return max(reversed(recs), key=lambda r: r.ts)
        return None


def _day_of(path: Path) -> date | None:
    try:
        return date.fromisoformat(path.stem)
    except ValueError:
        return None


#: bytes read from the end of a day file by :meth:`RecommendationLog.latest`
TAIL_BYTES = 256 * 1024


def _read_tail(path: Path) -> list[Recommendation]:
    """The readable records in the last :data:`TAIL_BYTES` of a file (the whole of a small one)."""
    try:
        size = path.stat().st_size
        if size <= TAIL_BYTES:
            return _read_lines(path)
        with path.open("rb") as f:
            f.seek(size - TAIL_BYTES)
            data = f.read()
    except OSError as exc:
        raise TwinError(f"cannot read the recommendation log {path}: {exc}") from exc
    recs = _parse_lines(path, data.split(b"\n")[1:])  # the first piece may be cut
    return recs or _read_lines(path)  # one record longer than the tail: read it all


def _read_lines(path: Path) -> list[Recommendation]:
    """Every readable record of one file; a torn or corrupt line is skipped with a warning."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TwinError(f"cannot read the recommendation log {path}: {exc}") from exc
    return _parse_lines(path, data.split(b"\n"))


def _parse_lines(path: Path, lines: list[bytes]) -> list[Recommendation]:
    out = []
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            out.append(Recommendation.from_dict(json.loads(raw)))
        except (ValueError, KeyError, TypeError) as exc:
            torn = i == len(lines) - 1  # no newline after it: a write cut short
            log.log(
                logging.DEBUG if torn else logging.WARNING,
                "%s line %d skipped (%s): %s",
                path,
                i + 1,
                "torn" if torn else "unreadable",
                exc,
            )
    return out
