"""The OPC-UA collector against real servers: the simulated plant, a toy server, a dead port."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from pathlib import Path

import collector_helpers as helpers
import duckdb
import polars as pl
import pytest
from asyncua import Server, ua
from asyncua.crypto.permission_rules import User, UserRole

from connectors.collect import run_collect
from connectors.opcua import CollectorSettings, OpcUaCollector
from connectors.opcua_security import PASSWORD_ENV, Security
from connectors.source import Gap, PumpStats
from twin.cli import build_parser
from twin.errors import ConnectorError
from twin.spec import builtin_spec, load_spec
from twin.store.historian import Historian
from twin.store.liveness import ALIVE, is_liveness

pytestmark = pytest.mark.integration

SPEED = 30.0  # CSTR: 6 s sample period / 30 -> 5 samples per second per tag


@pytest.mark.slow
def test_twin_collect_stores_every_plant_tag_at_its_rate(tmp_path: Path) -> None:
    """``twin plant serve`` + ``twin collect``: every tag at the served rate, readable as is."""
    port = helpers.free_port()
    spec = builtin_spec("cstr")
    server = helpers.start(
        [
            sys.executable,
            "-m",
            "twin.cli",
            "plant",
            "serve",
            "cstr",
            "--port",
            str(port),
            "--speed",
            str(SPEED),
        ],
        tmp_path / "server.log",
    )
    try:
        helpers.wait_port(port)
        store = tmp_path / "hist"
        run = subprocess.run(
            helpers.collect_cmd(
                "data/plants/cstr.toml",
                f"opc.tcp://127.0.0.1:{port}/process-twin/cstr/",
                store,
                "--duration",
                "5",
                "--log-every",
                "2",
            ),
            cwd=helpers.REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        helpers.kill(server)
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    assert "received" in run.stderr and "stored" in run.stderr and "dropped 0" in run.stderr

    rows = Historian(store).read(spec.tag_names)
    assert set(rows["tag"].unique()) == set(spec.tag_names)
    expected = SPEED / spec.sample_period
    for tag, part in rows.sort("ts").group_by("tag"):
        span = (part["ts"].max() - part["ts"].min()).total_seconds()
        rate = (part.height - 1) / span
        assert abs(rate - expected) <= 0.1 * expected, (tag, rate, expected)
    assert (rows["quality"] == "good").all()

    # the store is plain Hive-partitioned Parquet: other tools read it as is, day column and all
    # (the samples and the collector's liveness marks, tag "__alive__": twin.store.liveness)
    stored = Historian(store).read()
    assert set(stored.filter(is_liveness(pl.col("tag")))["tag"]) == {ALIVE}
    pattern = f"{store}/**/*.parquet"
    polars_rows = pl.scan_parquet(pattern, hive_partitioning=True).collect()
    assert polars_rows.height == stored.height
    days = rows["ts"].dt.date().cast(pl.String).unique().sort().to_list()
    assert polars_rows["day"].cast(pl.String).unique().sort().to_list() == days
    count = duckdb.sql(
        f"select count(*), count(distinct tag), min(day)::varchar "
        f"from read_parquet('{pattern}', hive_partitioning=true)"
    ).fetchall()[0]
    assert count == (stored.height, len(spec.tags) + 1, days[0])


async def _drain(
    collector: OpcUaCollector, seconds: float | None = None
) -> tuple[pl.DataFrame, list[Gap]]:
    """Everything ``collector`` streams (for ``seconds`` or until stopped): rows and gaps."""
    if seconds is not None:
        asyncio.get_running_loop().call_later(seconds, collector.stop)
    frames: list[pl.DataFrame] = []
    gaps: list[Gap] = []
    async for item in collector.stream():
        (gaps if isinstance(item, Gap) else frames).append(item)  # type: ignore[arg-type]
    rows = pl.concat(frames) if frames else pl.DataFrame(schema={"tag": pl.String()})
    # the samples; the session's liveness marks (twin.store.liveness) are tested on their own
    return rows.filter(~is_liveness(pl.col("tag"))), gaps


def test_bad_and_uncertain_status_reach_the_historian_with_their_codes(tmp_path: Path) -> None:
    """A sensor reporting Bad / Uncertain: the rows keep the raw code and the quality class."""
    tags = helpers.tag_names(3)
    spec = load_spec(helpers.toy_spec(tmp_path / "toy.toml", tags, 0.1))
    bad = {"x001": ua.StatusCodes.BadSensorFailure, "x002": ua.StatusCodes.UncertainLastUsableValue}
    port = helpers.free_port()

    async def main() -> None:
        stop, ready = asyncio.Event(), asyncio.Event()
        server = asyncio.create_task(
            helpers.toy_server(port, tags, 0.1, bad=bad, stop=stop, ready=ready)
        )
        await ready.wait()
        await run_collect(
            spec, f"opc.tcp://127.0.0.1:{port}/toy/", tmp_path / "hist", duration_s=2.0
        )
        stop.set()
        await server

    asyncio.run(main())
    rows = Historian(tmp_path / "hist").read(tags)
    by_tag = {tag: part for (tag,), part in rows.group_by("tag")}
    assert (by_tag["x000"]["quality"] == "good").all()
    for tag, code, quality in (
        ("x001", ua.StatusCodes.BadSensorFailure, "bad"),
        ("x002", ua.StatusCodes.UncertainLastUsableValue, "uncertain"),
    ):
        flagged = by_tag[tag].filter(pl.col("status") == code)
        assert flagged.height >= 5, tag  # every other update of ~20 is flagged
        assert (flagged["quality"] == quality).all(), tag
        # a Bad sample came without a value, an Uncertain one with its value
        assert flagged["value"].is_null().all() == (quality == "bad"), tag
        assert (by_tag[tag].filter(pl.col("status") == 0)["quality"] == "good").all()


def test_dead_endpoint_is_retried_with_backoff_and_stops_at_duration(tmp_path: Path) -> None:
    """Nothing listens, and --wait: a clear retry message naming the endpoint, no traceback,
    exit 0 at the end of --duration (without --wait: test_collect_bad_input.py)."""
    endpoint = f"opc.tcp://127.0.0.1:{helpers.free_port()}/nobody/"
    started = time.monotonic()
    run = subprocess.run(
        helpers.collect_cmd("cstr", endpoint, tmp_path / "hist", "--duration", "3", "--wait"),
        cwd=helpers.REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert time.monotonic() - started < 15
    retries = [line for line in run.stderr.splitlines() if "cannot connect" in line]
    assert len(retries) >= 2 and all(endpoint in line for line in retries), run.stderr
    assert "retrying in 0.5 s" in retries[0] and "retrying in 1.0 s" in retries[1]
    assert "Traceback" not in run.stderr
    assert "received 0, stored 0, dropped 0" in run.stderr


def test_subscribes_in_chunks_the_server_accepts_and_follows_renumbered_namespaces(
    tmp_path: Path, caplog
) -> None:
    """A server limiting items per call and per subscription, restarted with its namespace
    at another index: every tag still arrives, from the right node."""
    tags = helpers.tag_names(40)
    spec = load_spec(helpers.toy_spec(tmp_path / "toy.toml", tags, 0.1))
    port = helpers.free_port()
    settings = CollectorSettings(
        chunk_size=500, backoff_initial_s=0.1, backoff_max_s=0.2, connect_timeout_s=None
    )  # the server starts beside the collector: wait for it however loaded the machine

    async def main() -> tuple[pl.DataFrame, list[Gap]]:
        collector = OpcUaCollector(spec, f"opc.tcp://127.0.0.1:{port}/toy/", settings=settings)
        drained = asyncio.create_task(_drain(collector))
        for extra_namespaces in (0, 3):  # the second server puts the plant at another index
            stop, ready = asyncio.Event(), asyncio.Event()
            server = asyncio.create_task(
                helpers.toy_server(
                    port,
                    tags,
                    0.1,
                    max_items_per_call=8,
                    max_items_per_subscription=15,
                    extra_namespaces=extra_namespaces,
                    stop=stop,
                    ready=ready,
                )
            )
            await ready.wait()
            await asyncio.sleep(1.5)
            if extra_namespaces:
                collector.stop()
                await drained
            stop.set()
            await server
        return drained.result()

    with caplog.at_level(logging.INFO, logger="connectors"):
        rows, gaps = asyncio.run(main())
    assert caplog.text.count("40 of 40 tags in 3 subscription(s)") == 2, caplog.text
    # the toy server writes k + index/1000 to tag x<index>: a mixed-up node would show
    index = rows["tag"].str.slice(1).cast(pl.Int64)
    assert ((rows["value"] * 1000).round() % 1000 == index).all()
    late = rows.filter(pl.col("ts") > gaps[0].end)
    assert set(late["tag"]) == set(tags), "after the restart every tag flows again"
    assert set(rows.filter(pl.col("ts") < gaps[0].start)["tag"]) == set(tags)
    assert len(gaps) == 1 and gaps[0].tags == tuple(tags)


def test_user_password_and_certificate_reach_a_secure_server(tmp_path: Path, caplog) -> None:
    """--user/$TWIN_OPCUA_PASSWORD and --cert/--key against a server offering only
    Basic256Sha256 SignAndEncrypt: data with both; a clear error for a wrong password."""
    secret = "s3cret-pw"

    class Users:
        def get_user(self, iserver, username=None, password=None, certificate=None):
            return User(role=UserRole.User) if (username, password) == ("op", secret) else None

    server_cert, server_key = helpers.self_signed(
        tmp_path / "server", "urn:toy:server", server=True
    )
    cert, key = helpers.self_signed(tmp_path / "client", helpers.CLIENT_URI, server=False)
    argv = ["collect", "--spec", "cstr", "--endpoint", "opc.tcp://x:4840", "--historian", "h"]
    args = build_parser().parse_args(
        [*argv, "--user", "op", "--cert", str(cert), "--key", str(key)]
    )
    options = {
        "user": args.user,
        "cert": args.cert,
        "key": args.key,
        "policy": args.security_policy,
        "mode": args.security_mode,
    }
    good = Security.from_options(**options, env={PASSWORD_ENV: secret})
    assert (good.policy, good.mode, good.password) == ("Basic256Sha256", "SignAndEncrypt", secret)
    assert secret not in repr(good)
    wrong = Security.from_options(**options, env={PASSWORD_ENV: "guess"})
    plain = Security(user="op", password=secret)  # right password, but no certificate
    tags = helpers.tag_names(2)
    spec = load_spec(helpers.toy_spec(tmp_path / "toy.toml", tags, 0.1))
    endpoint = f"opc.tcp://127.0.0.1:{helpers.free_port()}/toy/"
    fast = CollectorSettings(backoff_initial_s=0.2, backoff_max_s=0.2)

    async def main() -> tuple[pl.DataFrame, pl.DataFrame]:
        server = Server(user_manager=Users())
        await server.init()
        server.set_endpoint(endpoint)
        await server.set_application_uri("urn:toy:server")
        server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
        server.set_identity_tokens([ua.UserNameIdentityToken])
        await server.load_certificate(str(server_cert))
        await server.load_private_key(str(server_key))
        idx = await server.register_namespace(helpers.TOY_URI)
        for name in tags:
            await server.nodes.objects.add_variable(ua.NodeId(f"toy.{name}", idx), name, 1.5)
        async with server:
            with pytest.raises(ConnectorError, match="refused user 'op'") as refused:
                await _drain(OpcUaCollector(spec, endpoint, security=wrong), 3.0)
            assert "guess" not in str(refused.value)
            unsigned, _ = await _drain(
                OpcUaCollector(spec, endpoint, security=plain, settings=fast), 1.0
            )
            rows, _ = await _drain(OpcUaCollector(spec, endpoint, security=good), 1.0)
        return unsigned, rows

    with caplog.at_level(logging.DEBUG):
        unsigned, rows = asyncio.run(main())
    assert unsigned.is_empty(), "the server offers no unencrypted session"
    assert "cannot connect to OPC-UA server" in caplog.text
    assert set(rows["tag"]) == set(tags)
    ours = [r.getMessage() for r in caplog.records if r.name.startswith(("connectors", "twin"))]
    assert ours and not any(secret in m for m in ours)


def test_certificate_options_select_a_signed_and_encrypted_session(tmp_path: Path) -> None:
    """--cert/--key alone mean Basic256Sha256 + SignAndEncrypt; a missing file is named."""
    cert, key = tmp_path / "client.der", tmp_path / "client.pem"
    cert.write_bytes(b"x")
    key.write_bytes(b"x")
    argv = ["collect", "--spec", "cstr", "--endpoint", "opc.tcp://x:4840", "--historian", "h"]
    args = build_parser().parse_args([*argv, "--cert", str(cert), "--key", str(key)])
    sec = Security.from_options(
        user=None,
        cert=args.cert,
        key=args.key,
        policy=args.security_policy,
        mode=args.security_mode,
        env={},
    )
    assert (sec.policy, sec.mode, sec.cert, sec.key) == (
        "Basic256Sha256",
        "SignAndEncrypt",
        cert,
        key,
    )
    args = build_parser().parse_args(
        [
            *argv,
            "--cert",
            str(tmp_path / "nope.der"),
            "--key",
            str(key),
            "--security-policy",
            "Aes256Sha256RsaPss",
            "--security-mode",
            "Sign",
        ]
    )
    with pytest.raises(ConnectorError, match=r"certificate file not found: .*nope\.der"):
        Security.from_options(
            user=None,
            cert=args.cert,
            key=args.key,
            policy=args.security_policy,
            mode=args.security_mode,
            env={},
        )
    with pytest.raises(ConnectorError, match="needs a client certificate"):
        Security(policy="Basic256Sha256", mode="Sign")


def test_notifications_lost_in_a_full_client_queue_are_counted(tmp_path: Path) -> None:
    """A client queue smaller than one publish: the drops are counted, in the pump stats too."""
    tags = helpers.tag_names(30)
    spec = load_spec(helpers.toy_spec(tmp_path / "toy.toml", tags, 0.1))
    port = helpers.free_port()
    stats = PumpStats()
    settings = CollectorSettings(client_queue_size=4, publishing_interval_s=0.3)

    async def main() -> OpcUaCollector:
        stop, ready = asyncio.Event(), asyncio.Event()
        server = asyncio.create_task(helpers.toy_server(port, tags, 0.1, stop=stop, ready=ready))
        await ready.wait()
        collector = OpcUaCollector(
            spec, f"opc.tcp://127.0.0.1:{port}/toy/", settings=settings, stats=stats
        )
        rows, _ = await _drain(collector, 1.5)
        stop.set()
        await server
        assert rows.height == collector.counters.received
        return collector

    collector = asyncio.run(main())
    # each publish carries ~3 updates of 30 tags, and the queue holds 4 of them
    assert collector.counters.dropped > 5 * collector.counters.received
    assert stats.dropped == collector.counters.dropped


def test_a_tag_that_holds_still_keeps_reaching_the_historian(tmp_path: Path) -> None:
    """An MV parked at its setpoint never changes value; its samples must still be stored, or
    the frame would mark it stale and the twin would refuse the history."""
    from conftest import plant_server_thread

    from connectors.sim.plants import make_plant

    plant = make_plant("cstr", noise=False)  # every tag constant at the steady state
    with plant_server_thread(plant, speed=30.0) as server:
        asyncio.run(run_collect(plant.spec, server.endpoint, tmp_path / "hist", duration_s=3.0))
    rows = Historian(tmp_path / "hist").read(plant.spec.tag_names)
    counts = dict(rows.group_by("tag").len().iter_rows())
    # ~15 server steps in 3 s at 0.2 s each: every tag, including the constant Tc, most of them
    assert all(counts.get(t, 0) >= 8 for t in plant.spec.tag_names), counts
    assert rows.filter(pl.col("tag") == "Tc")["value"].n_unique() == 1  # it did hold still
