"""MV timing, stated once: the MV value at row t was held over the interval that ends at row t.

A first-order plant with no dead time, ``y[k] = A y[k-1] + B u[k]``, where ``u[k]`` is the MV
held from row k-1 to row k, is recorded into a historian the way the collector stores it. A move
made at row t is stored at row t+1 and shows in the CV of row t+1, in the frames, in the training
windows and in a trained twin's forecast. The same history exported as "the MV applied from this
row on" and imported for a spec that says ``mv_timing = "from_row"`` gives the same frames and
windows; read as the default it is one row off, which is what the spec field is for.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from connectors.files import import_file
from twin.control.whatif import current_mvs
from twin.errors import SpecError
from twin.loop.step import recent_frame
from twin.model.dataset import Normalizer, Windows, frame_to_array, frame_ts, make_windows
from twin.model.network import TwinConfig
from twin.model.twin import Twin
from twin.spec import MV_TIMING, MvTiming, PlantSpec, parse_spec
from twin.store.historian import Historian

SPEC_TOML = """
[plant]
name = "first_order"
sample_period_s = 60.0
{timing}

[[tags]]
name = "y"
node = "ns=2;s=y"
unit = "m"
role = "cv"
lo = -5.0
hi = 25.0
setpoint = 10.0
weight = 1.0

