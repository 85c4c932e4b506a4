"""Guarded write-back: recommended MV values to the plant's write nodes, only when it is safe.

Nothing is written unless every one of these holds (:class:`WriteGuard`): write-back is enabled
explicitly, the recommendation succeeded and is recent, each value lies in the spec's
``[lo, hi]`` and within the spec's rate limit of the MV's *last measured* value (read again from
the plant just before the write), the data is fresh, and the model is healthy (live forecast
error within ``max_error_ratio`` times its validation error). A :class:`Watchdog` holds the last
values (writes nothing) while the collector or the twin falls behind. In approval mode a
recommendation is written only once an operator approved it (:class:`ApprovalQueue`), once.

Every write is read back to confirm it; every write, read-back, refusal and approval is one
line of the append-only :class:`AuditLog` (who, when, what, why). The loop calls
:func:`maybe_write` once per recommendation.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from asyncua import Client, ua

from twin.control.recommendation import Recommendation
from twin.errors import TwinError
from twin.loop.audit import (
    APPROVALS_FILE,
    AUDIT_FILE,
    Approval,
    ApprovalQueue,
    AuditLog,
    current_user,
    iso,
)
from twin.spec import PlantSpec, Tag
from twin.times import now_utc

__all__ = [
    "APPROVALS_FILE",
    "AUDIT_FILE",
    "Approval",
    "ApprovalQueue",
    "AuditLog",
    "Decision",
    "Watchdog",
    "WriteGuard",
    "check_live",
    "current_user",
    "maybe_write",
    "write_moves",
]

log = logging.getLogger(__name__)

#: absolute slack of the limit and rate checks (engineering units)
TOL = 1e-9


@dataclass(frozen=True)
class Decision:
    """Whether a recommendation was (or may be) written, and why not."""

    allowed: bool
    reasons: tuple[str, ...] = ()
    """why it was refused (empty when allowed)"""
    written: tuple[tuple[str, float], ...] = ()
    """(MV, value) written and confirmed by read-back"""
    approved_by: str | None = None
    """``operator:<name>`` in approval mode"""

    @property
    def why(self) -> str:
        """The reasons as one line."""
        return "; ".join(self.reasons) or "all checks passed"


class WriteGuard:
    """The checks a recommendation passes before any value reaches the plant."""

    def __init__(
        self,
        spec: PlantSpec,
        *,
        max_error_ratio: float = 3.0,
        max_age_s: float | None = None,
        max_rec_periods: float = 4.0,
        rate_slack: float = 0.0,
    ) -> None:
        self.spec = spec
        self.max_error_ratio = max_error_ratio
        """largest live / validation forecast error allowed"""
        self.max_age_s = 3 * spec.sample_period if max_age_s is None else max_age_s
        """oldest newest-sample age allowed (s)"""
        self.max_rec_age_s = max_rec_periods * spec.sample_period
        """oldest recommendation allowed (s from its ``ts``)"""
        self.rate_slack = rate_slack
        """extra allowance on each rate limit, as a fraction of it (for noisy MV readings)"""

    def check(
        self,
        rec: Recommendation,
        last_measured: Mapping[str, float],
        data_age_s: float | None,
        health_ratio: float | None,
        enabled: bool,
        *,
        now: datetime | None = None,
    ) -> Decision:
        """Every reason not to write ``rec`` now (all of them, not just the first)."""
        reasons: list[str] = []
        if not enabled:
            reasons.append("write-back is not enabled")
        if rec.plant != self.spec.name:
            reasons.append(f"recommendation is for plant {rec.plant!r}, not {self.spec.name!r}")
        if not rec.success:
            reasons.append(f"recommendation failed: {rec.message}")
        rec_age = ((now or now_utc()) - rec.ts).total_seconds()
        if rec_age > self.max_rec_age_s:
            reasons.append(
                f"recommendation is {rec_age:.0f} s old (limit {self.max_rec_age_s:g} s)"
            )
        if data_age_s is None or not math.isfinite(data_age_s):
            reasons.append("data age unknown: no recent sample")
        elif data_age_s > self.max_age_s:
            reasons.append(
                f"stale data: newest sample {data_age_s:.1f} s old (limit {self.max_age_s:g} s)"
            )
        if health_ratio is None or not math.isfinite(health_ratio):
            reasons.append("model health unknown (no live forecast error yet)")
        elif health_ratio > self.max_error_ratio:
            reasons.append(
                f"model unhealthy: live forecast error {health_ratio:.2f}x its validation "
                f"error (limit {self.max_error_ratio:g}x)"
            )
        moves = {m.tag: m for m in rec.moves}
        for tag in self.spec.mvs:
            move = moves.get(tag.name)
            value = None if move is None else move.recommended
            reasons.extend(self._check_mv(tag, value, last_measured.get(tag.name)))
            # the slack only absorbs measurement noise: against the value the controller
            # planned from, the move must keep the spec's rate limit exactly
            if (
                move is not None
                and value is not None
                and tag.rate_limit is not None
                and abs(value - move.current) > tag.rate_limit + TOL
            ):
                reasons.append(
                    f"{tag.name}: move {value - move.current:+.4g} {tag.unit} from the "
                    f"planned-from {move.current:.6g} exceeds the rate limit "
                    f"{tag.rate_limit:g} {tag.unit} per sample"
                )
        return Decision(not reasons, tuple(reasons))

    def _check_mv(self, tag: Tag, value: float | None, last: float | None) -> list[str]:
        name, unit = tag.name, tag.unit
        if tag.write_node is None:
            return [f"{name}: the spec gives it no write node"]
        if value is None or not math.isfinite(value):
            return [f"{name}: no finite recommended value"]
        out = []
        if not tag.lo - TOL <= value <= tag.hi + TOL:
            out.append(f"{name}: {value:g} {unit} outside [{tag.lo:g}, {tag.hi:g}]")
        if tag.rate_limit is not None:
            if last is None or not math.isfinite(last):
                out.append(f"{name}: no measured value to check the rate limit against")
            else:
                allowed = tag.rate_limit * (1 + self.rate_slack) + TOL
                if abs(value - last) > allowed:
                    out.append(
                        f"{name}: move {value - last:+.4g} {unit} from the measured {last:.6g} "
                        f"exceeds the rate limit {tag.rate_limit:g} {unit} per sample"
                    )
        return out


class Watchdog:
    """Heartbeats of the collector and the twin; unhealthy when one falls ``max_lag_s`` behind."""

    KINDS = ("collector", "twin")

    def __init__(self, max_lag_s: float, *, clock: Any = time.monotonic) -> None:
        if not max_lag_s > 0:
            raise TwinError(f"watchdog lag limit must be > 0 s, got {max_lag_s}")
        self.max_lag_s = max_lag_s
        self._clock = clock
        self._beats: dict[str, float] = {}
        self._holding = False

    def beat(self, kind: str) -> None:
        """Record that ``kind`` ("collector" or "twin") made progress just now."""
        if kind not in self.KINDS:
            raise TwinError(f"unknown watchdog heartbeat {kind!r} (use {', '.join(self.KINDS)})")
        self._beats[kind] = self._clock()

    def reasons(self) -> tuple[str, ...]:
        """Why writes are held now (empty when healthy)."""
        now = self._clock()
        out = []
        for kind in self.KINDS:
            last = self._beats.get(kind)
            if last is None:
                out.append(f"watchdog: no heartbeat from the {kind} yet")
            elif now - last > self.max_lag_s:
                out.append(
                    f"watchdog: the {kind} is {now - last:.1f} s behind "
                    f"(limit {self.max_lag_s:g} s); holding the last values"
                )
        if out and not self._holding:
            log.warning("%s", "; ".join(out))
        elif not out and self._holding:
            log.info("watchdog: collector and twin keep up again")
        self._holding = bool(out)
        return tuple(out)

    def healthy(self) -> bool:
        """True when both the collector and the twin beat within ``max_lag_s``."""
        return not self.reasons()


def _variant(value: float, vtype: ua.VariantType) -> ua.Variant:
    """``value`` as the node's exact data type (servers answer BadTypeMismatch otherwise)."""
    if vtype in (ua.VariantType.Double, ua.VariantType.Float):
        return ua.Variant(float(value), vtype)
    if vtype.name.startswith(("Int", "UInt", "Byte", "SByte")):
        return ua.Variant(round(value), vtype)
    raise TwinError(f"cannot write a number to a node of data type {vtype.name}")


