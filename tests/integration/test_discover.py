"""``twin spec discover`` against real OPC-UA servers: the simulated CSTR and the toy server."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path

import collector_helpers as helpers
import pytest

from connectors.collect import SERVER_INFO, run_collect
from twin.spec import builtin_spec, load_spec
from twin.store.historian import Historian

pytestmark = pytest.mark.integration


def _discover(endpoint: str, out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "twin.cli", "spec", "discover", "--endpoint", endpoint]
    return subprocess.run(
        [*cmd, "--out", str(out), *args],
        cwd=helpers.REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_discovered_cstr_spec_matches_the_hand_written_one_and_collects(
    tmp_path: Path, plant_servers
) -> None:
    """Every CSTR tag with its node, unit and range from the server; the MV found from its
    writable setpoint; the draft loads, says a CV is to be chosen, and collects as it is."""
    server = plant_servers("cstr")
    out = tmp_path / "cstr.toml"
    run = _discover(server.endpoint, out, "--sample", "0")
    assert run.returncode == 0, run.stderr
    assert "no CV chosen" in run.stdout and 'set role = "cv"' in run.stdout
    assert "Traceback" not in run.stderr

    draft, truth = load_spec(out), builtin_spec("cstr")
    assert draft.name == "cstr" and draft.tag_names == truth.tag_names
    for got in draft.tags:
        want = truth.tag(got.name)
        assert (got.node, got.unit, got.lo, got.hi) == (want.node, want.unit, want.lo, want.hi)
    assert [t.name for t in draft.mvs] == ["Tc"] and not draft.cvs
    assert draft.tag("Tc").write_node == truth.tag("Tc").write_node
    text = out.read_text(encoding="utf-8")
    assert re.search(r'role = "mv"  # guess', text) and "from EURange" in text

    # the draft is usable as it is: the collector stores every tag, and the server agrees
    asyncio.run(run_collect(draft, server.endpoint, tmp_path / "hist", duration_s=2.0))
    rows = Historian(tmp_path / "hist").read(draft.tag_names)
    assert set(rows["tag"]) == set(draft.tag_names)
    info = json.loads((tmp_path / "hist" / SERVER_INFO).read_text(encoding="utf-8"))
    assert set(info["tags"]) == set(draft.tag_names)
    assert all(t["unit"] and t["eu_range"] and not t["disagrees"] for t in info["tags"].values())


def test_include_and_root_narrow_the_draft(tmp_path: Path, plant_servers) -> None:
    """``--include`` keeps the variables whose name matches; ``--root`` starts at a folder."""
    server = plant_servers("cstr")
    node = builtin_spec("cstr").tag("T").node
    assert node is not None
    uri = node.namespace_uri
    run = _discover(
        server.endpoint, tmp_path / "t.toml", "--include", "T*", "--root", f"nsu={uri};s=cstr"
    )
    assert run.returncode == 0, run.stderr
    assert load_spec(tmp_path / "t.toml").tag_names == ["T", "Tc", "Tf"]


def test_a_server_without_units_gets_sampled_limits_and_fill_in_marks(tmp_path: Path) -> None:
    """The toy server publishes no EURange nor units: lo/hi come from sampled values (a guess,
    said so), the unit is marked FILL IN, and the draft still loads."""
    port = helpers.free_port()
    server = helpers.start_toy_server(port, 3, 0.1, tmp_path / "server.log")
    try:
        out = tmp_path / "toy.toml"
        run = _discover(f"opc.tcp://127.0.0.1:{port}/toy/", out, "--sample", "1")
        again = _discover(f"opc.tcp://127.0.0.1:{port}/toy/", out)
    finally:
        helpers.kill(server)
    assert run.returncode == 0, run.stderr
    spec = load_spec(out)
    assert spec.tag_names == helpers.tag_names(3) and not spec.mvs
    assert all(t.node is not None and t.node.namespace_uri == helpers.TOY_URI for t in spec.tags)
    text = out.read_text(encoding="utf-8")
    assert text.count("sampled values in [") == 6  # lo and hi of each tag
    assert text.count("FILL IN: the server publishes no EngineeringUnits") == 3
    assert "come from sampled values" in run.stdout and "unit of" in run.stdout
    # the toy server counts up by one every 0.1 s: a second of sampling spans several counts
    assert all(t.hi - t.lo > 3 for t in spec.tags)
    assert again.returncode == 2 and "pass --force" in again.stderr


def test_discover_refuses_an_endpoint_that_is_not_opc_tcp(tmp_path: Path) -> None:
    run = _discover("127.0.0.1:4840/plant", tmp_path / "x.toml")
    assert run.returncode == 2
    assert "must start with opc.tcp://" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "x.toml").exists()
