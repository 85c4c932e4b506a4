"""Time stamps as the project stores them: timezone-aware UTC."""

from __future__ import annotations

from datetime import UTC, datetime


def as_utc(ts: datetime) -> datetime:
    """``ts`` in UTC; a naive ``ts`` is taken to be UTC already (as this project writes them)."""
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def now_utc() -> datetime:
    """The current time, UTC."""
    return datetime.now(UTC)
