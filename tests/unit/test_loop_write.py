"""The loop's write-back wiring without a plant: what stops writes (a changed spec or model, no
session), and the ``twin run`` options it shares with ``twin collect``. The integration test
``tests/integration/test_run_write.py`` writes to a real plant server."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from connectors.opcua_write import OpcUaMoveWriter
from twin.cli import build_parser, main
from twin.cli.collect import security_from_args, settings_from_args
from twin.loop.ports import WriteResult
from twin.loop.step import Step, hold_recommendation
from twin.loop.writer import (
    MODEL_CHANGED,
    SPEC_CHANGED,
    FileWatch,
    LoopWatchdog,
    make_writer,
)
from twin.spec import Tag, builtin_spec, load_spec, spec_to_toml

SPEC = builtin_spec("cstr")


def test_a_changed_spec_file_is_reported_latched_but_a_touch_is_not(tmp_path: Path) -> None:
    spec_file = tmp_path / "cstr.toml"
    spec_file.write_text(spec_to_toml(SPEC), encoding="utf-8")
    watch = FileWatch.for_loop(load_spec(spec_file), None)
    assert watch.paths == [spec_file] and watch.changed() == ()
    os.utime(spec_file, ns=(1, 1))  # same content, other mtime
    assert watch.changed() == ()
    original = spec_file.read_text(encoding="utf-8")
    spec_file.write_text(original.replace("rate_limit = 0.5", "rate_limit = 5.0"), "utf-8")
    (reason,) = watch.changed()
    assert reason.startswith(SPEC_CHANGED) and str(spec_file) in reason and "edited" in reason
    spec_file.write_text(original, encoding="utf-8")  # changed back: writes stay off
    assert watch.changed() == (reason,)


def test_a_replaced_or_removed_model_file_stops_writes(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    for name in ("model.pt", "config.json", "spec.toml"):
        (model / name).write_bytes(name.encode())
    watch = FileWatch.for_loop(SPEC, model)  # a built-in spec's file is watched too
    assert set(watch.paths) >= {model / "model.pt", model / "config.json"}
    (model / "model.pt").write_bytes(b"retrained weights")
    assert [r for r in watch.changed() if r.startswith(MODEL_CHANGED)] == [
        f"{MODEL_CHANGED} ({model / 'model.pt'} edited): writes stay off until `twin run` restarts"
    ]
    other = FileWatch.for_loop(SPEC, model)
    (model / "config.json").unlink()
    assert any("config.json removed" in r for r in other.changed())


def test_the_loop_watchdog_holds_for_a_changed_file_before_the_heartbeats(tmp_path: Path) -> None:
    now = [0.0]
    path = tmp_path / "spec.toml"
    path.write_text("a", encoding="utf-8")
    dog = LoopWatchdog(3.0, FileWatch({SPEC_CHANGED: [path]}), clock=lambda: now[0])
    dog.beat("collector")
    dog.beat("twin")
    assert dog.healthy()
    path.write_text("b", encoding="utf-8")
    now[0] = 5.0
    reasons = dog.reasons()
    assert reasons[0].startswith(SPEC_CHANGED) and len(reasons) == 3  # + both heartbeats late


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_no_plant_session_is_an_audited_refusal_not_an_error(tmp_path: Path) -> None:
    url = f"opc.tcp://127.0.0.1:{closed_port()}/cstr"
    plant = OpcUaMoveWriter(url)
    writer = make_writer(
        SPEC, plant, tmp_path, interval_s=1.0, stale_after_s=3.0, flush_every_s=0.5
    )
    now = datetime.now(UTC)
    rec = hold_recommendation(SPEC, now, "converged", {"Tc": 300.0}, {"T": 324.5}, 4)
    step = Step(rec, 1.0, 0.2, {"Tc": 300.0}, now)

    async def go() -> None:
        decision = await writer.on_step(step)
        assert not decision.allowed
        await writer.close()

    asyncio.run(go())
    (entry,) = writer.audit.read()
    assert entry["action"] == "refuse" and entry["tag"] == "Tc" and entry["ok"] is False
    assert "no OPC-UA connection to write with" in entry["why"]
    assert writer.counts.refused == 1 and writer.counts.sessions == 0


class FakePlant:
    """A move writer without a server: the plant takes every value it is given."""

    endpoint = "fake://cstr"

    def __init__(self) -> None:
        self.connected = False
        self.opened = 0
        self.written: list[tuple[str, float]] = []

    async def open(self, timeout_s: float) -> None:
        self.connected = True
        self.opened += 1

    async def read_measured(self, tags: Sequence[Tag]) -> dict[str, float]:
        return {t.name: 300.0 for t in tags}

    async def write(self, moves: Sequence[tuple[Tag, float]]) -> list[WriteResult]:
        self.written += [(t.name, v) for t, v in moves]
        return [WriteResult(t.name, v, None, v) for t, v in moves]

    async def close(self) -> None:
        self.connected = False


def test_a_lost_session_is_reopened_at_the_next_step(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    plant = FakePlant()
    writer = make_writer(
        SPEC, plant, tmp_path, interval_s=1.0, stale_after_s=3.0, flush_every_s=0.5
    )

    async def go() -> None:
        for lost in (False, True):
            if lost:
                plant.connected = False  # the server dropped the session
            now = datetime.now(UTC)
            held = hold_recommendation(SPEC, now, "converged", {"Tc": 300.0}, {"T": 324.5}, 4)
            step = Step(replace(held, success=True), 1.0, 0.2, {"Tc": 300.0}, now)
            decision = await writer.on_step(step)
            assert decision.allowed, decision.reasons
        await writer.close()

    asyncio.run(go())
    assert plant.opened == writer.counts.sessions == 2 and writer.counts.written == 2
    assert plant.written == [("Tc", 300.0), ("Tc", 300.0)] and not plant.connected
    assert "write-back session to fake://cstr lost; opening a new one" in caplog.text
    assert [e["action"] for e in writer.audit.read()] == ["write", "readback"] * 2


def test_make_writer_fits_its_limits_to_the_loop_timing(tmp_path: Path) -> None:
    writer = make_writer(
        SPEC, OpcUaMoveWriter("opc.tcp://x:1"), tmp_path,
        interval_s=6.0, stale_after_s=20.0, flush_every_s=2.0, max_error_ratio=2.5, rate_slack=0.2,
    )  # fmt: skip
    guard = writer.guard
    assert guard.max_age_s == 20.0 and guard.max_error_ratio == 2.5 and guard.rate_slack == 0.2
    assert guard.max_rec_age_s == pytest.approx(32.0)  # stale limit + 2 intervals
    assert writer.watchdog.max_lag_s == 18.0  # 3 intervals
    assert writer.approvals is None


RUN = ["run", "--spec", "cstr", "--endpoint", "opc.tcp://127.0.0.1:4840/cstr"]
RUN += ["--model", "m", "--historian", "h"]


def test_run_takes_every_connection_option_of_collect(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n", encoding="utf-8")
    secret.chmod(0o600)
    options = ["--user", "op", "--password-file", str(secret), "--max-backoff", "3"]
    options += ["--publishing-interval", "0.2", "--chunk-size", "50"]
    parser = build_parser()
    run = parser.parse_args([*RUN, *options, "--write", "--approve", "--max-error-ratio", "2"])
    collect = parser.parse_args(
        ["collect", "--spec", "cstr", "--endpoint", "opc.tcp://h:1/c", "--historian", "h", *options]
    )
    assert run.write and run.approve and run.max_error_ratio == 2.0 and run.rate_slack == 0.0
    sec = security_from_args(run, env={})
    assert sec == security_from_args(collect, env={}) and sec.password == "s3cret"
    assert settings_from_args(run) == settings_from_args(collect)
    assert settings_from_args(run).backoff_max_s == 3.0
    defaults = parser.parse_args(RUN)
    assert not defaults.write and not defaults.approve and defaults.max_error_ratio == 3.0


def test_run_refuses_approval_mode_without_write(caplog: pytest.LogCaptureFixture) -> None:
    assert main([*RUN, "--approve"]) == 2
    assert "--approve releases writes to the plant: give --write too" in caplog.text
