"""Guarded write-back: recommended MV values to the plant's write nodes, only when it is safe.

Nothing is written unless every check of the :class:`~twin.loop.guard.WriteGuard` holds, with
each MV's rate limit checked against its value measured again from the plant just before the
write, and the :class:`~twin.loop.guard.Watchdog` sees the collector and the twin keep up. In
approval mode a recommendation is written only once an operator approved it
(:class:`~twin.loop.audit.ApprovalQueue`), once.

The plant is any :class:`~twin.loop.ports.MoveWriter` (``connectors.opcua_write`` for OPC-UA).
Every write is read back to confirm it; every write, read-back, refusal and approval is one
line of the append-only :class:`~twin.loop.audit.AuditLog` (who, when, what, why). The loop
calls :func:`maybe_write` once per recommendation.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime

from twin.control.recommendation import Recommendation
from twin.loop.audit import ApprovalQueue, AuditLog, iso
from twin.loop.guard import TOL, Decision, Watchdog, WriteGuard
from twin.loop.ports import MoveWriter
from twin.spec import PlantSpec, Tag

log = logging.getLogger(__name__)

#: the one reason of a recommendation that passed every check but waits for an operator
WAITING = "waiting for operator approval"
#: the reason given when there is no session to write with
NO_SESSION = "no OPC-UA connection to write with"


def _audit_each(
    audit: AuditLog,
    action: str,
    spec: PlantSpec,
    rec: Recommendation,
    *,
    why: str,
    ok: bool,
    who: str | None = None,
    tags: Sequence[Tag] | None = None,
    node: bool = True,
) -> None:
    """One ``action`` line per MV of ``rec`` (``tags``, default all of the spec's MVs)."""
    values = {m.tag: m.recommended for m in rec.moves}
    for tag in spec.mvs if tags is None else tags:
        where = {"node": None if tag.write_node is None else str(tag.write_node)} if node else {}
        audit.record(
            action,
            tag=tag.name,
            value=values.get(tag.name),
            why=why,
            who=who,
            ok=ok,
            rec_ts=iso(rec.ts),
            plant=spec.name,
            **where,
        )


def _refuse(audit: AuditLog, spec: PlantSpec, rec: Recommendation, why: str) -> None:
    _audit_each(audit, "refuse", spec, rec, why=why, ok=False)
    log.warning("write-back refused: %s", why)


async def check_live(
    plant: MoveWriter,
    spec: PlantSpec,
    rec: Recommendation,
    guard: WriteGuard,
    *,
    last_measured: Mapping[str, float],
    data_age_s: float | None,
    health_ratio: float | None,
    enabled: bool,
    now: datetime | None = None,
) -> Decision:
    """The guard's decision against the MVs' measured values read from the plant right now.

    ``last_measured`` stands in for an MV whose measurement cannot be read; a plant that cannot
    be read at all is a refusal.
    """
    try:
        measured = {**last_measured, **await plant.read_measured(spec.mvs)}
    except Exception as exc:  # the plant is unreachable: nothing can be written
        why = f"cannot read the plant before writing: {type(exc).__name__}: {exc}"
        return Decision(False, (why,))
    return guard.check(rec, measured, data_age_s, health_ratio, enabled, now=now)


async def write_moves(
    plant: MoveWriter,
    spec: PlantSpec,
    rec: Recommendation,
    guard: WriteGuard,
    audit: AuditLog,
    *,
    last_measured: Mapping[str, float],
    data_age_s: float | None,
    health_ratio: float | None,
    enabled: bool,
    approvals: ApprovalQueue | None = None,
    now: datetime | None = None,
) -> Decision:
    """Check ``rec`` against the plant as it is now (:func:`check_live`), write, read back.

    A refusal is audited at once, before any approval is looked at. With ``approvals``, a
    recommendation that passes every check waits (not written, not audited) until an operator
    approved it; the approval is audited and used once. All MVs go in one write; each is read
    back and compared with what was written. Every outcome is audited; a lost connection is a
    refusal (or a failed write), never a raise.
    """
    decision = await check_live(
        plant,
        spec,
        rec,
        guard,
        last_measured=last_measured,
        data_age_s=data_age_s,
        health_ratio=health_ratio,
        enabled=enabled,
        now=now,
    )
    if not decision.allowed:
        _refuse(audit, spec, rec, decision.why)
        return decision
    approved_by = None
    if approvals is not None:
        approval = approvals.take(rec.ts, audit)
        if approval is None:
            return Decision(False, (WAITING,))
        approved_by = f"operator:{approval.operator}"
        why = approval.why
        _audit_each(audit, "approve", spec, rec, why=why, who=approved_by, ok=True, node=False)
    return await _write(plant, spec, rec, audit, approved_by)


async def _write(
    plant: MoveWriter,
    spec: PlantSpec,
    rec: Recommendation,
    audit: AuditLog,
    approved_by: str | None,
) -> Decision:
    """Write every MV's recommended value in one request, read each back, audit each."""
    values = {m.tag: m.recommended for m in rec.moves}
    tags = [t for t in spec.mvs if t.write_node is not None]  # the guard checked: all of them
    try:
        results = await plant.write([(t, values[t.name]) for t in tags])
    except Exception as exc:
        why = f"write failed: {type(exc).__name__}: {exc}"
        _audit_each(audit, "write", spec, rec, why=why, ok=False, tags=tags)
        log.error("write-back failed: %s", why)
        return Decision(False, (why,), (), approved_by)
    failures: list[str] = []
    written: list[tuple[str, float]] = []
    for tag, result in zip(tags, results, strict=True):
        value = result.value
        common = {"rec_ts": iso(rec.ts), "plant": spec.name, "node": str(tag.write_node)}
        if result.refused is not None:
            why = f"the server refused the write: {result.refused}"
            failures.append(f"{tag.name}: {why}")
            audit.record("write", tag=tag.name, value=value, why=why, ok=False, **common)
            continue
        audit.record(
            "write",
            tag=tag.name,
            value=value,
            why="all checks passed",
            ok=True,
            approved_by=approved_by,
            **common,
        )
        got = result.readback
        if isinstance(got, int | float) and abs(float(got) - value) <= TOL + result.precision:
            written.append((tag.name, float(got)))
            audit.record(
                "readback", tag=tag.name, value=float(got), why="confirmed", ok=True, **common
            )
        else:
            why = f"read back {got!r}, wrote {value:g}"
            failures.append(f"{tag.name}: {why}")
            number = float(got) if isinstance(got, int | float) else None
            audit.record("readback", tag=tag.name, value=number, why=why, ok=False, **common)
    if failures:
        log.error("write-back failed: %s", "; ".join(failures))
        return Decision(False, tuple(failures), tuple(written), approved_by)
    log.info("wrote %s", ", ".join(f"{t} = {v:.6g}" for t, v in written))
    return Decision(True, (), tuple(written), approved_by)


async def maybe_write(
    plant: MoveWriter | None,
    spec: PlantSpec,
    rec: Recommendation,
    *,
    guard: WriteGuard,
    audit: AuditLog,
    watchdog: Watchdog,
    last_measured: Mapping[str, float],
    data_age_s: float | None,
    health_ratio: float | None,
    enabled: bool,
    approvals: ApprovalQueue | None = None,
) -> Decision:
    """The loop's one call per recommendation: watchdog, then :func:`write_moves`.

    ``plant`` is a move writer with an open session (None: no session, refused). While the
    watchdog holds, or without a session, the refusal lists the guard's reasons too (checked
    against ``last_measured``, without the plant).
    """
    held = list(watchdog.reasons())
    if plant is None:
        held.append(NO_SESSION)
    if held or plant is None:
        offline = guard.check(rec, last_measured, data_age_s, health_ratio, enabled)
        reasons = (*held, *offline.reasons)
        _refuse(audit, spec, rec, "; ".join(reasons))
        return Decision(False, reasons)
    return await write_moves(
        plant,
        spec,
        rec,
        guard,
        audit,
        last_measured=last_measured,
        data_age_s=data_age_s,
        health_ratio=health_ratio,
        enabled=enabled,
        approvals=approvals,
    )