[[tags]]
name = "u"
node = "ns=2;s=u"
unit = "%"
role = "mv"
lo = 0.0
hi = 10.0
rate_limit = 10.0
write_node = "ns=2;s=u.SP"
"""
A, B = 0.7, 0.6  # pole and input gain of one sample: steady-state gain 2, no dead time
PERIOD = timedelta(seconds=60)
T0 = datetime(2026, 1, 1, tzinfo=UTC)
WINDOW, HORIZON = 4, 5


def spec_with(timing: str | None = None, source: str = "first_order.toml") -> PlantSpec:
    line = "" if timing is None else f'mv_timing = "{timing}"'
    return parse_spec(SPEC_TOML.format(timing=line), source=source)


def run(n: int, seed: int, noise: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """``y [n]`` and the moves ``u [n + 1]``: ``u[k]`` is held from row k-1 to row k, acting on
    ``y[k]``; ``u[n]`` is the move made at the last row (it has acted on nothing yet)."""
    rng = np.random.default_rng(seed)
    u = np.repeat(rng.uniform(0.0, 10.0, n // 8 + 2), 8)[: n + 1]
    y, x = np.empty(n), 2.0 * u[0]
    for k in range(n):
        x = A * x + B * u[k]
        y[k] = x + noise * rng.standard_normal()
    return y, u


def stamps(n: int) -> list[datetime]:
    return [T0 + k * PERIOD for k in range(n)]


def record(store: Historian, y: np.ndarray, u: np.ndarray) -> None:
    """Store the run as the collector does: at row k the CV and the MV held up to row k."""
    ts = stamps(len(y))
    rows = pl.DataFrame(
        {"tag": ["y"] * len(y) + ["u"] * len(y), "ts": ts + ts, "value": [*y, *u[: len(y)]]},
        schema={"tag": pl.String, "ts": pl.Datetime("us", "UTC"), "value": pl.Float64},
    )
    store.append(rows)


def export_from_row(path: Path, y: np.ndarray, u: np.ndarray) -> Path:
    """The same run as a wide CSV of "the MV applied from this row on": ``u[k + 1]`` at row k."""
    ts = [t.isoformat().replace("+00:00", "Z") for t in stamps(len(y))]
    pl.DataFrame({"ts": ts, "y": y, "u": u[1:]}).write_csv(path)
    return path


def frame(store: Historian, spec: PlantSpec, n: int) -> pl.DataFrame:
    return store.frame(spec, T0, T0 + n * PERIOD)


def windows(f: pl.DataFrame, spec: PlantSpec, norm: Normalizer) -> Windows:
    values, ok = frame_to_array(f, spec)
    return make_windows(values, ok, spec, WINDOW, HORIZON, norm, ts=frame_ts(f))


# --- the convention ---------------------------------------------------------------------------


def test_the_convention_is_to_row_and_old_specs_keep_it() -> None:
    assert MV_TIMING is MvTiming.TO_ROW
    spec = spec_with()
    assert spec.mv_timing is MvTiming.TO_ROW
    assert "mv_timing" not in spec.to_dict()["plant"]  # written as before
    assert spec_with("from_row").to_dict()["plant"]["mv_timing"] == "from_row"


def test_a_step_made_at_row_t_shows_in_the_cv_of_row_t_plus_1(tmp_path: Path) -> None:
    """No dead time: the move made at row s is stored at s+1 and moves y at s+1, not before."""
    s, n = 20, 40
    u = np.full(n + 1, 2.0)
    u[s + 1 :] = 7.0  # the move made at row s: held from row s to row s+1
    x, y = 2.0 * u[0], np.empty(n)  # at rest: y = 2 u
    for k in range(n):
        x = A * x + B * u[k]
        y[k] = x
    store = Historian(tmp_path / "h")
    record(store, y, u)
    spec = spec_with()
    f = frame(store, spec, n)
    fy, fu = f.get_column("y").to_numpy(), f.get_column("u").to_numpy()
    assert fu[s] == 2.0 and fu[s + 1] == 7.0
    assert fy[s] == pytest.approx(4.0) and fy[s + 1] == pytest.approx(4.0 + B * 5.0)
    # the window whose last row is s pairs the move with the first future CV
    norm = Normalizer(mean=np.zeros(2), scale=np.ones(2))
    w = windows(f, spec, norm)
    i = int(np.flatnonzero(w.ts == np.datetime64(T0.replace(tzinfo=None) + s * PERIOD, "us"))[0])
    assert w.past[i, -1, 1] == 2.0 and w.future[i, 0, 1] == 7.0
    assert w.future[i, 0, 0] - w.past[i, -1, 0] == pytest.approx(B * 5.0, rel=1e-5)


def test_a_twin_forecasts_the_step_at_the_next_row(tmp_path: Path) -> None:
    """Trained on the recorded history, the twin's step-1 forecast answers the first planned move."""
    n = 1200
    y, u = run(n, seed=1)
    store = Historian(tmp_path / "h")
    record(store, y, u)
    spec = spec_with()
    cfg = TwinConfig(
        window=WINDOW,
        horizon=HORIZON,
        latent=4,
        hidden=16,
        ensemble=2,
        batch=64,
        lr=5e-3,
        minutes=5.0,  # the epoch count ends training
        max_epochs=15,
        patience=15,
        seed=0,
    )
    twin = Twin.fit(spec, frame(store, spec, n), cfg, progress=False)
    # a history at rest with the MV at 3 (y at 6), then a step of +4 made now, or none, or later
    rest = pl.DataFrame(
        {"ts": stamps(WINDOW + 2), "y": [6.0] * (WINDOW + 2), "u": [3.0] * (WINDOW + 2)},
        schema={"ts": pl.Datetime("us", "UTC"), "y": pl.Float64, "u": pl.Float64},
    )
    hold = twin.forecast(rest, np.full(HORIZON, 3.0)).tag("y")[0]
    now = twin.forecast(rest, np.full(HORIZON, 7.0)).tag("y")[0]
    later = twin.forecast(rest, np.r_[3.0, np.full(HORIZON - 1, 7.0)]).tag("y")[0]
    step = now - hold  # truth: B * 4 at row t+1, (1 + A) B * 4 at row t+2
    assert step[0] == pytest.approx(B * 4.0, rel=0.3), step
    assert step[1] == pytest.approx((1 + A) * B * 4.0, rel=0.3), step
    assert abs(later[0] - hold[0]) < 0.1 * B * 4.0  # a move made at row t+1 is not seen at t+1


# --- the other convention, stated in the spec ---------------------------------------------------


