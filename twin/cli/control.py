"""``twin recommend`` and ``twin whatif``: the controller from the command line.

- ``twin recommend``: the next MV moves from the newest history, as CSV or JSON.
- ``twin whatif``: predicted trajectories, with bands, under setpoint changes or MV schedules,
  side by side with the baseline "hold" (setpoints unchanged), as CSV, JSON or a PNG figure.

``--setpoint`` takes ``TAG=VALUE`` (``TAG=VALUE@+MINUTES`` in ``twin whatif``: from MINUTES on).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twin.cli.args import aware_time
from twin.control.setpoints import Setpoints
from twin.errors import TwinError
from twin.store.jsonl import replace_text

if TYPE_CHECKING:
    from twin.control.whatif import Scenario, WhatIf
    from twin.model.twin import Twin
    from twin.spec import PlantSpec

log = logging.getLogger(__name__)

SETPOINT_FORM = "TAG=VALUE[@+MINUTES]"
#: timestamps in what-if files: ISO 8601 UTC, as in the recommendation exports
TS_FORMAT = "%Y-%m-%dT%H:%M:%S%.6f+00:00"


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


def parse_schedule(text: str) -> tuple[str, tuple[float, ...]]:
    """``TAG=V1[,V2,...]`` -> ``(tag, values)``: an MV's value per step, the last one held."""
    tag, sep, rest = text.partition("=")
    tag = tag.strip()
    if not sep or not tag or not rest.strip():
        raise argparse.ArgumentTypeError(f"expected TAG=VALUE[,VALUE...], got {text!r}")
    return tag, tuple(_number(v.strip(), f"value of {tag!r}", text) for v in rest.split(","))


class _ScenarioAction(argparse.Action):
    """``--scenario NAME`` starts a scenario; ``--setpoint`` and ``--mv`` add to the latest."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        ns: argparse.Namespace,
        values: Any,
        option: Any = None,
    ) -> None:
        groups = list(getattr(ns, self.dest) or [])
        if option == "--scenario" or not groups:
            groups.append({"name": values if option == "--scenario" else None, "sp": [], "mv": {}})
        if option == "--setpoint":
            groups[-1]["sp"].append(values)
        elif option == "--mv":
            groups[-1]["mv"][values[0]] = values[1]
        setattr(ns, self.dest, groups)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``twin recommend`` and ``twin whatif``."""
    _add_recommend(sub)
    _add_whatif(sub)


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
    p.set_defaults(func=_recommend)


