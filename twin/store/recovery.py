"""Keeping a store readable after crashes and damage: cleanup on open, file checks, quarantine.

- *Crashes*: a crash while writing leaves at most a ``*.tmp`` file, which readers never see
  (they read ``*.parquet`` only) and which :func:`recover` removes once it is older than
  :data:`STALE_S` (a younger one may belong to a writer busy right now). A crash during a
  compaction leaves its journal (see :mod:`twin.store.writing`): :func:`recover` finishes it by
  removing the inputs of a merged file that exists (else only the journal), so after a crash
  no reader meets a row twice.
- *Damage*: every data file is checked before it is read (:meth:`CheckedFiles.check`: its
  schema and footer; in full when a read failed). An unreadable file is moved to
  ``quarantine/`` with a warning, never deleted, and the rest of the store reads fine.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import uuid
from datetime import datetime
from pathlib import Path

import polars as pl

from twin.errors import DataQualityError
from twin.store.layout import RANGE_KEYS, Range, days, files, read_file
from twin.store.schema import SCHEMA

log = logging.getLogger(__name__)

#: age after which a leftover ``*.tmp`` file is removed
STALE_S = 600.0


def recover(root: Path) -> None:
    """Finish interrupted compactions and remove stale temporary files."""
    now = time.time()
    for _, folder in days(root):
        for journal in folder.glob("compact-*.journal"):
            try:
                doc = json.loads(journal.read_text(encoding="utf-8"))
                if (folder / doc["output"]).exists():
                    for name in doc["inputs"]:
                        (folder / name).unlink(missing_ok=True)
                journal.unlink(missing_ok=True)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("ignoring unreadable compaction journal %s: %s", journal, exc)
        for tmp in folder.glob("*.tmp"):
            try:
                if now - tmp.stat().st_mtime > STALE_S:
                    tmp.unlink()
                    log.info("removed stale temporary file %s", tmp)
            except OSError:
                pass  # another process removed or renamed it first


def quarantine(root: Path, path: Path, why: Exception) -> None:
    """Move the unreadable ``path`` to ``root/quarantine/<day>/<name>.corrupt`` (a warning)."""
    dest = root / "quarantine" / path.parent.name / (path.name + ".corrupt")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists():
            dest = dest.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}.corrupt")
        shutil.move(path, dest)
    except OSError as exc:
        log.error("unreadable file %s (%s) could not be quarantined: %s", path, why, exc)
        return
    log.warning("unreadable file %s skipped and moved to %s: %s", path, dest, why)


class CheckedFiles:
    """The data files of a store checked readable so far, each with the ts range it records."""

    def __init__(self, root: Path) -> None:
        self.root = root
        # files whose footer has been checked, with their ts range (None: unknown, i.e. all)
        self.ranges: dict[Path, Range | None] = {}

    def check(self, path: Path, deep: bool = False) -> bool:
        """True if ``path`` is a readable historian file (its range noted); else quarantined."""
        if path in self.ranges and not deep:
            return True
        try:
            if deep:
                read_file(path)
            found = pl.read_parquet_schema(path)
            if dict(found) != SCHEMA:
                raise DataQualityError(f"schema {dict(found)} is not the historian's")
            meta = pl.read_parquet_metadata(path)
        except FileNotFoundError:
            self.ranges.pop(path, None)
            return False  # compacted away meanwhile
        except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
            self.ranges.pop(path, None)
            quarantine(self.root, path, exc)
            return False
        try:
            self.ranges[path] = (int(meta[RANGE_KEYS[0]]), int(meta[RANGE_KEYS[1]]))
        except (KeyError, ValueError):
            self.ranges[path] = None  # not written here: may overlap anything
        return True

    def note(self, path: Path, span: Range) -> None:
        """``path`` was just written here and holds rows over ``span``."""
        self.ranges[path] = span

    def forget(self, path: Path) -> None:
        """``path`` is gone (compacted away)."""
        self.ranges.pop(path, None)

    def refresh(self, start: datetime | None, end: datetime | None, *, deep: bool) -> None:
        """After a failed read of ``[start, end)``: forget the files gone since.

        With ``deep``, also read each of the others in full, quarantining those that fail.
        """
        for path in files(self.root, start, end):
            if not path.exists():
                self.ranges.pop(path, None)
            elif deep:
                self.check(path, deep=True)
