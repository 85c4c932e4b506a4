"""Argument types shared by the ``twin`` sub-commands (argparse ``type=`` callables)."""

from __future__ import annotations

import argparse
from datetime import datetime


def aware_time(text: str) -> datetime:
    """An ISO 8601 time with a UTC offset or Z (a naive one would be a guess)."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no UTC offset: add Z or e.g. +01:00")
    return value


def positive_float(text: str) -> float:
    """A finite number above zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def positive_int(text: str) -> int:
    """A whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_release_arg(p: argparse.ArgumentParser) -> None:
    """``--release TAG`` (repeatable): an MV the twin never saw move that may move all the same."""
    p.add_argument(
        "--release", action="append", default=[], metavar="TAG",
        help="let the controller move this MV although the twin never saw it move in its "
        "training data (by default such an MV is frozen at its current value); repeatable",
    )  # fmt: skip
