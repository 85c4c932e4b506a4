"""Guarded write-back against the simulated CSTR served on 127.0.0.1: what passes is written,
read back and moves the plant; what does not is refused, leaves the plant alone and is audited."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from asyncua import Client, ua
from conftest import plant_server_thread

from connectors.opcua_security import Security, connect_client
from connectors.opcua_write import OpcUaMoveWriter
from connectors.sim.plants import make_plant
from connectors.sim.server import PlantServer
from twin.control.recommendation import MoveRec, Recommendation
from twin.loop.audit import ApprovalQueue, AuditLog, current_user
from twin.loop.guard import Decision, Watchdog, WriteGuard
from twin.loop.writeback import maybe_write
from twin.spec import PlantSpec

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def plant() -> Iterator[PlantServer]:
    """A noise-free CSTR (the measured Tc is exactly the applied setpoint), a step every 50 ms."""
    sim = make_plant("cstr", seed=2, noise=False)
    with plant_server_thread(sim, sim.spec.sample_period / 0.05) as server:
        yield server


def rec_for(
    spec: PlantSpec, value: float, *, current: float = 300.0, **changes: Any
) -> Recommendation:
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
        ts=datetime.now(UTC) - timedelta(seconds=2),
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


async def tc_values(client: Client, spec: PlantSpec) -> tuple[float, float]:
    """(setpoint node value, measured Tc) as the plant serves them now."""
    ns = await client.get_namespace_array()
    tc = spec.tag("Tc")
    assert tc.write_node is not None
    sp, pv = await client.read_values(
        [client.get_node(tc.write_node.resolve(ns)), client.get_node(tc.node.resolve(ns))]
    )
    return float(sp), float(pv)


async def settle(client: Client, spec: PlantSpec, timeout: float = 5.0) -> float:
    """Wait until the measured Tc equals its setpoint (the plant applied it); return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sp, pv = await tc_values(client, spec)
        if sp == pv:
            return pv
        await asyncio.sleep(0.05)
    raise AssertionError(f"plant did not apply Tc setpoint {sp} (measured {pv})")


def healthy_dog() -> Watchdog:
    dog = Watchdog(30.0)
    dog.beat("collector")
    dog.beat("twin")
    return dog


async def attempt(
    client: Client | None,
    spec: PlantSpec,
    rec: Recommendation,
    audit: AuditLog,
    **given: Any,
) -> Decision:
    """maybe_write with fresh data, a healthy model and write-back on, unless ``given`` says."""
    args: dict[str, Any] = {
        "guard": WriteGuard(spec),
        "audit": audit,
        "watchdog": healthy_dog(),
        "last_measured": {},
        "data_age_s": 1.5,
        "health_ratio": 1.1,
        "enabled": True,
    } | given
    plant = None if client is None else OpcUaMoveWriter.over(client)
    return await maybe_write(plant, spec, rec, **args)


def test_a_move_within_limits_is_written_read_back_applied_and_audited(
    plant: PlantServer, tmp_path: Path
) -> None:
    spec = plant.spec
    audit = AuditLog(tmp_path)

    async def main() -> tuple[Decision, float, float]:
        client = await connect_client(plant.endpoint, Security())
        try:
            start = await settle(client, spec)
            target = round(start + 0.4, 6)  # within the 0.5 K rate limit, inside [285, 302]
            decision = await attempt(client, spec, rec_for(spec, target), audit)
            return decision, target, await settle(client, spec)
        finally:
            await client.disconnect()

    decision, target, applied = asyncio.run(main())
    assert decision.allowed, decision.reasons
    assert decision.written == (("Tc", target),)
    assert applied == target, "the plant runs on the new coolant temperature"
    entries = audit.read()
    assert [(e["action"], e["ok"]) for e in entries] == [("write", True), ("readback", True)]
    assert all(e["who"] == current_user() and e["tag"] == "Tc" for e in entries)
    assert entries[0]["value"] == target and entries[1]["why"] == "confirmed"
    assert entries[0]["node"] == str(spec.tag("Tc").write_node)


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("above hi", "Tc: 302.4 K outside [285, 302]"),
        ("too fast", "exceeds the rate limit 0.5 K per sample"),
        ("stale data", "stale data: newest sample 60.0 s old"),
        ("unhealthy model", "model unhealthy: live forecast error 4.00x"),
        ("health unknown", "model health unknown"),
        ("write disabled", "write-back is not enabled"),
        ("failed solve", "recommendation failed: solver did not converge"),
        ("collector behind", "watchdog: the collector is"),
    ],
)
def test_unsafe_writes_are_refused_leave_the_plant_alone_and_are_audited(
    plant: PlantServer, tmp_path: Path, case: str, reason: str
) -> None:
    spec = plant.spec
    audit = AuditLog(tmp_path / "audit.jsonl")

    async def main() -> tuple[Decision, float, float]:
        client = await connect_client(plant.endpoint, Security())
        try:
            start = await settle(client, spec)
            given: dict[str, Any] = {}
            value = start + 0.3
            rec = rec_for(spec, value)
            if case == "above hi":
                value = 302.4
                rec = rec_for(spec, value)
                given["guard"] = WriteGuard(spec, rate_slack=100.0)  # only [lo, hi] can refuse
            elif case == "too fast":
                rec = rec_for(spec, start + 0.8)
            elif case == "stale data":
                given["data_age_s"] = 60.0
            elif case == "unhealthy model":
                given["health_ratio"] = 4.0
            elif case == "health unknown":
                given["health_ratio"] = None
            elif case == "write disabled":
                given["enabled"] = False
            elif case == "failed solve":
                rec = replace(rec, success=False, message="solver did not converge")
            elif case == "collector behind":
                clock = [0.0]
                dog = Watchdog(5.0, clock=lambda: clock[0])
                dog.beat("collector")
                clock[0] = 4.0
                dog.beat("twin")
                clock[0] = 9.0
                given["watchdog"] = dog
            decision = await attempt(client, spec, rec, audit, **given)
            await asyncio.sleep(0.2)  # a few plant steps: a stray write would show now
            return decision, start, (await tc_values(client, spec))[0]
        finally:
            await client.disconnect()

    decision, start, setpoint = asyncio.run(main())
    assert not decision.allowed
    assert any(reason in r for r in decision.reasons), decision.reasons
    assert setpoint == start, "nothing reached the plant"
    (entry,) = audit.read()
    assert entry["action"] == "refuse" and entry["ok"] is False and entry["tag"] == "Tc"
    assert reason in entry["why"] and entry["who"] == current_user()


