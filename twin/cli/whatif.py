"""``twin whatif``: predicted trajectories, with bands, under setpoint changes or MV schedules,
side by side with the baseline "hold" (setpoints unchanged), as CSV, JSON or a PNG figure.

``--setpoint`` takes ``TAG=VALUE[@+MINUTES]`` (from MINUTES on). Per scenario, ``twin whatif``
also takes ``--price TAG=COST`` (cost per unit of a CV or MV), ``--limit TAG=LO:HI`` (operating
limits; an empty side keeps the spec's), ``--priority TAG=N`` (a CV's rank, 1 given up last) and
``--mv TAG=V1[,V2...]`` (an open-loop MV schedule). Here: those options' parsers, the scenarios
they make, the setpoints in force (:func:`setpoints_in_force`) and the command itself.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twin.cli.args import add_release_arg
from twin.cli.control import SETPOINT_FORM, _common, _load, _number, _suffix, parse_setpoint
from twin.control.setpoints import Setpoints
from twin.errors import TwinError
from twin.store.jsonl import replace_text

if TYPE_CHECKING:
    from twin.control.whatif import Scenario, WhatIf
    from twin.spec import PlantSpec

log = logging.getLogger(__name__)

#: timestamps in what-if files: ISO 8601 UTC, as in the recommendation exports
TS_FORMAT = "%Y-%m-%dT%H:%M:%S%.6f+00:00"


def parse_schedule(text: str) -> tuple[str, tuple[float, ...]]:
    """``TAG=V1[,V2,...]`` -> ``(tag, values)``: an MV's value per step, the last one held."""
    tag, sep, rest = text.partition("=")
    tag = tag.strip()
    if not sep or not tag or not rest.strip():
        raise argparse.ArgumentTypeError(f"expected TAG=VALUE[,VALUE...], got {text!r}")
    return tag, tuple(_number(v.strip(), f"value of {tag!r}", text) for v in rest.split(","))


def parse_price(text: str) -> tuple[str, float]:
    """``TAG=COST`` -> ``(tag, cost per unit)``."""
    tag, sep, rest = text.partition("=")
    tag = tag.strip()
    if not sep or not tag or not rest.strip():
        raise argparse.ArgumentTypeError(f"expected TAG=COST, got {text!r}")
    return tag, _number(rest.strip(), f"price of {tag!r}", text)


def parse_limits(text: str) -> tuple[str, float | None, float | None]:
    """``TAG=LO:HI`` -> ``(tag, op_lo, op_hi)``; an empty side is None (the spec's kept)."""
    tag, sep, rest = text.partition("=")
    tag = tag.strip()
    lo_text, colon, hi_text = rest.partition(":")
    if not sep or not tag or not colon or not (lo_text.strip() or hi_text.strip()):
        raise argparse.ArgumentTypeError(
            f"expected TAG=LO:HI (either side may be empty: TAG=LO: or TAG=:HI), got {text!r}"
        )
    lo = _number(lo_text.strip(), f"op_lo of {tag!r}", text) if lo_text.strip() else None
    hi = _number(hi_text.strip(), f"op_hi of {tag!r}", text) if hi_text.strip() else None
    return tag, lo, hi


def parse_priority(text: str) -> tuple[str, int]:
    """``TAG=N`` -> ``(tag, N)``, N a whole number >= 1."""
    tag, sep, rest = text.partition("=")
    tag = tag.strip()
    if not sep or not tag or not rest.strip():
        raise argparse.ArgumentTypeError(f"expected TAG=N, got {text!r}")
    try:
        rank = int(rest.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"priority of {tag!r} must be a whole number >= 1, got {rest.strip()!r}"
        ) from None
    if rank < 1:
        raise argparse.ArgumentTypeError(f"priority of {tag!r} must be >= 1, got {rank}")
    return tag, rank


#: the per-scenario options of ``twin whatif`` -> their key in a scenario group
_GROUP_KEYS = {
    "--setpoint": "sp",
    "--price": "prices",
    "--limit": "limits",
    "--priority": "priorities",
}


