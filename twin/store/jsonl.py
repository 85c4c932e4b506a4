"""Small text files the project keeps beside its data: append-only JSON lines (outages, audit,
approvals, recommendations), and whole files replaced atomically (:func:`replace_text`).

JSON lines: one fsynced write per line.
Each line goes in with a single ``write`` on an ``O_APPEND`` descriptor and is fsynced before
the call returns, so lines of concurrent writers never interleave and a crash tears at most
the last line, which a reader skips (the next append starts on a new line, so the torn one is
never joined to it).
"""

from __future__ import annotations

import os
from pathlib import Path


def append_line(path: Path, line: str) -> None:
    """Append ``line`` (one JSON document, no newline) to ``path``, fsynced; never rewrites."""
    data = (line + "\n").encode("utf-8")
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data  # seal a torn last line so it is skipped, not joined
        os.write(fd, data)  # one write: lines never interleave
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_path(path: Path) -> None:
    """fsync a file or a folder (a folder: so that a rename in it survives a crash)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file renamed over it: a reader (or a crash)
    sees the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
