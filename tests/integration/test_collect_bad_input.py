"""``twin collect`` given bad input: a clear one-line error, a non-zero exit, nothing left behind.

And the checks it makes of a good server: units and ranges against the spec (a warning, or a
refusal with ``--strict``), what the server said kept in ``server_info.json``, and a server that
stops without an ERROR traceback in the collector's log.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import collector_helpers as helpers
import pytest

from connectors.collect import SERVER_INFO, run_collect
from connectors.opcua import CollectorSettings
from twin.errors import ConnectorError
from twin.spec import NodeRef, builtin_spec, load_spec
from twin.store.historian import Historian

pytestmark = pytest.mark.integration

TAGS = helpers.tag_names(3)


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Iterator[str]:
    """The toy server (3 tags, no units published) in its own process: its endpoint."""
    port = helpers.free_port()
    log = tmp_path_factory.mktemp("toy") / "server.log"
    server = helpers.start_toy_server(port, len(TAGS), 0.1, log)
    try:
        yield f"opc.tcp://127.0.0.1:{port}/toy/"
    finally:
        helpers.kill(server)


def _collect(spec: Path | str, endpoint: str, historian: Path, *extra: str):
    started = time.monotonic()
    run = subprocess.run(
        helpers.collect_cmd(spec, endpoint, historian, *extra),
        cwd=helpers.REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return run, time.monotonic() - started


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if " ERROR " in line]


def test_nothing_listening_exits_2_after_the_connect_timeout(tmp_path: Path) -> None:
    endpoint = f"opc.tcp://127.0.0.1:{helpers.free_port()}/nobody/"
    run, took = _collect("cstr", endpoint, tmp_path / "hist", "--connect-timeout", "2")
    assert run.returncode == 2, run.stderr
    assert _errors(run.stderr) == [
        line for line in run.stderr.splitlines() if "no OPC-UA server answered" in line
    ]
    assert endpoint in run.stderr and "within 2 s" in run.stderr and "--wait" in run.stderr
    assert "Traceback" not in run.stderr
    assert 2 <= took < 20
    assert not (tmp_path / "hist").exists(), "no empty historian folder left behind"


def test_an_endpoint_without_opc_tcp_is_refused_before_connecting(tmp_path: Path) -> None:
    run, _ = _collect("cstr", "127.0.0.1:4840/process-twin/cstr/", tmp_path / "hist")
    assert run.returncode == 2
    assert "must start with opc.tcp://" in run.stderr and "cannot connect" not in run.stderr
    assert not (tmp_path / "hist").exists()


@pytest.mark.parametrize("duration", ["0", "-1", "nan"])
def test_a_duration_of_zero_or_less_is_refused(tmp_path: Path, duration: str) -> None:
    run, _ = _collect("cstr", "opc.tcp://127.0.0.1:1/x/", tmp_path / "h", f"--duration={duration}")
    assert run.returncode == 2 and "--duration" in run.stderr and "positive" in run.stderr
    assert not (tmp_path / "h").exists()


def test_a_historian_path_that_is_a_file_is_a_one_line_error(tmp_path: Path, toy: str) -> None:
    spec = helpers.toy_spec(tmp_path / "toy.toml", TAGS, 0.1)
    path = tmp_path / "hist"
    path.write_text("not a folder\n", encoding="utf-8")
    run, _ = _collect(spec, toy, path, "--duration", "1")
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    (error,) = _errors(run.stderr)
    assert f"historian {path} is a file" in error
    assert path.read_text(encoding="utf-8") == "not a folder\n"


def test_one_unknown_namespace_uri_skips_that_tag_only(tmp_path: Path, toy: str) -> None:
    spec = helpers.toy_spec(tmp_path / "toy.toml", TAGS, 0.1)
    text = spec.read_text(encoding="utf-8")
    spec.write_text(
        text.replace(f"nsu={helpers.TOY_URI};s=toy.x001", "nsu=urn:nobody;s=toy.x001"), "utf-8"
    )
    run, _ = _collect(spec, toy, tmp_path / "hist", "--duration", "3")
    assert run.returncode == 0, run.stderr
    assert "cannot monitor tag 'x001'" in run.stderr and "urn:nobody" in run.stderr
    assert "2 of 3 tags" in run.stderr
    rows = Historian(tmp_path / "hist").read(TAGS)
    assert set(rows["tag"]) == {"x000", "x002"}


def test_a_spec_the_server_serves_none_of_exits_2(tmp_path: Path, toy: str) -> None:
    spec = helpers.toy_spec(tmp_path / "toy.toml", TAGS, 0.1)
    spec.write_text(spec.read_text(encoding="utf-8").replace(";s=toy.", ";s=gone."), "utf-8")
    run, took = _collect(spec, toy, tmp_path / "hist", "--duration", "30")
    assert run.returncode == 2, run.stderr
    assert "serves none of the 3 tags" in run.stderr and took < 25
    assert [line for line in run.stderr.splitlines() if "cannot monitor tag" in line]


def test_waiting_for_a_server_that_never_comes_stops_at_duration(tmp_path: Path) -> None:
    endpoint = f"opc.tcp://127.0.0.1:{helpers.free_port()}/nobody/"
    run, took = _collect("cstr", endpoint, tmp_path / "hist", "--wait", "--duration", "3")
    assert run.returncode == 0 and took < 20, run.stderr
    assert "cannot connect" in run.stderr and "no OPC-UA server answered" not in run.stderr


def test_units_and_ranges_that_disagree_warn_or_refuse_with_strict(
    tmp_path: Path, plant_servers, caplog
) -> None:
    """A spec in degC, 0-150 against a server publishing K, 300-345: named per tag; refused
    with strict; what the server said kept beside the historian either way."""
    server = plant_servers("cstr")
    spec = builtin_spec("cstr")
    wrong = dataclasses.replace(spec.tag("T"), unit="degC", lo=0.0, hi=150.0, setpoint=50.0)
    spec = dataclasses.replace(spec, tags=(wrong, *spec.tags[1:]))
    with caplog.at_level(logging.WARNING, logger="connectors"):
        asyncio.run(run_collect(spec, server.endpoint, tmp_path / "warn", duration_s=1.5))
    warned = [r.getMessage() for r in caplog.records if r.getMessage().startswith("tag 'T'")]
    assert len(warned) == 1 and "'K'" in warned[0] and "does not meet" in warned[0]
    assert Historian(tmp_path / "warn").read(["T"]).height > 0

    strict = CollectorSettings(strict_units=True)
    with pytest.raises(ConnectorError, match=r"disagree with the spec for tags \['T'\]"):
        asyncio.run(run_collect(spec, server.endpoint, tmp_path / "strict", settings=strict))
    assert not list((tmp_path / "strict").glob("day=*")), "nothing collected"
    said = json.loads((tmp_path / "strict" / SERVER_INFO).read_text(encoding="utf-8"))
    assert said["tags"]["T"]["unit"] == "K" and said["tags"]["T"]["eu_range"] == [300.0, 345.0]
    assert said["tags"]["T"]["disagrees"] and not said["tags"]["Ca"]["disagrees"]


def test_a_server_that_stops_leaves_no_error_traceback(tmp_path: Path, caplog) -> None:
    """The server goes away under a running collector: a warning and a gap, no ERROR record."""
    from conftest import plant_server_thread

    from connectors.sim.plants import make_plant

    plant = make_plant("cstr", seed=2)
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(plant_server_thread(plant, speed=30.0))
        threading.Timer(2.0, stack.close).start()
        with caplog.at_level(logging.INFO):
            stats = asyncio.run(
                run_collect(plant.spec, server.endpoint, tmp_path / "hist", duration_s=5.0)
            )
    assert stats.stored > 0 and stats.gaps == 1
    ours = [r for r in caplog.records if not r.name.startswith("asyncio")]  # the server's loop
    assert not [r for r in ours if r.levelno >= logging.ERROR], caplog.text
    assert not [r for r in ours if r.exc_info and r.levelno >= logging.WARNING]
    assert any("lost the OPC-UA server" in r.getMessage() for r in ours)


def test_a_spec_tag_without_a_node_is_refused_by_collect(tmp_path: Path) -> None:
    spec = load_spec(helpers.toy_spec(tmp_path / "toy.toml", TAGS, 0.1))
    text = (tmp_path / "toy.toml").read_text(encoding="utf-8")
    node = str(NodeRef.parse(f"nsu={helpers.TOY_URI};s=toy.x002"))
    (tmp_path / "toy.toml").write_text(text.replace(f'node = "{node}"\n', ""), "utf-8")
    run, _ = _collect(tmp_path / "toy.toml", "opc.tcp://127.0.0.1:1/x/", tmp_path / "hist")
    assert run.returncode == 2 and "x002" in run.stderr and "node" in run.stderr, run.stderr
    assert spec.tag("x002").node is not None
