"""``twin recommend``: the controller's next MV moves from the command line, as CSV or JSON.

Also the pieces the other control commands share (``twin whatif`` in :mod:`twin.cli.whatif`,
``twin run`` in :mod:`twin.cli.run`): ``--setpoint TAG=VALUE[@+MINUTES]`` parsing, the
``--model`` / ``--historian`` / ``--at`` options, the ``--out`` suffix check and loading the twin.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import TYPE_CHECKING

from twin.cli.args import add_historian_arg, add_release_arg, aware_time
from twin.control.setpoints import Setpoints
from twin.errors import TwinError

if TYPE_CHECKING:
    from twin.model.twin import Twin
    from twin.spec import PlantSpec

SETPOINT_FORM = "TAG=VALUE[@+MINUTES]"


def _number(text: str, what: str, arg: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what} {text!r} is not a number (in {arg!r})") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{what} must be finite, got {text!r} (in {arg!r})")
    return value


def parse_setpoint(text: str) -> tuple[str, float, float]:
    """``TAG=VALUE[@+MINUTES]`` -> ``(tag, value, minutes)``; ArgumentTypeError naming the fault."""
    tag, sep, rest = text.partition("=")
    tag = tag.strip()
    if not sep or not tag or not rest.strip():
        raise argparse.ArgumentTypeError(f"expected {SETPOINT_FORM}, got {text!r}")
    value_text, at, minutes_text = rest.partition("@")
    value = _number(value_text.strip(), f"setpoint of {tag!r}", text)
    minutes = 0.0
    if at:
        minutes = _number(minutes_text.strip().removeprefix("+"), "minutes", text)
        if minutes < 0:
            raise argparse.ArgumentTypeError(f"minutes must be >= 0 (in {text!r})")
    return tag, value, minutes


def parse_setpoint_now(text: str) -> tuple[str, float]:
    """``TAG=VALUE`` -> ``(tag, value)``: a setpoint that holds from now on."""
    if "@" in text:
        raise argparse.ArgumentTypeError(
            f"{text!r}: a later setpoint change (@+MINUTES) is for `twin whatif`; give TAG=VALUE"
        )
    tag, value, _ = parse_setpoint(text)
    return tag, value


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``twin recommend``."""
    _add_recommend(sub)


def _add_recommend(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "recommend",
        help="the controller's next MV moves from the newest history, as CSV or JSON",
        description="Load the twin, read the newest window of history from the historian and "
        "write the recommended MV moves (current value, next value, limits, node ids) to "
        "FILE.csv or FILE.json (JSON adds the planned trajectories and the forecast). Exit 0 "
        "when the solve succeeded, 1 when it failed (the file then holds the MVs where they are).",
    )
    _common(p)
    p.add_argument(
        "--setpoint", type=parse_setpoint_now, action="append", metavar="TAG=VALUE",
        help="CV setpoint (repeatable; default: the spec's)",
    )  # fmt: skip
    p.add_argument("--out", required=True, type=Path, metavar="FILE", help=".csv or .json")
    p.add_argument(
        "--spec", help="plant spec with the controller's operating limits, priorities and costs "
        "(a TOML file or a built-in name; its tags must be the twin's; default: the spec the "
        "twin was trained with)",
    )  # fmt: skip
    add_release_arg(p)
    p.set_defaults(func=_recommend)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, type=Path, help="saved twin folder")
    add_historian_arg(p)
    p.add_argument(
        "--at", type=aware_time, metavar="T", help="use the history up to T (default: the newest)"
    )


def _suffix(path: Path, allowed: tuple[str, ...]) -> str:
    suffix = path.suffix.lower()
    if suffix not in allowed:
        raise TwinError(f"--out {path}: the file name must end in {' or '.join(allowed)}")
    return suffix


def _load(model: Path, historian: Path | None, spec: PlantSpec | None = None) -> Twin:
    """The saved twin (checked against ``spec`` if given); TwinError if ``historian`` is absent."""
    from twin.model.twin import Twin

    if historian is not None and not historian.is_dir():
        raise TwinError(f"no historian folder {historian}")
    return Twin.load(model, spec=spec)


def _recommend(args: argparse.Namespace) -> int:
    from twin.control.controller import Controller
    from twin.control.export import write_export
    from twin.loop.step import recommend_from_historian
    from twin.spec import spec_from_arg
    from twin.store.historian import Historian

    _suffix(args.out, (".csv", ".json"))
    spec = None if args.spec is None else spec_from_arg(args.spec)
    twin = _load(args.model, args.historian, spec)
    spec = spec or twin.spec
    setpoints = Setpoints.resolve(spec, args.setpoint)
    step = recommend_from_historian(
        Controller(twin, spec, release=args.release),
        twin,
        Historian(args.historian),
        setpoints=setpoints,
        at=args.at,
    )
    if step.age_s is None:
        raise TwinError(f"historian {args.historian} holds no samples of {twin.spec.name!r}")
    rec = step.rec
    write_export(rec, args.out)
    print(f"{twin.spec.name} at {rec.ts:%Y-%m-%d %H:%M:%S} UTC: {rec.message}")
    for m in rec.moves:
        target = f"  target {m.target:.4g}" if math.isfinite(m.target) else ""
        print(
            f"  {m.tag:<12} {m.current:10.4g} -> {m.recommended:10.4g} {m.unit:<6} "
            f"[{m.lo:g}, {m.hi:g}] step <= {m.rate_limit:g}  limits {'held' if m.limits_held else 'NOT held'}"
            + (" FROZEN" if m.frozen else target)
        )
    for c in rec.constraints:
        print(f"  {c.describe(spec.tag(c.tag).unit)}")
    if math.isfinite(rec.cost_rate):
        print(f"  cost rate now {rec.cost_rate_now:.6g}, at the targets {rec.cost_rate:.6g}")
    health = "n/a" if step.health is None else f"{step.health:.2f}"
    print(f"model health (live / validation error): {health}; written to {args.out}")
    return 0 if rec.success else 1
