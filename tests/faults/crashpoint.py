"""Run a ``twin`` command that SIGKILLs itself at a chosen point of the historian's writes.

    python tests/faults/crashpoint.py [--go FILE] [--kill-at POINT:N] -- collect --spec ...

``--go FILE``: import everything first, then wait until FILE exists before running the command,
so that a test can start the next collector while the previous one still runs and pay the
interpreter start (seconds on two busy cores) outside its fault windows.

``--kill-at POINT:N``: SIGKILL this process the Nth time it reaches POINT (counted from 1):

- ``tmp``: a data file was written as ``*.tmp``, before its fsync and rename;
- ``rename``: a flushed data file was just renamed into place, before the folder's fsync;
- ``merged``: a compaction's merged file was just renamed into place;
- ``journal``: a compaction's journal was just put in place, before any input is removed;
- ``unlink``: the first input of a compaction was just removed.

The process dies by the signal itself (no Python cleanup, no flush), as under ``kill -9``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
POINTS = ("tmp", "rename", "merged", "journal", "unlink")


def _in_compaction() -> bool:
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_name == "_compact_day":
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


def install(point: str, nth: int) -> None:
    """Patch the historian's file operations to SIGKILL at the ``nth`` arrival at ``point``."""
    import twin.store.writing as writing

    seen: Counter[str] = Counter()

    def reached(name: str) -> None:
        seen[name] += 1
        if name == point and seen[name] == nth:
            sys.stderr.write(f"crashpoint: SIGKILL at {point} #{nth}\n")
            sys.stderr.flush()
            os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(10)  # the signal arrives at once; never go on

    real_fsync, real_replace, real_unlink = writing.fsync_path, os.replace, Path.unlink

    def fsync(path: Path) -> None:
        if str(path).endswith(".parquet.tmp"):
            reached("tmp")
        real_fsync(path)

    def replace(src: object, dst: object, **kw: object) -> None:
        real_replace(src, dst, **kw)  # type: ignore[arg-type]
        name = str(dst)
        if name.endswith(".parquet"):
            reached("merged" if _in_compaction() else "rename")
        elif name.endswith(".journal"):
            reached("journal")

    def unlink(self: Path, missing_ok: bool = False) -> None:
        real_unlink(self, missing_ok=missing_ok)
        if self.suffix == ".parquet" and _in_compaction():
            reached("unlink")

    writing.fsync_path = fsync  # type: ignore[assignment]
    os.replace = replace  # type: ignore[assignment]
    Path.unlink = unlink  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--go", type=Path, help="wait for this file before running")
    parser.add_argument("--kill-at", metavar="POINT:N", help=f"POINT one of {POINTS}")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- and the twin arguments")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    sys.path.insert(0, str(REPO))
    # the collector's imports, before the start signal
    import connectors.opcua  # noqa: F401
    import twin.cli
    import twin.cli.collect

    if args.kill_at:
        point, _, nth = args.kill_at.partition(":")
        if point not in POINTS:
            parser.error(f"--kill-at: unknown point {point!r}; use one of {POINTS}")
        install(point, int(nth or 1))
    if args.go is not None:
        while not args.go.exists():
            time.sleep(0.01)
    sys.exit(twin.cli.main(command))


if __name__ == "__main__":
    main()