def test_approval_mode_writes_only_what_an_operator_released_once(
    plant: PlantServer, tmp_path: Path
) -> None:
    spec = plant.spec
    audit = AuditLog(tmp_path)
    approvals = ApprovalQueue(tmp_path)

    async def main() -> tuple[list[Decision], list[float]]:
        client = await connect_client(plant.endpoint, Security())
        try:
            start = await settle(client, spec)
            rec = rec_for(spec, round(start - 0.25, 6))
            waiting = await attempt(client, spec, rec, audit, approvals=approvals)
            before = (await tc_values(client, spec))[0]
            approvals.approve(rec.ts, "alice", role="operator", via="password")  # the app's button
            released = await attempt(client, spec, rec, audit, approvals=approvals)
            after = await settle(client, spec)
            again = await attempt(client, spec, rec, audit, approvals=approvals)
            return [waiting, released, again], [start, before, after]
        finally:
            await client.disconnect()

    (waiting, released, again), (start, before, after) = asyncio.run(main())
    assert waiting.reasons == ("waiting for operator approval",) and before == start
    assert released.allowed and released.approved_by == "operator:alice"
    assert after == pytest.approx(start - 0.25, abs=1e-9)
    assert again.reasons == ("waiting for operator approval",), "one approval, one write"
    entries = audit.read()
    assert [e["action"] for e in entries] == ["approve", "write", "readback"]
    assert entries[0]["who"] == "operator:alice" and entries[1]["approved_by"] == "operator:alice"
    assert entries[0]["why"].endswith("by a signed-in operator (password)")


def test_a_write_the_plant_refuses_is_audited_as_failed(plant: PlantServer, tmp_path: Path) -> None:
    """A spec wider than the plant's own limits lets 302.2 K through the guard; the server
    answers BadOutOfRange, and the audit says so (the plant keeps its setpoint)."""
    spec = plant.spec
    wide = replace(
        spec, tags=tuple(replace(t, hi=310.0) if t.name == "Tc" else t for t in spec.tags)
    )
    audit = AuditLog(tmp_path)

    async def main() -> tuple[Decision, float]:
        client = await connect_client(plant.endpoint, Security())
        try:
            tc = spec.tag("Tc")
            assert tc.write_node is not None
            node = client.get_node(tc.write_node.resolve(await client.get_namespace_array()))
            await node.write_value(ua.Variant(301.9, ua.VariantType.Double))
            start = await settle(client, spec)
            decision = await attempt(client, wide, rec_for(wide, 302.2, current=301.9), audit)
            sp = (await tc_values(client, spec))[0]
            await node.write_value(ua.Variant(300.0, ua.VariantType.Double))  # back to nominal
            await settle(client, spec)
            return decision, sp - start
        finally:
            await client.disconnect()

    decision, moved = asyncio.run(main())
    assert not decision.allowed and "BadOutOfRange" in decision.why
    assert moved == 0.0
    (entry,) = audit.read()
    assert entry["action"] == "write" and entry["ok"] is False and "BadOutOfRange" in entry["why"]
