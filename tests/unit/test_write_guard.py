"""The write-back guard, watchdog, audit log and approvals, without a plant (the integration
test writes to a real one)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from twin.control.recommendation import MoveRec, Recommendation
from twin.errors import TwinError
from twin.loop.audit import ApprovalQueue, AuditLog, current_user
from twin.loop.guard import Watchdog, WriteGuard
from twin.loop.writeback import maybe_write
from twin.spec import PlantSpec, builtin_spec

SPEC = builtin_spec("cstr")  # one MV: Tc in [285, 302] K, rate limit 0.5 K per sample
NOW = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)


def rec_for(spec: PlantSpec, value: float, *, current: float = 300.0, **changes) -> Recommendation:
    """A successful recommendation moving Tc from ``current`` to ``value``, made just now."""
    tc = spec.tag("Tc")
    move = MoveRec(
        tag="Tc",
        node=str(tc.node),
        write_node=str(tc.write_node),
        unit=tc.unit,
        current=current,
        recommended=value,
        change=value - current,
        lo=tc.lo,
        hi=tc.hi,
        rate_limit=float(tc.rate_limit or 0),
        plan=(value,) * 4,
        limits_held=True,
    )
    rec = Recommendation(
        ts=NOW - timedelta(seconds=3),
        plant=spec.name,
        success=True,
        message="converged",
        moves=(move,),
        setpoints={"T": 324.5, "Ca": 0.877},
        forecast=None,
        objective=0.1,
        solve_time_s=0.02,
        iterations=5,
        limits_held=True,
    )
    return replace(rec, **changes)


def check(rec: Recommendation, **given):
    """WriteGuard.check with healthy defaults, overridden by ``given``."""
    args = {
        "last_measured": {"Tc": 300.0},
        "data_age_s": 2.0,
        "health_ratio": 1.2,
        "enabled": True,
    } | given
    return WriteGuard(SPEC).check(rec, now=NOW, **args)


def test_a_recommendation_within_every_limit_passes() -> None:
    decision = check(rec_for(SPEC, 300.4))
    assert decision.allowed and decision.reasons == ()


@pytest.mark.parametrize(
    ("rec_changes", "given", "reason"),
    [
        ({}, {"enabled": False}, "write-back is not enabled"),
        ({"success": False, "message": "non-finite forecast"}, {}, "failed: non-finite forecast"),
        ({"ts": NOW - timedelta(minutes=5)}, {}, "recommendation is 300 s old (limit 24 s)"),
        ({"plant": "quadtank"}, {}, "for plant 'quadtank'"),
        ({}, {"data_age_s": 40.0}, "stale data: newest sample 40.0 s old (limit 18 s)"),
        ({}, {"data_age_s": None}, "data age unknown"),
        ({}, {"health_ratio": None}, "model health unknown"),
        ({}, {"health_ratio": 4.5}, "live forecast error 4.50x its validation error (limit 3x)"),
        ({}, {"last_measured": {}}, "Tc: no measured value"),
    ],
)
def test_each_unsafe_condition_is_refused_with_its_reason(rec_changes, given, reason) -> None:
    decision = check(rec_for(SPEC, 300.2, **rec_changes), **given)
    assert not decision.allowed
    assert any(reason in r for r in decision.reasons), decision.reasons


def test_limits_come_from_the_spec_and_the_rate_from_the_last_measured_value() -> None:
    """A value outside [lo, hi] is refused even when the recommendation claims its limits held;
    the rate limit is checked against the *measured* MV, not the recommendation's ``current``."""
    assert "Tc: 302.3 K outside [285, 302]" in check(rec_for(SPEC, 302.3, current=302.0)).why
    drifted = rec_for(SPEC, 300.45, current=300.0)  # +0.45 from current: fine on paper
    refused = check(drifted, last_measured={"Tc": 299.8})  # but +0.65 from the plant now
    assert not refused.allowed
    assert "move +0.65 K from the measured 299.8 exceeds the rate limit 0.5 K" in refused.why
    assert check(drifted, last_measured={"Tc": 299.95}).allowed  # +0.5 exactly: allowed
    slack = WriteGuard(SPEC, rate_slack=0.4).check(drifted, {"Tc": 299.8}, 2.0, 1.0, True, now=NOW)
    assert slack.allowed, "a 40 % slack admits a 0.65 move against a 0.5 limit"
    # ... but only as measurement noise: from the value it was planned from, never past the limit
    too_far = rec_for(SPEC, 300.6, current=300.0)
    loose = WriteGuard(SPEC, rate_slack=0.4).check(too_far, {"Tc": 300.2}, 2.0, 1.0, True, now=NOW)
    assert not loose.allowed
    assert "move +0.6 K from the planned-from 300 exceeds the rate limit 0.5 K" in loose.why


