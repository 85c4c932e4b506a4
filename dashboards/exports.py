"""Downloads of the app and the approval hook, as plain functions (testable without a browser).

The files are those the command line writes: a recommendation through
:func:`twin.control.export.write_export` (as ``twin recommend --out``), what-if scenarios as
``twin whatif --out`` writes them.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from twin.control.recommendation import Recommendation
    from twin.control.whatif import WhatIf
    from twin.loop.audit import Approval


def recommendation_bytes(rec: Recommendation, suffix: str) -> bytes:
    """``rec`` exported as ``.csv`` or ``.json`` (the schema of ``twin recommend``)."""
    from twin.control.export import write_export

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"recommendation{suffix}"
        write_export(rec, path)
        return path.read_bytes()


def whatif_subset(result: WhatIf, names: list[str]) -> WhatIf:
    """The scenarios of ``result`` called ``names``, in ``result``'s order."""
    return result.subset(names)


def whatif_bytes(result: WhatIf, names: list[str], suffix: str) -> bytes:
    """Scenarios ``names`` as ``twin whatif --out FILE.csv|FILE.json`` writes them."""
    part = whatif_subset(result, names)
    if suffix == ".csv":
        return part.to_frame().write_csv().encode()
    if suffix != ".json":
        raise ValueError(f"what-if exports are .csv or .json, not {suffix!r}")
    return (json.dumps(part.to_json_dict(), allow_nan=False) + "\n").encode()


def request_approval(
    rec: Recommendation,
    historian: str | Path,
    operator: str,
    *,
    role: str | None = None,
    via: str | None = None,
) -> Approval:
    """The approve button's hook: release ``rec`` for write-back in ``operator``'s name (signed
    in as ``role``, by ``via``: see :class:`dashboards.auth.User`).

    Appends a line to ``<historian>/approvals.jsonl`` (:class:`twin.loop.audit.ApprovalQueue`); the
    write-back loop writes the recommendation once, if its guard allows, and audits it.
    """
    from twin.loop.audit import ApprovalQueue

    return ApprovalQueue(historian).approve(rec.ts, operator, role=role, via=via)