def _add_whatif(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "whatif",
        help="predicted trajectories under setpoint changes or MV schedules, side by side",
        description="Compare scenarios from the newest history: each --scenario NAME groups the "
        "--setpoint / --mv options after it (a scenario without a name is named after its "
        "changes). Setpoint scenarios run the controller in closed loop on the twin; --mv "
        "scenarios run the given MV values open loop. The baseline 'hold' (setpoints "
        "unchanged) is added unless --no-baseline. Writes the trajectories with their bands "
        "to FILE.csv / FILE.json, or a figure to FILE.png.",
    )
    _common(p)
    p.add_argument(
        "--scenario", dest="groups", action=_ScenarioAction, metavar="NAME",
        help="start a new scenario called NAME",
    )  # fmt: skip
    p.add_argument(
        "--setpoint", dest="groups", action=_ScenarioAction, type=parse_setpoint,
        metavar=SETPOINT_FORM, help="CV setpoint, from MINUTES on (default now); repeatable",
    )  # fmt: skip
    p.add_argument(
        "--mv", dest="groups", action=_ScenarioAction, type=parse_schedule,
        metavar="TAG=V1[,V2...]", help="open loop: the MV's value per step, the last held",
    )  # fmt: skip
    p.add_argument("--steps", type=int, help="steps to predict (default and most: the horizon)")
    p.add_argument("--no-baseline", action="store_true", help="leave out the 'hold' scenario")
    p.add_argument("--out", required=True, type=Path, metavar="FILE", help=".csv, .json or .png")
    p.set_defaults(func=_whatif, groups=None)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, type=Path, help="saved twin folder")
    p.add_argument("--historian", required=True, type=Path, metavar="DIR", help="historian folder")
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
    from twin.store.historian import Historian

    _suffix(args.out, (".csv", ".json"))
    twin = _load(args.model, args.historian)
    setpoints = Setpoints.resolve(twin.spec, args.setpoint)
    step = recommend_from_historian(
        Controller(twin, twin.spec),
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
        print(
            f"  {m.tag:<12} {m.current:10.4g} -> {m.recommended:10.4g} {m.unit:<6} "
            f"[{m.lo:g}, {m.hi:g}] step <= {m.rate_limit:g}  limits {'held' if m.limits_held else 'NOT held'}"
        )
    health = "n/a" if step.health is None else f"{step.health:.2f}"
    print(f"model health (live / validation error): {health}; written to {args.out}")
    return 0 if rec.success else 1


def _scenarios(groups: list[dict[str, Any]] | None, baseline: bool) -> list[Scenario]:
    """The scenarios of the command line, in order, after the baseline 'hold'."""
    from twin.control.whatif import HOLD, Scenario

    out = []
    for g in groups or []:
        sp = tuple(g["sp"])
        name = g["name"] or ", ".join(
            [f"{t}={v:g}" + (f"@+{m:g}" if m else "") for t, v, m in sp]
            + [f"{t}={','.join(f'{v:g}' for v in vs)}" for t, vs in g["mv"].items()]
        )
        out.append(Scenario(name or "scenario", sp, dict(g["mv"]) if g["mv"] else None))
    if baseline and all(s.name != HOLD.name for s in out):
        out.insert(0, HOLD)
    if not out:
        raise TwinError("no scenario: give --setpoint or --mv, or leave out --no-baseline")
    return out


def _whatif(args: argparse.Namespace) -> int:
    from twin.control.whatif import whatif
    from twin.loop.step import history_rows, newest_sample, recent_frame
    from twin.store.historian import Historian

    suffix = _suffix(args.out, (".csv", ".json", ".png"))
    twin = _load(args.model, args.historian)
    spec = twin.spec
    scenarios = _scenarios(args.groups, not args.no_baseline)
    historian = Historian(args.historian)
    before = None if args.at is None else args.at + timedelta(microseconds=1)
    newest = newest_sample(historian, spec, before=before)
    if newest is None:
        raise TwinError(f"historian {args.historian} holds no samples of {spec.name!r}")
    history = recent_frame(historian, spec, history_rows(twin), newest)
    result = whatif(twin, spec, history, scenarios, steps=args.steps)
    _write_whatif(result, spec, args.out, suffix)
    print(f"{spec.name}: {len(result.scenarios)} scenarios from {newest:%Y-%m-%d %H:%M:%S} UTC")
    for sc, fc, failed in zip(
        result.scenarios, result.forecasts, result.failed_solves, strict=True
    ):
        ends = []
        for t in spec.cvs + spec.mvs:
            mean, lower, upper = fc.tag(t.name)
            ends.append(f"{t.name} {mean[-1]:.4g} [{lower[-1]:.4g}, {upper[-1]:.4g}] {t.unit}")
        note = f" ({failed} failed solves: MVs held there)" if failed else ""
        print(f"  {sc.name:<20} after {fc.horizon} steps: " + "; ".join(ends) + note)
    print(f"written to {args.out}")
    return 0


def _write_whatif(result: WhatIf, spec: PlantSpec, path: Path, suffix: str) -> None:
    """The what-if as a figure (.png), the long frame (.csv) or its JSON document (.json)."""
    import polars as pl

    from twin.control.whatif_figure import plot_whatif

    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".png":
        plot_whatif(result, spec, path)
    elif suffix == ".csv":
        result.to_frame().with_columns(pl.col("ts").dt.strftime(TS_FORMAT)).write_csv(path)
    else:
        replace_text(path, json.dumps(result.to_json_dict(), allow_nan=False) + "\n")
