"""Tag search and saved trend sets: what the Trends page finds and keeps for each user.

- :func:`search`: tags whose name, description, unit or group holds the query (any case).
- :class:`TrendSets`: one user's named trend sets in ``<historian>/trendsets/<user>.json``,
  replaced atomically on every save (a reader or a crash sees the old file or the new one); a
  file that cannot be read raises :class:`TrendSetError` naming it and is never overwritten
  (:meth:`TrendSets.set_aside` moves it out of the way).
- :func:`user_name`: who is signed in (``dashboards.auth.current_user()`` where that module
  exists; None while nobody is), else the OS user the app runs as.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from twin.errors import TwinError
from twin.spec import PlantSpec, Tag

log = logging.getLogger(__name__)

FOLDER = "trendsets"
"""folder of the trend-set files inside the historian folder"""
FORMAT = 1
"""version of the file layout"""
MAX_NAME = 80
"""longest trend-set name"""
MAX_TAGS = 64
"""most tags one trend set keeps"""
SHOW = ("setpoint", "limits", "forecast")
"""what a trend draws beside the measured value (each on or off)"""


class TrendSetError(TwinError, ValueError):
    """A trend set or its file is unusable; the message names the file or the field."""


@dataclass(frozen=True)
class TrendSet:
    """A named selection of tags to trend together, and how to draw them."""

    name: str
    tags: tuple[str, ...]
    minutes: float = 60.0
    """history shown [min]"""
    show: tuple[str, ...] = SHOW
    """which of :data:`SHOW` are drawn"""
    saved: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        name = self.name.strip()
        if not name:
            raise TrendSetError("a trend set needs a name")
        if len(name) > MAX_NAME:
            raise TrendSetError(f"trend set name is longer than {MAX_NAME} characters")
        if not self.tags:
            raise TrendSetError(f"trend set {name!r} has no tags")
        if len(self.tags) > MAX_TAGS:
            raise TrendSetError(f"trend set {name!r} has {len(self.tags)} tags, at most {MAX_TAGS}")
        if not self.minutes > 0:
            raise TrendSetError(f"trend set {name!r}: minutes must be positive")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "tags", tuple(dict.fromkeys(self.tags)))  # once each, in order
        object.__setattr__(self, "show", tuple(s for s in SHOW if s in self.show))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "tags": list(self.tags),
            "minutes": self.minutes,
            "show": list(self.show),
            "saved": self.saved.astimezone(UTC).isoformat(),
        }

    @classmethod
    def from_dict(cls, doc: Any, where: str) -> TrendSet:
        """A trend set from its JSON object; :class:`TrendSetError` naming ``where`` if bad."""
        if not isinstance(doc, dict):
            raise TrendSetError(f"{where}: a trend set must be a JSON object")
        tags, show = doc.get("tags"), doc.get("show", list(SHOW))
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise TrendSetError(f"{where}: 'tags' must be a list of tag names")
        if not isinstance(show, list) or not all(isinstance(s, str) for s in show):
            raise TrendSetError(f"{where}: 'show' must be a list of {list(SHOW)}")
        try:
            saved = datetime.fromisoformat(str(doc.get("saved")))
        except ValueError:
            saved = datetime.fromtimestamp(0, UTC)
        try:
            return cls(
                name=str(doc.get("name", "")),
                tags=tuple(tags),
                minutes=float(doc.get("minutes", 60.0)),
                show=tuple(show),
                saved=saved if saved.tzinfo else saved.replace(tzinfo=UTC),
            )
        except (TypeError, ValueError) as exc:
            raise TrendSetError(f"{where}: {exc}") from None


def search(spec: PlantSpec, query: str) -> list[Tag]:
    """The tags whose name, description, unit or group contains ``query`` (case-insensitive),
    in spec order (every tag for an empty query)."""
    q = query.strip().casefold()
    return [
        t
        for t in spec.tags
        if not q or any(q in s.casefold() for s in (t.name, t.description, t.unit, t.group))
    ]


def tag_table(tags: Sequence[Tag]) -> pl.DataFrame:
    """One row per tag: name, role, description, unit, group (the search results)."""
    return pl.DataFrame(
        {
            "tag": [t.name for t in tags],
            "role": [t.role.upper() for t in tags],
            "description": [t.description for t in tags],
            "unit": [t.unit for t in tags],
            "group": [t.group for t in tags],
        },
        schema={k: pl.String for k in ("tag", "role", "description", "unit", "group")},
    )


def user_name() -> str | None:
    """Who keeps the trend sets: the signed-in user where the app has logins
    (``dashboards.auth.current_user()``; None while nobody is signed in), else the OS user."""
    try:  # written beside this module by the login work; absent before it
        auth: Any = importlib.import_module("dashboards.auth")
    except ImportError:
        auth = None
    get = getattr(auth, "current_user", None)
    if not callable(get):
        from twin.loop.audit import current_user

        return current_user()
    try:
        user = get()
    except Exception as exc:  # an auth module that cannot tell: nobody is signed in
        log.warning("dashboards.auth.current_user() failed: %s", exc)
        return None
    name = getattr(user, "name", user)  # a user object, or the name itself
    return name.strip() if isinstance(name, str) and name.strip() else None


def file_stem(user: str) -> str:
    """A file name for ``user``: characters other than letters, digits, ``_.@-`` become ``_``;
    never hidden, never ``..``."""
    stem = re.sub(r"[^A-Za-z0-9_.@-]", "_", user.strip())[:120] or "_"
    return f"_{stem}" if stem.startswith(".") else stem


class TrendSets:
    """The named trend sets of one user, kept in ``<historian>/trendsets/<user>.json``."""

    def __init__(self, historian: str | Path, user: str) -> None:
        self.user = user
        self.folder = Path(historian) / FOLDER
        self.path = self.folder / f"{file_stem(user)}.json"

    def load(self) -> dict[str, TrendSet]:
        """Every saved set by name (empty when none is saved); :class:`TrendSetError` naming the
        file when it cannot be read."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError) as exc:
            raise self._bad(f"cannot be read ({exc})") from None
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise self._bad(f"is not valid JSON (line {exc.lineno}, column {exc.colno})") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("sets"), list):
            raise self._bad("is not a trend-set file (no list of 'sets')")
        if doc.get("format", FORMAT) != FORMAT:
            raise self._bad(f"has format {doc.get('format')!r}; this app reads format {FORMAT}")
        out: dict[str, TrendSet] = {}
        for i, entry in enumerate(doc["sets"]):
            one = TrendSet.from_dict(entry, f"{self.path}: set {i + 1}")
            out[one.name] = one
        return out

    def names(self) -> list[str]:
        """Saved names, sorted case-insensitively."""
        return sorted(self.load(), key=str.casefold)

    def get(self, name: str) -> TrendSet:
        """The set called ``name``; :class:`TrendSetError` when there is none."""
        sets = self.load()
        if name not in sets:
            raise TrendSetError(f"{self.user} has no trend set {name!r} (saved: {sorted(sets)})")
        return sets[name]

    def save(self, trend: TrendSet) -> None:
        """Add ``trend``, or replace the set of the same name."""
        with self._locked():
            sets = self.load()
            sets[trend.name] = trend
            self._write(sets)
        log.info("saved trend set %r of %s", trend.name, self.user)

    def delete(self, name: str) -> bool:
        """Remove the set called ``name``; False when there was none."""
        with self._locked():
            sets = self.load()
            if sets.pop(name, None) is None:
                return False
            self._write(sets)
        return True

    def set_aside(self) -> Path | None:
        """Rename an unreadable file to ``<user>.json.bad-<time>`` (kept for a person to look at)
        so that saving starts afresh; returns the new path (None: there was no file)."""
        if not self.path.exists():
            return None
        aside = self.path.with_name(f"{self.path.name}.bad-{datetime.now(UTC):%Y%m%dT%H%M%S}")
        os.replace(self.path, aside)
        log.warning("set aside unreadable trend-set file %s as %s", self.path, aside)
        return aside

    def _bad(self, what: str) -> TrendSetError:
        return TrendSetError(
            f"trend sets of {self.user}: {self.path} {what}; it is left as it is: fix it, or set "
            "it aside to save new sets"
        )

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One read-modify-write at a time (two sessions of one user saving at once)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _write(self, sets: dict[str, TrendSet]) -> None:
        """Replace the file atomically: a temporary file, fsynced, renamed over it."""
        doc = {
            "format": FORMAT,
            "user": self.user,
            "sets": [sets[k].to_dict() for k in sorted(sets, key=str.casefold)],
        }
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(doc, out, indent=1, allow_nan=False)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        dirfd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)