def _audit_refusal(audit: AuditLog, spec: PlantSpec, rec: Recommendation, why: str) -> None:
    values = {m.tag: m.recommended for m in rec.moves}
    for tag in spec.mvs:
        audit.record(
            "refuse",
            tag=tag.name,
            value=values.get(tag.name),
            why=why,
            ok=False,
            rec_ts=iso(rec.ts),
            plant=spec.name,
            node=None if tag.write_node is None else str(tag.write_node),
        )
    log.warning("write-back refused: %s", why)


async def _measured_mvs(client: Client, spec: PlantSpec, namespaces: list[str]) -> dict[str, float]:
    """The MVs' measured values as the plant reports them now (good readings only)."""
    nodes = [client.get_node(t.node.resolve(namespaces)) for t in spec.mvs]
    out = {}
    for tag, dv in zip(spec.mvs, await client.read_attributes(nodes), strict=True):
        raw = dv.Value.Value if dv.Value is not None else None
        good = dv.StatusCode is None or dv.StatusCode.is_good()
        if good and isinstance(raw, int | float) and math.isfinite(raw):
            out[tag.name] = float(raw)
    return out


async def check_live(
    client: Client,
    spec: PlantSpec,
    rec: Recommendation,
    guard: WriteGuard,
    *,
    last_measured: Mapping[str, float],
    data_age_s: float | None,
    health_ratio: float | None,
    enabled: bool,
    now: datetime | None = None,
) -> tuple[Decision, list[str]]:
    """The guard's decision against the MVs' measured values read from the plant right now.

    ``last_measured`` stands in for an MV whose measurement cannot be read. Returns the decision
    and the server's NamespaceArray (empty when the plant could not be read: refused).
    """
    try:
        namespaces = await client.get_namespace_array()
        measured = {**last_measured, **await _measured_mvs(client, spec, namespaces)}
    except Exception as exc:  # the plant is unreachable: nothing can be written
        why = f"cannot read the plant before writing: {type(exc).__name__}: {exc}"
        return Decision(False, (why,)), []
    return guard.check(rec, measured, data_age_s, health_ratio, enabled, now=now), namespaces


