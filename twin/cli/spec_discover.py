"""``twin spec discover``: browse a live OPC-UA server and write a plant spec draft from it.

One tag per numeric scalar variable (:mod:`connectors.discover`): its ``nsu=`` node id, display
name (made a valid tag name) and description, the unit from ``EngineeringUnits``, ``lo``/``hi``
from ``EURange`` or else from a short sampling of values. Roles are guessed (a writable variable
is an MV candidate written at its own node; a measured ``X`` with a writable ``X.SP`` beside it
is one MV read at ``X`` and written at ``X.SP``; everything else a DV) and every guess is marked
in a TOML comment. The draft loads with :func:`twin.spec.load_spec`; what is left to fill is
printed.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from twin.cli.args import positive_float
from twin.cli.collect import add_security_args, security_from_args
from twin.errors import TwinError
from twin.spec.plant import RESERVED_NAMES

if TYPE_CHECKING:
    from connectors.discover import Discovered, Variable

#: suffixes that make a writable variable the setpoint of the measured one beside it
SETPOINT_SUFFIXES = (".SP", "_SP", "SP", ".Setpoint", "_Setpoint", "Setpoint", ".SV", "_SV")


def register(actions: argparse._SubParsersAction) -> None:
    p = actions.add_parser(
        "discover",
        help="draft a spec by browsing a live OPC-UA server",
        description="Browse the OPC-UA server at URL (Organizes and HasComponent references "
        "from --root, default the Objects folder) and write a spec draft to FILE: one tag per "
        "numeric scalar variable, with its nsu= node id, unit (EngineeringUnits) and lo/hi "
        "(EURange, else a short sampling of values). Roles are guessed (writable -> MV "
        "candidate, others DV) and marked in comments; no CV is chosen for you.",
    )
    p.add_argument("--endpoint", required=True, metavar="URL", help="opc.tcp://host:port/path")
    p.add_argument("--out", required=True, type=Path, metavar="FILE", help="spec draft to write")
    p.add_argument("--root", metavar="NODE", help="node id to browse from (ns= or nsu= form)")
    p.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="GLOB",
        help="keep only variables whose browse path (A/B/C), display name or node id matches "
        "GLOB (repeatable)",
    )
    p.add_argument(
        "--sample",
        type=float,
        default=2.0,
        metavar="S",
        help="seconds of value sampling for variables without EURange (default 2)",
    )
    p.add_argument("--name", help="plant name (default: the folder the variables share)")
    p.add_argument(
        "--period",
        type=positive_float,
        default=1.0,
        metavar="S",
        help="sample period to write (a guess to confirm; default 1 s)",
    )
    p.add_argument("--max-depth", type=int, default=10, help="references followed at most")
    p.add_argument("--max-nodes", type=int, default=20_000, help="nodes browsed at most")
    p.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    add_security_args(p)
    p.set_defaults(func=_discover)


def _discover(args: argparse.Namespace) -> int:
    import asyncio

    from connectors.discover import DiscoverOptions, discover
    from connectors.opcua_security import check_endpoint, connect_client
    from twin.cli.collect import quiet_asyncua
    from twin.spec import load_spec

    endpoint = check_endpoint(args.endpoint)
    if args.out.exists() and not args.force:
        raise TwinError(f"{args.out} exists: pass --force to overwrite it")
    if not args.sample >= 0:
        raise TwinError(f"--sample must be 0 or more seconds, got {args.sample}")
    security = security_from_args(args)
    quiet_asyncua(args.log_level, security.password)
    options = DiscoverOptions(
        root=args.root,
        include=tuple(args.include),
        max_depth=args.max_depth,
        max_nodes=args.max_nodes,
        sample_s=args.sample,
    )

    async def browse() -> Discovered:
        client = await connect_client(endpoint, security)
        try:
            return await discover(client, options)
        finally:
            await client.disconnect()

    found = asyncio.run(browse())
    if not found.variables:
        raise TwinError(
            f"no numeric scalar variable under {args.root or 'the Objects folder'} of {endpoint} "
            f"({found.browsed} nodes browsed{', filtered by --include' if args.include else ''})"
        )
    text, todo = draft_spec(found, endpoint=endpoint, name=args.name, period=args.period)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    spec = load_spec(args.out)  # the draft must load as it is
    print(
        f"wrote spec draft {args.out}: {len(spec.tags)} tags ({len(spec.mvs)} MV candidates, "
        f"{len(spec.dvs)} DVs) of plant {spec.name!r} from {endpoint}"
    )
    print(f"left to fill in {args.out} (the lines marked 'guess' or 'FILL IN'):")
    for line in todo:
        print(f"  - {line}")
    return 0


@dataclass
class _Entry:
    name: str
    var: Variable
    role: str
    write: Variable | None = None


def draft_spec(
    found: Discovered, *, endpoint: str, name: str | None, period: float
) -> tuple[str, list[str]]:
    """The spec draft's TOML text and the list of what is left to fill."""
    entries = _entries(found.variables)
    plant = _tag_name(name or _common_folder(found.variables) or "plant")
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    lines = [
        f"# Plant spec drafted by `twin spec discover` from {endpoint} at {stamp}.",
        "# Lines marked 'guess' are for an engineer to confirm; 'FILL IN' lines must be set.",
        "# Roles: a writable variable was taken as an MV candidate, every other one as a DV.",
        '# Choose the CVs: role = "cv" with setpoint = <target> and weight = 1.0.',
        "",
        "[plant]",
        f"name = {_str(plant)}",
        f"sample_period_s = {_num(period)}  # guess: set the plant's sample period",
    ]
    sampled, no_unit, no_range = [], [], []
    for e in entries:
        v = e.var
        lines += ["", "[[tags]]", f"name = {_str(e.name)}", f"node = {_str(str(v.node))}"]
        if v.description:
            lines.append(f"description = {_str(v.description)}")
        unit = v.info.unit or (e.write.info.unit if e.write else None)
        if unit:
            lines.append(f"unit = {_str(unit)}  # from EngineeringUnits")
        else:
            no_unit.append(e.name)
            lines.append('unit = "-"  # FILL IN: the server publishes no EngineeringUnits')
        (lo, hi), how = _limits(v, e.write)
        sampled += [e.name] if how.startswith("guess") else []
        no_range += [e.name] if how.startswith("FILL") else []
        lines += [f"lo = {_num(lo)}  # {how}", f"hi = {_num(hi)}  # {how}"]
        if e.role == "mv":
            target = e.write or v
            why = "writable" if e.write is None else f"with a writable setpoint {target.path[-1]}"
            lines += [
                f'role = "mv"  # guess: {why}; a manipulated variable?',
                f"write_node = {_str(str(target.node))}  # guess: the node moves are written to",
                f"rate_limit = {_num((hi - lo) / 10)}  # guess: 10% of the span per sample",
            ]
        else:
            lines.append('role = "dv"  # guess: read-only; "cv" if you control it')
    todo = [
        'no CV chosen: set role = "cv" (with setpoint and weight) on the measured tags you control',
        f"sample_period_s = {period:g} s is a guess: set the plant's sample period",
    ]
    mvs = [e.name for e in entries if e.role == "mv"]
    if mvs:
        todo.append(f"MV candidates {mvs}: confirm each, and its rate_limit (a guess)")
    if sampled:
        todo.append(f"lo/hi of {sampled} come from sampled values (no EURange): set the limits")
    if no_range:
        todo.append(f"lo/hi of {no_range}: no EURange and no value read: FILL IN")
    if no_unit:
        todo.append(f"unit of {no_unit}: the server publishes none: FILL IN")
    if found.truncated:
        todo.append("the browse stopped early (--max-depth / --max-nodes): tags may be missing")
    return "\n".join(lines) + "\n", todo