def test_a_from_row_export_gives_the_same_frames_and_windows(tmp_path: Path) -> None:
    n = 200
    y, u = run(n, seed=2)
    canonical = Historian(tmp_path / "canonical")
    record(canonical, y, u)
    exported = export_from_row(tmp_path / "moves.csv", y, u)
    imported = Historian(tmp_path / "imported")
    from_row = spec_with("from_row", source=str(tmp_path / "from_row.toml"))
    import_file(exported, from_row, imported)
    spec = spec_with()

    want, got = frame(canonical, spec, n), frame(imported, from_row, n)
    assert got.get_column("u__state")[0] == "missing"  # the move held before the first row
    assert want.slice(1).equals(got.slice(1))
    values, _ = frame_to_array(want, spec)
    norm = Normalizer.fit(values)
    w_want, w_got = windows(want, spec, norm), windows(got, from_row, norm)
    assert len(w_got) == len(w_want) - 1 and w_got.dropped == 1
    np.testing.assert_array_equal(w_got.past, w_want.past[1:])
    np.testing.assert_array_equal(w_got.future, w_want.future[1:])
    np.testing.assert_array_equal(w_got.ts, w_want.ts[1:])

    # the controller and what-if read the current MV from the same frames: the value held up to now
    newest = T0 + (n - 1) * PERIOD
    live = recent_frame(imported, from_row, 10, newest)
    assert live.get_column("u")[-1] == u[n - 1]
    assert current_mvs(live, from_row).tolist() == [u[n - 1]]

    # read as the default, the same export is one row early: the one-step-off of the issue
    wrong = Historian(tmp_path / "wrong")
    import_file(exported, spec, wrong)
    off = frame(wrong, spec, n).get_column("u").to_numpy()
    np.testing.assert_array_equal(off[:-1], want.get_column("u").to_numpy()[1:])


def test_from_row_only_moves_samples_stamped_on_a_row(tmp_path: Path) -> None:
    """A collector's MV sample stamped between rows lands on the same row under either timing."""
    store = Historian(tmp_path / "h")
    rows = [("y", T0 + k * PERIOD, float(k)) for k in range(4)]
    rows += [("u", T0 - PERIOD, 1.0), ("u", T0 + PERIOD, 2.0), ("u", T0 + 1.5 * PERIOD, 3.0)]
    store.append(
        pl.DataFrame(
            rows,
            schema={"tag": pl.String, "ts": pl.Datetime("us", "UTC"), "value": pl.Float64},
            orient="row",
        )
    )
    to_row = frame(store, spec_with(), 4).get_column("u").to_list()
    from_row = frame(store, spec_with("from_row"), 4).get_column("u").to_list()
    assert to_row == [1.0, 2.0, 3.0, 3.0]
    assert from_row == [1.0, 1.0, 3.0, 3.0]  # the on-row sample at row 1 counts from row 2


def test_a_twin_refuses_a_spec_with_the_other_timing() -> None:
    from twin.spec import spec_difference

    a, b = spec_with(), spec_with("from_row")
    assert "MV timing 'to_row' (trained) vs 'from_row' (given)" in spec_difference(a, b)
    assert spec_difference(b, dataclasses.replace(b, source="other.toml")) == ""


@pytest.mark.parametrize("value", ['"before"', '"From_Row"', "1", "true", '["from_row"]'])
def test_a_bad_mv_timing_is_refused_naming_file_and_field(value: str) -> None:
    text = SPEC_TOML.format(timing=f"mv_timing = {value}")
    with pytest.raises(SpecError) as err:
        parse_spec(text, source="plant.toml")
    assert err.value.file == "plant.toml" and err.value.field == "mv_timing"
    assert "to_row" in str(err.value) and "from_row" in str(err.value)


def test_twin_import_says_how_it_will_read_the_mvs(tmp_path: Path, capsys, monkeypatch) -> None:
    import twin.cli

    monkeypatch.setattr(twin.cli, "COMMAND_MODULES", ["twin.cli.files"])  # skip slow imports
    y, u = run(5, seed=3)
    spec_file = tmp_path / "first_order.toml"
    spec_file.write_text(SPEC_TOML.format(timing='mv_timing = "from_row"'))
    csv = export_from_row(tmp_path / "moves.csv", y, u)
    argv = ["import", "--spec", str(spec_file), "--input", str(csv)]
    assert twin.cli.main([*argv, "--historian", str(tmp_path / "h")]) == 0
    printed = capsys.readouterr().out
    assert f"mv_timing = 'from_row' ({spec_file})" in printed
    assert "the value applied from that row on" in printed
