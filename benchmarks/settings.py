"""``--set FIELD=JSON``: a benchmark's override of the twin's defaults (``TwinConfig`` fields).

A setting measured this way is a candidate default, compared on the development plants against
the runs with the defaults; each override is kept in the run's record so a results folder says
what it ran with.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

from twin.model.network import TwinConfig

HELP = "override a TwinConfig field, e.g. linear_bootstrap=false (repeatable; use its own --out)"


def add_set_option(parser: argparse.ArgumentParser) -> None:
    """Add the repeatable ``--set FIELD=JSON`` option."""
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=JSON", help=HELP)


def parse_settings(pairs: list[str]) -> dict[str, Any]:
    """``["stack=false", "window=48"]`` -> ``{"stack": False, "window": 48}``, fields checked."""
    fields = {f.name for f in dataclasses.fields(TwinConfig)}
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in fields:
            raise SystemExit(f"--set {pair!r}: expected FIELD=JSON with a TwinConfig field")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError as exc:
            raise SystemExit(f"--set {pair!r}: the value is not JSON ({exc})") from None
    return out
