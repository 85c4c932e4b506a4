"""Simulated plants served over OPC-UA, seen by a real asyncua client on 127.0.0.1."""

from __future__ import annotations

import asyncio
import inspect
import math
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from asyncua import Client, Node, ua

from connectors.sim.address_space import trip_nodes
from connectors.sim.cstr import CSTR
from connectors.sim.plants import PLANTS, make_plant
from twin.spec import PlantSpec

pytestmark = pytest.mark.integration

KEL = (ord("K") << 16) | (ord("E") << 8) | ord("L")  # UNECE "KEL" (kelvin) as an OPC-UA UnitId
C38 = (ord("C") << 16) | (ord("3") << 8) | ord("8")  # UNECE "C38" (mole per litre)


async def tag_nodes(client: Client, spec: PlantSpec) -> dict[str, Node]:
    """Every spec tag's node, its ``nsu=`` id resolved against the server's NamespaceArray."""
    namespaces = await client.get_namespace_array()
    return {t.name: client.get_node(t.node.resolve(namespaces)) for t in spec.tags}


async def setpoint_node(client: Client, spec: PlantSpec, mv: str) -> Node:
    write_node = spec.tag(mv).write_node
    assert write_node is not None
    return client.get_node(write_node.resolve(await client.get_namespace_array()))


def double(value: float) -> ua.DataValue:
    return ua.DataValue(ua.Variant(value, ua.VariantType.Double))


