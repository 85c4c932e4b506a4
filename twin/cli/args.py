"""Argument types shared by the ``twin`` sub-commands (argparse ``type=`` callables)."""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path
from typing import Any

from twin.errors import TwinError


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


def plant_name(text: str) -> str:
    """A plant name as a lake partition takes it (see :mod:`twin.store.lake`)."""
    from twin.store.lake import check_plant

    try:
        return check_plant(text)
    except TwinError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class _LakeAction(argparse.Action):
    """Store ``--lake`` or ``--plant``; once both are known, ``historian`` is their partition."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, values)
        lake, plant = getattr(namespace, "lake", None), getattr(namespace, "plant", None)
        if lake is not None and plant is not None:
            namespace.historian = lake / f"plant={plant}"  # plant checked by plant_name


def add_historian_arg(
    p: argparse.ArgumentParser,
    help: str = "historian folder",
    metavar: str = "DIR",
    *,
    frames: bool = False,
) -> None:
    """``--historian DIR``, or ``--lake ROOT --plant NAME`` for the historian ``ROOT/plant=NAME``.

    Either way the command reads ``args.historian`` (a Path); :func:`check_lake_args` (called
    by ``twin``'s ``main``) refuses ``--lake`` without ``--plant`` and the other way round.
    ``frames``: ``--frames DIR`` (frame shards built by ``twin frames build``) is a third
    choice; ``args.historian`` is then None and ``--plant`` may name the plant in the shards.
    """
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--historian", type=Path, metavar=metavar, help=help)
    if frames:
        group.add_argument(
            "--frames", type=Path, metavar="SHARDS",
            help="frame shards built by `twin frames build` (Spark) instead of a historian",
        )  # fmt: skip
    group.add_argument(
        "--lake", type=Path, action=_LakeAction, metavar="ROOT",
        help="a lake of many plants: with --plant, use the historian ROOT/plant=NAME",
    )  # fmt: skip
    p.add_argument(
        "--plant", type=plant_name, action=_LakeAction, metavar="NAME",
        help="the plant's partition of --lake",
    )  # fmt: skip


def check_lake_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exit with a usage error if ``--lake`` came without ``--plant`` or the other way round."""
    lake, plant = getattr(args, "lake", None), getattr(args, "plant", None)
    if not hasattr(args, "lake") or (lake is None) == (plant is None):
        return
    if plant is not None and getattr(args, "frames", None) is not None:
        return  # the plant of the frame shards
    parser.error("--lake ROOT needs --plant NAME" if plant is None else "--plant needs --lake ROOT")
