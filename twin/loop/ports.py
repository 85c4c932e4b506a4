"""What the loop needs from outside, stated as protocols: a feed and a move writer.

- :class:`SampleFeed` keeps the historian fed with the plant's samples while the loop runs
  (``connectors.collect.OpcUaFeed``: the OPC-UA collector).
- :class:`MoveWriter` is a session to the plant that the guarded write-back reads the measured
  MVs through and writes the moves to (``connectors.opcua_write.OpcUaMoveWriter``).

The library only states them; ``connectors`` implements them and the command line (``twin
run``) wires them into :func:`twin.loop.run.run_loop`. A test, or another protocol than OPC-UA,
brings its own. (Not to be confused with ``connectors.source.SampleSource``: the stream of
rows one collector pumps into the historian, one level below a feed.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from twin.spec import PlantSpec, Tag


class SampleFeed(Protocol):
    """Keeps the historian fed with the plant's samples until it is stopped."""

    @property
    def flush_every_s(self) -> float:
        """Seconds between the feed's flushes to the historian: new data shows up this late."""
        ...

    async def run(self, spec: PlantSpec, historian_dir: Path) -> object:
        """Store ``spec``'s tags in the historian at ``historian_dir`` until stopped.

        Returns the feed's counters. The loop ends when this returns (on a signal, after a
        set duration, or when the feed runs out).
        """
        ...


@dataclass(frozen=True)
class WriteResult:
    """One MV's write as the plant answered it."""

    tag: str
    value: float
    """the value as written, in the node's data type (an integer node gets it rounded)"""
    refused: str | None
    """why the plant refused the write (its status, e.g. ``BadOutOfRange``); None: accepted"""
    readback: object
    """the value read back right after the write (None when the plant gave none)"""
    precision: float = 0.0
    """how far the read-back may differ from ``value`` and still confirm it (a float32 node)"""


class MoveWriter(Protocol):
    """A session to the plant for the guarded write-back: open (again after a loss), read, write.

    Every call but :meth:`close` may raise when the plant cannot be reached; the write-back
    turns that into an audited refusal or failed write, never into a stopped loop.
    """

    @property
    def endpoint(self) -> str:
        """Where the plant is (for log lines)."""
        ...

    @property
    def connected(self) -> bool:
        """True while a session is open and alive; False before :meth:`open` and once it is lost."""
        ...

    async def open(self, timeout_s: float) -> None:
        """Open a new session within ``timeout_s`` (the caller closes a lost one first)."""
        ...

    async def read_measured(self, tags: Sequence[Tag]) -> dict[str, float]:
        """The measured values (each tag's ``node``) as the plant reports them now.

        Good, finite readings only: a tag without one is left out.
        """
        ...

    async def write(self, moves: Sequence[tuple[Tag, float]]) -> list[WriteResult]:
        """Write each value to its tag's ``write_node``, then read each back; one result per move."""
        ...

    async def close(self) -> None:
        """Close the session (nothing to do without one)."""
        ...