class _ScenarioAction(argparse.Action):
    """``--scenario NAME`` starts a scenario; ``--setpoint``, ``--mv``, ``--price``,
    ``--limit`` and ``--priority`` add to the latest."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        ns: argparse.Namespace,
        values: Any,
        option: Any = None,
    ) -> None:
        groups = list(getattr(ns, self.dest) or [])
        if option == "--scenario" or not groups:
            group: dict[str, Any] = {"name": values if option == "--scenario" else None, "mv": {}}
            group.update((key, []) for key in _GROUP_KEYS.values())
            groups.append(group)
        if option in _GROUP_KEYS:
            groups[-1][_GROUP_KEYS[option]].append(values)
        elif option == "--mv":
            groups[-1]["mv"][values[0]] = values[1]
        setattr(ns, self.dest, groups)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``twin whatif``."""
    _add_whatif(sub)


def _add_whatif(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "whatif",
        help="predicted trajectories under setpoint, price or limit changes or MV schedules",
        description="Compare scenarios from the newest history: each --scenario NAME groups the "
        "--setpoint / --price / --limit / --priority / --mv options after it (a scenario "
        "without a name is named after its changes). Setpoint, price, limit and priority "
        "scenarios run the controller in closed loop on the twin and report its new optimum "
        "(steady-state targets) and the cost rate before and after; --mv scenarios run the "
        "given MV values open loop. The baseline 'hold' (the setpoints in force now: those of "
        "the newest logged recommendation, else the spec's) is added unless --no-baseline. "
        "Writes the trajectories with their bands to FILE.csv / FILE.json, or a figure to "
        "FILE.png.",
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
        "--price", dest="groups", action=_ScenarioAction, type=parse_price,
        metavar="TAG=COST", help="cost per unit of a CV or MV (negative: a product's value), "
        "instead of the spec's; repeatable",
    )  # fmt: skip
    p.add_argument(
        "--limit", dest="groups", action=_ScenarioAction, type=parse_limits,
        metavar="TAG=LO:HI", help="operating limits of a CV or MV (TAG=LO: or TAG=:HI keeps "
        "the other side); repeatable",
    )  # fmt: skip
    p.add_argument(
        "--priority", dest="groups", action=_ScenarioAction, type=parse_priority,
        metavar="TAG=N", help="rank of a CV's operating limits (1: given up last); repeatable",
    )  # fmt: skip
    p.add_argument(
        "--mv", dest="groups", action=_ScenarioAction, type=parse_schedule,
        metavar="TAG=V1[,V2...]", help="open loop: the MV's value per step, the last held",
    )  # fmt: skip
    p.add_argument("--steps", type=int, help="steps to predict (default and most: the horizon)")
    p.add_argument("--no-baseline", action="store_true", help="leave out the 'hold' scenario")
    p.add_argument("--out", required=True, type=Path, metavar="FILE", help=".csv, .json or .png")
    p.add_argument(
        "--spec", help="plant spec with the controller's operating limits, priorities and costs "
        "(as for `twin recommend`; the scenarios change it; default: the twin's)",
    )  # fmt: skip
    add_release_arg(p)
    p.set_defaults(func=_whatif, groups=None)


def _scenarios(groups: list[dict[str, Any]] | None, baseline: bool) -> list[Scenario]:
    """The scenarios of the command line, in order, after the baseline 'hold'."""
    from twin.control.whatif import HOLD, Scenario

    out = []
    for g in groups or []:
        sp = tuple(g["sp"])
        name = g["name"] or ", ".join(
            [f"{t}={v:g}" + (f"@+{m:g}" if m else "") for t, v, m in sp]
            + [f"price {t}={v:g}" for t, v in g["prices"]]
            + [f"{t} in {_side(lo)}:{_side(hi)}" for t, lo, hi in g["limits"]]
            + [f"priority {t}={n}" for t, n in g["priorities"]]
            + [f"{t}={','.join(f'{v:g}' for v in vs)}" for t, vs in g["mv"].items()]
        )
        out.append(
            Scenario(
                name or "scenario",
                sp,
                dict(g["mv"]) if g["mv"] else None,
                prices=tuple(g["prices"]),
                limits=tuple(g["limits"]),
                priorities=tuple(g["priorities"]),
            )
        )
    if baseline and all(s.name != HOLD.name for s in out):
        out.insert(0, HOLD)
    if not out:
        raise TwinError(
            "no scenario: give --setpoint, --price, --limit, --priority or --mv, or leave out "
            "--no-baseline"
        )
    return out