def test_every_reason_is_listed_not_just_the_first() -> None:
    decision = check(rec_for(SPEC, 310.0), enabled=False, data_age_s=99.0, health_ratio=9.0)
    # disabled, stale, unhealthy, out of range, rate from measured, rate from planned-from
    assert len(decision.reasons) == 6


def test_watchdog_holds_when_the_collector_or_the_twin_falls_behind() -> None:
    clock = [100.0]
    dog = Watchdog(10.0, clock=lambda: clock[0])
    assert not dog.healthy()
    assert dog.reasons() == (
        "watchdog: no heartbeat from the collector yet",
        "watchdog: no heartbeat from the twin yet",
    )
    dog.beat("collector")
    dog.beat("twin")
    assert dog.healthy()
    clock[0] = 108.0
    dog.beat("twin")
    clock[0] = 112.5  # collector silent for 12.5 s, twin for 4.5 s
    (reason,) = dog.reasons()
    assert "the collector is 12.5 s behind (limit 10 s); holding the last values" in reason
    dog.beat("collector")
    assert dog.healthy()
    with pytest.raises(TwinError, match="unknown watchdog heartbeat 'historian'"):
        dog.beat("historian")


def test_audit_log_only_ever_appends_and_skips_a_torn_line(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path)  # a folder: the log is <folder>/audit.jsonl, as the app reads
    assert audit.path == tmp_path / "audit.jsonl"
    first = audit.record("refuse", tag="Tc", value=310.0, why="outside [285, 302]", rec_ts="x")
    before = audit.path.read_bytes()
    audit.record("write", tag="Tc", value=300.2, why="all checks passed", ok=True)
    assert audit.path.read_bytes().startswith(before), "earlier lines are never rewritten"
    with audit.path.open("a") as f:
        f.write('{"ts": "2026-05-04T12:00:00+00:00", "who": "x", "act')  # a crash mid-line
    entries = AuditLog(audit.path).read()
    assert [e["action"] for e in entries] == ["refuse", "write"]
    assert entries[0] == first
    assert set(first) >= {"ts", "who", "action", "tag", "value", "why"}
    assert first["who"] == current_user() and first["value"] == 310.0
    assert datetime.fromisoformat(first["ts"]).tzinfo is not None
    json.loads(audit.path.read_text().splitlines()[1])  # one JSON object per line


def test_an_approval_releases_its_recommendation_once(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path)
    queue = ApprovalQueue(tmp_path)
    rec_ts = NOW - timedelta(seconds=3)
    assert queue.take(rec_ts, audit) is None
    queue.approve(NOW - timedelta(seconds=9), "bob")  # another recommendation
    queue.approve(rec_ts, " alice ")
    approval = queue.take(rec_ts, audit)
    assert approval is not None and approval.operator == "alice"
    assert queue.take(rec_ts, audit) is None, "used once"
    audit.record(
        "approve", tag="Tc", value=300.2, why="", who="operator:alice", rec_ts=rec_ts.isoformat()
    )
    restarted = ApprovalQueue(tmp_path)  # after a restart the audit log remembers the use
    assert restarted.take(rec_ts, audit) is None
    line = json.loads((tmp_path / "approvals.jsonl").read_text().splitlines()[-1])
    assert line["operator"] == "alice" and datetime.fromisoformat(line["rec_ts"]) == rec_ts
    with pytest.raises(TwinError, match="operator's name"):
        queue.approve(rec_ts, "  ")


def test_no_connection_means_no_write_and_an_audited_refusal(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path)
    dog = Watchdog(30.0)
    dog.beat("collector")
    dog.beat("twin")
    rec = rec_for(SPEC, 300.2, ts=datetime.now(UTC))
    decision = asyncio.run(
        maybe_write(
            None,
            SPEC,
            rec,
            guard=WriteGuard(SPEC),
            audit=audit,
            watchdog=dog,
            last_measured={"Tc": 300.0},
            data_age_s=1.0,
            health_ratio=1.0,
            enabled=True,
        )
    )
    assert not decision.allowed and decision.reasons == ("no OPC-UA connection to write with",)
    (entry,) = audit.read()
    assert entry["action"] == "refuse" and entry["tag"] == "Tc" and entry["value"] == 300.2
    assert entry["why"] == "no OPC-UA connection to write with"