async def write_moves(
    client: Client,
    spec: PlantSpec,
    rec: Recommendation,
    guard: WriteGuard,
    audit: AuditLog,
    *,
    last_measured: Mapping[str, float],
    data_age_s: float | None,
    health_ratio: float | None,
    enabled: bool,
    approved_by: str | None = None,
    now: datetime | None = None,
) -> Decision:
    """Check ``rec`` against the plant as it is now (:func:`check_live`), write, read back.

    All MVs go in one Write request; each is read back and compared with what was written.
    Every outcome is audited; a lost connection is a refusal (or a failed write), never a raise.
    """
    decision, namespaces = await _check_or_refuse(
        client,
        spec,
        rec,
        guard,
        audit,
        last_measured=last_measured,
        data_age_s=data_age_s,
        health_ratio=health_ratio,
        enabled=enabled,
        now=now,
    )
    if not decision.allowed:
        return decision
    return await _write(client, spec, rec, audit, namespaces, approved_by)


async def _check_or_refuse(
    client: Client,
    spec: PlantSpec,
    rec: Recommendation,
    guard: WriteGuard,
    audit: AuditLog,
    **checks: Any,
) -> tuple[Decision, list[str]]:
    """:func:`check_live`, with a refusal audited at once (whatever an operator says)."""
    decision, namespaces = await check_live(client, spec, rec, guard, **checks)
    if not decision.allowed:
        _audit_refusal(audit, spec, rec, decision.why)
    return decision, namespaces