async def wait_for(predicate: Any, timeout: float) -> bool:
    """Poll a predicate (plain or async) every 50 ms until it holds or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        held = predicate()
        if await held if inspect.isawaitable(held) else held:
            return True
        await asyncio.sleep(0.05)
    return False


class Recorder:
    """Subscription handler keeping (value, status, source timestamp) of every notification."""

    def __init__(self, names: dict[ua.NodeId, str]) -> None:
        self.names = names
        self.seen: dict[str, list[tuple[Any, ua.StatusCode, datetime]]] = {
            n: [] for n in names.values()
        }

    def datachange_notification(self, node: Node, val: Any, data: Any) -> None:
        dv = data.monitored_item.Value  # val alone has no status and no timestamp
        self.seen[self.names[node.nodeid]].append(
            (dv.Value.Value, dv.StatusCode, dv.SourceTimestamp)
        )


async def record_updates(url: str, spec: PlantSpec, seconds: float) -> Recorder:
    async with Client(url) as client:
        nodes = await tag_nodes(client, spec)
        recorder = Recorder({node.nodeid: name for name, node in nodes.items()})
        sub = await client.create_subscription(20, recorder)
        await sub.subscribe_data_change(list(nodes.values()))
        await asyncio.sleep(seconds)
        await sub.delete()
    return recorder


def test_cli_serves_every_tag_live_and_stops_cleanly_on_ctrl_c(
    plant_cli: Any, free_port: int
) -> None:
    spec = make_plant("cstr").spec
    with plant_cli("cstr", free_port, "--speed", "100") as server:
        assert server.url == f"opc.tcp://127.0.0.1:{free_port}/process-twin/cstr/"
        recorder = asyncio.run(record_updates(server.url, spec, seconds=1.5))
        code = server.interrupt()
    assert code == 0, server.stderr
    assert "Traceback" not in server.stderr
    assert "stopping after" in server.stderr
    now = datetime.now(UTC)
    for tag in spec.tags:
        updates = recorder.seen[tag.name]
        assert len(updates) >= 5, f"{tag.name}: {len(updates)} updates in 1.5 s at a step per 60 ms"
        for value, status, _ in updates:
            assert status.is_good(), f"{tag.name}: {status}"
            assert tag.lo <= value <= tag.hi, f"{tag.name} = {value} outside [{tag.lo}, {tag.hi}]"
        stamps = [ts for _, _, ts in updates[1:]]  # the first may be the time of the last change
        assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
        assert now - timedelta(seconds=10) < stamps[-1] <= now


def test_tags_carry_engineering_units_and_range(plant_servers: Any) -> None:
    cstr_server = plant_servers("cstr")
    spec = cstr_server.spec

    async def check() -> None:
        async with Client(cstr_server.endpoint) as client:
            nodes = await tag_nodes(client, spec)
            nodes["Tc.SP"] = await setpoint_node(client, spec, "Tc")
            for name, node in nodes.items():
                tag = spec.tag(name.removesuffix(".SP"))
                assert await node.read_data_type() == ua.NodeId(ua.ObjectIds.Double)
                rng = await (await node.get_child("0:EURange")).read_value()
                assert (rng.Low, rng.High) == (tag.lo, tag.hi), name
                eu = await (await node.get_child("0:EngineeringUnits")).read_value()
                assert eu.DisplayName.Text == tag.unit, name
            eu_t = await (await nodes["T"].get_child("0:EngineeringUnits")).read_value()
            assert (eu_t.NamespaceUri, eu_t.UnitId) == (
                "http://www.opcfoundation.org/UA/units/un/cefact",
                KEL,
            )
            eu_ca = await (await nodes["Ca"].get_child("0:EngineeringUnits")).read_value()
            assert eu_ca.UnitId == C38

    asyncio.run(check())


def test_coolant_setpoint_cools_the_reactor(plant_servers: Any) -> None:
    cstr_server = plant_servers("cstr")
    spec = cstr_server.spec

    async def check() -> tuple[float, float, float]:
        async with Client(cstr_server.endpoint) as client:
            nodes = await tag_nodes(client, spec)
            sp = await setpoint_node(client, spec, "Tc")
            t0 = sum([await nodes["T"].read_value() for _ in range(5)]) / 5
            try:
                await sp.write_value(double(296.0))  # 4 K colder coolant, inside [285, 302]

                async def cooled() -> bool:
                    return await nodes["T"].read_value() < t0 - 2.0

                assert await wait_for(cooled, timeout=5.0), "T did not fall 2 K within 5 s"
                return t0, await nodes["T"].read_value(), await nodes["Tc"].read_value()
            finally:
                await sp.write_value(double(300.0))

    t0, t1, tc = asyncio.run(check())
    assert t1 < t0 - 2.0
    assert tc == pytest.approx(296.0, abs=0.5)  # the measured MV follows its setpoint


def test_out_of_range_setpoints_are_refused_and_the_plant_keeps_its_mv(plant_servers: Any) -> None:
    cstr_server = plant_servers("cstr")
    spec = cstr_server.spec
    plant = cstr_server.plant

    async def check() -> None:
        async with Client(cstr_server.endpoint) as client:
            sp = await setpoint_node(client, spec, "Tc")
            await sp.write_value(double(299.0))
            for bad in (500.0, math.nan, 284.9, -math.inf):
                with pytest.raises(ua.uaerrors.BadOutOfRange):
                    await sp.write_value(double(bad))
            # one request, two items: each gets its own answer, the good one is applied
            results = await client.write_values(
                [sp, sp], [double(298.5), double(302.1)], raise_on_partial_error=False
            )
            assert [r.name for r in results] == ["Good", "BadOutOfRange"]
            target = cstr_server.steps + 3
            await wait_for(lambda: cstr_server.steps >= target, 3.0)
            assert await sp.read_value() == 298.5
            assert plant.u[plant.mv_names.index("Tc")] == 298.5  # not 302 (clamped) nor 500
            await sp.write_value(double(300.0))

    asyncio.run(check())


@pytest.mark.parametrize("name", sorted(PLANTS))
def test_every_plant_is_served_from_its_spec(plant_servers: Any, name: str) -> None:
    server = plant_servers(name)
    plant, spec = server.plant, server.spec

    async def check() -> None:
        async with Client(server.endpoint) as client:
            nodes = await tag_nodes(client, spec)
            first = {n: await node.read_data_value() for n, node in nodes.items()}
            await asyncio.sleep(0.3)  # about six steps
            for tag in spec.tags:
                dv = await nodes[tag.name].read_data_value()
                assert dv.StatusCode.is_good(), f"{name}.{tag.name}: {dv.StatusCode}"
                assert tag.lo <= dv.Value.Value <= tag.hi, f"{name}.{tag.name} = {dv.Value}"
                assert dv.SourceTimestamp > first[tag.name].SourceTimestamp
            namespaces = await client.get_namespace_array()
            tripped, reason = (client.get_node(r.resolve(namespaces)) for r in trip_nodes(spec))
            assert (await tripped.read_value(), await reason.read_value()) == (False, "")
            for mv in spec.mvs:
                sp = await setpoint_node(client, spec, mv.name)
                old = await sp.read_value()
                mid = (mv.lo + mv.hi) / 2
                await sp.write_value(double(mid))
                with pytest.raises(ua.uaerrors.BadOutOfRange):
                    await sp.write_value(double(mv.hi + mv.span))
                rng = await (await sp.get_child("0:EURange")).read_value()
                assert (rng.Low, rng.High) == (mv.lo, mv.hi)
                target = server.steps + 2
                await wait_for(lambda: server.steps >= target, 3.0)  # noqa: B023
                assert plant.u[plant.mv_names.index(mv.name)] == mid
                await sp.write_value(double(old))

    asyncio.run(check())


class BreakableCSTR(CSTR):
    """The CSTR whose model turns to NaN on demand: the integrator fails, step() raises."""

    broken = False

    def rhs(self, x: Any, u: Any, d: Any, p: Any, ops: Any) -> Any:
        dx = super().rhs(x, u, d, p, ops)
        return dx * math.nan if self.broken else dx


def test_failed_simulation_turns_tags_bad_and_keeps_serving(plant_server: Any) -> None:
    plant = BreakableCSTR(seed=3)
    spec = plant.spec
    with plant_server(plant, speed=100.0) as server:

        async def check() -> None:
            async with Client(server.endpoint) as client:
                nodes = await tag_nodes(client, spec)
                assert (await nodes["T"].read_data_value()).StatusCode.is_good()
                plant.broken = True
                assert await wait_for(lambda: server.failure is not None, 5.0)
                steps = server.steps
                namespaces = await client.get_namespace_array()
                tripped, reason = (client.get_node(r.resolve(namespaces)) for r in trip_nodes(spec))
                assert await tripped.read_value() is True
                assert "integration failed" in await reason.read_value()
                for name, node in nodes.items():
                    dv = await node.read_data_value(raise_on_bad_status=False)
                    assert dv.StatusCode.name == "BadDeviceFailure", name
                    assert dv.Value is None or dv.Value.Value is None  # no NaN on the wire
                await asyncio.sleep(0.3)
                assert server.steps == steps  # stepping stopped; the server still answers

        asyncio.run(check())