def _entries(variables: list[Variable]) -> list[_Entry]:
    """Tags with their guessed roles; a setpoint beside its measurement joins it as one MV."""
    by_path = {v.path: v for v in variables}
    setpoint_of: dict[tuple[str, ...], Variable] = {}
    for v in variables:
        for suffix in SETPOINT_SUFFIXES:
            base = v.display_name.removesuffix(suffix)
            measured = by_path.get((*v.path[:-1], base)) if base != v.display_name else None
            if v.writable and measured is not None and not measured.writable:
                setpoint_of[measured.path] = v
                break
    paired = {id(sp) for sp in setpoint_of.values()}
    kept = [v for v in variables if id(v) not in paired]
    names = _unique_names(kept)
    out = []
    for v, name in zip(kept, names, strict=True):
        sp = setpoint_of.get(v.path)
        out.append(_Entry(name, v, "mv" if v.writable or sp else "dv", sp))
    return out


def _unique_names(variables: list[Variable]) -> list[str]:
    """Tag names: the display name; with its folder where that repeats; numbered if still."""
    names = [_tag_name(v.display_name) for v in variables]
    twice = {n for n, k in Counter(names).items() if k > 1}
    names = [
        _tag_name(".".join(v.path[-2:])) if n in twice else n
        for n, v in zip(names, variables, strict=True)
    ]
    seen: Counter[str] = Counter()
    out = []
    for n in names:
        seen[n] += 1
        out.append(n if seen[n] == 1 else f"{n[:60]}_{seen[n]}")
    return out


def _tag_name(text: str) -> str:
    """``text`` as a valid tag name: letters, digits, _ . -; starting with a letter; <= 64."""
    name = re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9_.\-]", "_", text.strip())).strip("_")
    if not name or not name[0].isalpha():
        name = f"t_{name}"
    name = name[:64]
    return f"{name[:63]}_" if name in RESERVED_NAMES else name


def _common_folder(variables: list[Variable]) -> str | None:
    heads = {v.path[0] for v in variables if len(v.path) > 1}
    return heads.pop() if len(heads) == 1 else None


def _limits(v: Variable, setpoint: Variable | None) -> tuple[tuple[float, float], str]:
    """``(lo, hi)`` and where they come from: EURange, else sampled values, else a placeholder."""
    for source in (v, setpoint):
        rng = source.info.eu_range if source is not None else None
        if rng is not None and rng[0] < rng[1]:
            return rng, "from EURange"
    values = v.samples
    if values:
        mn, mx = min(values), max(values)
        margin = 0.1 * (mx - mn) if mx > mn else max(0.1 * abs(mx), 1.0)
        how = f"guess: {len(values)} sampled values in [{mn:.6g}, {mx:.6g}], widened"
        return (mn - margin, mx + margin), how
    return (0.0, 1.0), "FILL IN: no EURange and no value read"


def _str(text: str) -> str:
    """A TOML basic string (JSON escapes are valid TOML)."""
    import json

    return json.dumps(text, ensure_ascii=False)


def _num(x: float) -> str:
    return repr(float(f"{x:.8g}"))