def _side(x: float | None) -> str:
    return "" if x is None else f"{x:g}"


def setpoints_in_force(
    historian: Path, spec: PlantSpec, at: datetime | None = None
) -> tuple[Setpoints, str]:
    """The setpoints in force at ``at`` (default: now) and where they come from: those of the
    newest recommendation logged in ``historian`` up to then (``twin run``), else the spec's.

    A logged setpoint for a CV this spec does not have, or outside its limits, is left out.
    """
    from twin.control.recommendation_log import RecommendationLog

    log_ = RecommendationLog(historian)
    if at is None:
        rec = log_.latest()
    else:
        recs = log_.read(at - timedelta(days=1), at + timedelta(microseconds=1))
        rec = recs[-1] if recs else None
    if rec is None or rec.plant != spec.name:
        return Setpoints.resolve(spec), "the spec's (no recommendation logged)"
    kept = {}
    for tag, value in rec.setpoints.items():
        try:
            kept[tag] = float(Setpoints.resolve(spec, {tag: value})[tag])
        except TwinError as exc:
            log.warning("logged setpoint left out: %s", exc)
    return Setpoints.resolve(spec, kept), f"the recommendation of {rec.ts:%Y-%m-%d %H:%M:%S} UTC"


def _whatif(args: argparse.Namespace) -> int:
    from twin.control.controller import Controller
    from twin.control.whatif import whatif
    from twin.loop.step import history_rows, newest_sample, recent_frame
    from twin.spec import spec_from_arg
    from twin.store.historian import Historian

    suffix = _suffix(args.out, (".csv", ".json", ".png"))
    given = None if args.spec is None else spec_from_arg(args.spec)
    twin = _load(args.model, args.historian, given)
    spec = given or twin.spec
    scenarios = _scenarios(args.groups, not args.no_baseline)
    historian = Historian(args.historian)
    before = None if args.at is None else args.at + timedelta(microseconds=1)
    newest = newest_sample(historian, spec, before=before)
    if newest is None:
        raise TwinError(f"historian {args.historian} holds no samples of {spec.name!r}")
    history = recent_frame(historian, spec, history_rows(twin), newest)
    now, source = setpoints_in_force(args.historian, spec, args.at)
    controller = Controller(twin, spec, release=args.release)
    result = whatif(
        twin, spec, history, scenarios, steps=args.steps, controller=controller, setpoints=now
    )
    _write_whatif(result, spec, args.out, suffix)
    print(f"{spec.name}: {len(result.scenarios)} scenarios from {newest:%Y-%m-%d %H:%M:%S} UTC")
    shown = ", ".join(f"{t}={v:g}" for t, v in now.items()) or "none"
    print(f"  setpoints in force: {shown} ({source})")
    for sc, fc, failed, tg, cost0, cost1, cons in zip(
        result.scenarios,
        result.forecasts,
        result.failed_solves,
        result.targets,
        result.cost_before,
        result.cost_after,
        result.constraints,
        strict=True,
    ):
        ends = []
        for t in spec.cvs + spec.mvs:
            mean, lower, upper = fc.tag(t.name)
            ends.append(f"{t.name} {mean[-1]:.4g} [{lower[-1]:.4g}, {upper[-1]:.4g}] {t.unit}")
        note = f" ({failed} failed solves: MVs held there)" if failed else ""
        print(f"  {sc.name:<20} after {fc.horizon} steps: " + "; ".join(ends) + note)
        if tg:
            parts = [
                f"{t.name} {tg[t.name]:.4g} {t.unit}".rstrip()
                for t in spec.cvs + spec.mvs
                if t.name in tg
            ]
            print(f"  {'':<20} targets: " + "; ".join(parts))
        if math.isfinite(cost0) or math.isfinite(cost1):
            print(f"  {'':<20} cost rate now {cost0:.6g}, at the targets {cost1:.6g}")
        for c in cons:
            print(f"  {'':<20} {c.describe(spec.tag(c.tag).unit)}")
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