async def _write(
    client: Client,
    spec: PlantSpec,
    rec: Recommendation,
    audit: AuditLog,
    namespaces: list[str],
    approved_by: str | None,
) -> Decision:
    """Write every MV's recommended value in one request, read each back, audit each."""
    values = {m.tag: m.recommended for m in rec.moves}
    tags = [t for t in spec.mvs if t.write_node is not None]  # the guard checked: all of them
    try:
        nodes = [client.get_node(t.write_node.resolve(namespaces)) for t in tags if t.write_node]
        variants = [
            _variant(values[t.name], await n.read_data_type_as_variant_type())
            for t, n in zip(tags, nodes, strict=True)
        ]
        statuses = await client.write_values(nodes, variants, raise_on_partial_error=False)
        readback = await client.read_attributes(nodes)
    except Exception as exc:
        why = f"write failed: {type(exc).__name__}: {exc}"
        for t in tags:
            audit.record(
                "write",
                tag=t.name,
                value=values.get(t.name),
                why=why,
                ok=False,
                rec_ts=iso(rec.ts),
                plant=spec.name,
                node=str(t.write_node),
            )
        log.error("write-back failed: %s", why)
        return Decision(False, (why,), (), approved_by)
    failures: list[str] = []
    written: list[tuple[str, float]] = []
    for tag, variant, status, dv in zip(tags, variants, statuses, readback, strict=True):
        value = float(variant.Value)
        common = {"rec_ts": iso(rec.ts), "plant": spec.name, "node": str(tag.write_node)}
        if not status.is_good():
            why = f"the server refused the write: {status.name}"
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
        got = dv.Value.Value if dv.Value is not None else None
        tol = TOL + (1e-6 * abs(value) if variant.VariantType == ua.VariantType.Float else 0.0)
        if isinstance(got, int | float) and abs(float(got) - value) <= tol:
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
    client: Client | None,
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
    """The loop's one call per recommendation: watchdog, approval, guard, write, audit.

    ``client`` is a connected OPC-UA client (None: no connection, refused). With
    ``approvals``, a recommendation that passes every check waits (not written, not audited)
    until an operator approved it; the approval is audited and used once.
    """
    held = list(watchdog.reasons())
    if client is None:
        held.append("no OPC-UA connection to write with")
    if held or client is None:
        offline = guard.check(rec, last_measured, data_age_s, health_ratio, enabled)
        reasons = (*held, *offline.reasons)
        _audit_refusal(audit, spec, rec, "; ".join(reasons))
        return Decision(False, reasons)
    decision, namespaces = await _check_or_refuse(
        client,
        spec,
        rec,
        guard,
        audit,
        last_measured=last_measured,
        data_age_s=data_age_s,
        health_ratio=health_ratio,
        enabled=enabled,
    )
    if not decision.allowed:  # refused (and audited) before any approval is looked at
        return decision
    approved_by = None
    if approvals is not None:
        approval = approvals.take(rec.ts, audit)
        if approval is None:
            return Decision(False, ("waiting for operator approval",))
        approved_by = f"operator:{approval.operator}"
        values = {m.tag: m.recommended for m in rec.moves}
        for tag in spec.mvs:
            audit.record(
                "approve",
                tag=tag.name,
                value=values.get(tag.name),
                why=f"approved at {iso(approval.ts)}",
                who=approved_by,
                ok=True,
                rec_ts=iso(rec.ts),
                plant=spec.name,
            )
    return await _write(client, spec, rec, audit, namespaces, approved_by)
