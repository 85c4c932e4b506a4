"""The simulated site (``site-<n>``): a plant of 53 tags in groups, as the operator app meets a
real site; named, recorded, served and specified like every other simulated plant."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from connectors.sim.plants import UnknownPlantError, is_plant_name, make_plant
from connectors.sim.record import record
from connectors.sim.site import N_UNITS, UTILITY_GROUP, SitePlant, site_design
from twin.cli import main as twin_main
from twin.spec import load_spec, parse_spec, spec_to_toml


def run(plant: SitePlant, n: int) -> list[dict[str, float]]:
    return [plant.step() for _ in range(n)]


def test_a_site_has_53_tags_in_unit_groups() -> None:
    spec = make_plant("site-1").spec
    assert (len(spec.cvs), len(spec.mvs), len(spec.dvs)) == (9, 12, 32)
    groups = Counter(t.group for t in spec.tags)
    assert set(groups) == {*(f"Unit {k}" for k in range(1, N_UNITS + 1)), UTILITY_GROUP}
    for tag in spec.tags:  # U2.TI101 is in "Unit 2"; utilities are UT.*
        unit = tag.name.split(".")[0]
        assert tag.group == (UTILITY_GROUP if unit == "UT" else f"Unit {unit[1:]}")
    assert all(groups[f"Unit {k}"] >= 5 for k in range(1, N_UNITS + 1))
    assert all(t.write_node is not None and t.rate_limit for t in spec.mvs)
    assert len(set(spec.tag_names)) == 53


def test_sites_are_named_drawn_from_n_and_reproducible_by_seed() -> None:
    assert is_plant_name("site-0") and is_plant_name("site-12")
    assert not is_plant_name("site-01") and not is_plant_name("site-")
    with pytest.raises(UnknownPlantError, match="site-<n>"):
        make_plant("site-x")
    assert site_design.__wrapped__(3) == site_design(3)  # a pure function of n
    assert site_design(1).units != site_design(2).units
    a, b, c = (make_plant("site-1", seed=s) for s in (5, 5, 6))
    ya, yb, yc = run(a, 20)[-1], run(b, 20)[-1], run(c, 20)[-1]  # type: ignore[arg-type]
    assert ya == yb and ya != yc


def test_utilities_act_on_their_unit_and_indicators_on_nothing() -> None:
    """A utility is a unit's measured disturbance; an indicator drifts but moves no CV."""
    base, util, ind = (SitePlant(1, noise=False) for _ in range(3))
    t = site_design(1).utilities[0]  # drives unit 1
    util.set_disturbance(t.name, t.nominal + 4 * t.sigma)
    ind_name = next(n for n in ind.extra_names if n.startswith("U1."))
    ind.set_disturbance(ind_name, 1e3)
    y0, yu, yi = run(base, 120)[-1], run(util, 120)[-1], run(ind, 120)[-1]
    cvs = [c.name for c in base.spec.cvs]
    moved = [c for c in cvs if abs(yu[c] - y0[c]) > 1e-6]
    assert moved and all(c.startswith("U1.") for c in moved)
    assert yu[t.name] == pytest.approx(t.nominal + 4 * t.sigma)
    assert all(yi[c] == y0[c] for c in cvs) and yi[ind_name] == 1e3


def test_the_differentiable_step_is_the_units_side_by_side() -> None:
    plant = SitePlant(1, noise=False)
    x0, u = plant.x.copy(), plant.u0 * 1.05
    plant.step(dict(zip(plant.mv_names, u, strict=True)))
    x1 = plant.torch_step(torch.as_tensor(x0), torch.as_tensor(u), torch.as_tensor(plant.d))
    assert np.allclose(x1.numpy(), plant.x, atol=1e-4)


def test_a_short_recording_is_quick_and_complete(tmp_path: Path) -> None:
    t0 = time.perf_counter()
    summary = record(make_plant("site-1", seed=1), 1.0, tmp_path, seed=1, progress=False)
    seconds = time.perf_counter() - t0
    assert summary.samples == 120 and summary.rows == 120 * 53 and not summary.trips
    assert seconds < 10  # about 0.5 s; 24 h (2880 samples) takes about 10 s
    rows = pl.read_parquet(tmp_path / "**" / "*.parquet")
    spec = make_plant("site-1").spec
    assert set(rows.get_column("tag")) == set(spec.tag_names)
    for tag in spec.tags:  # every tag stays inside its range
        v = rows.filter(pl.col("tag") == tag.name).get_column("value")
        assert tag.lo <= v.min() and v.max() <= tag.hi, tag.name  # type: ignore[operator]


def test_the_spec_round_trips_with_its_groups(tmp_path: Path) -> None:
    spec = make_plant("site-2").spec
    assert parse_spec(spec_to_toml(spec)).tags == spec.tags
    out = tmp_path / "site.toml"
    assert twin_main(["plant", "spec", "site-2", "--out", str(out)]) == 0
    loaded = load_spec(out)
    assert loaded.tag_names == spec.tag_names
    assert [t.group for t in loaded.tags] == [t.group for t in spec.tags]
    loaded.require_nodes("write")  # served and written like any simulated plant


def test_the_app_reads_a_twins_spec_without_loading_the_twin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Plant page paints from the spec: importing torch for the twin (seconds) waits for a
    page that needs the twin, and starts in the background meanwhile (issue 15, item 6)."""
    from dashboards import data

    spec = make_plant("site-1").spec
    (tmp_path / "spec.toml").write_text(spec_to_toml(spec), encoding="utf-8")

    def no_twin(path: str) -> None:
        raise AssertionError(f"the twin in {path} was loaded")

    preloads: list[data.AppConfig] = []
    monkeypatch.setattr(data, "load_twin", no_twin)
    monkeypatch.setattr(data, "preload", preloads.append)
    cfg = data.AppConfig(historian=None, model=tmp_path, spec=None)
    got = data.plant_spec(cfg)
    assert got is not None and got.tag_names == spec.tag_names
    assert [t.group for t in got.tags] == [t.group for t in spec.tags]
    assert preloads == [cfg]


def test_the_server_launcher_imports_the_twins_code_only_for_a_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dashboards import serve

    monkeypatch.delenv("TWIN_MODEL", raising=False)
    app = ["run", "dashboards/app.py", "--server.port", "0", "--"]
    assert serve.model_configured([*app, "--model", "data/models/cstr", "--refresh", "2"])
    assert not serve.model_configured([*app, "--spec", "cstr"])
    assert not serve.model_configured(["run", "dashboards/app.py"])
    monkeypatch.setenv("TWIN_MODEL", "data/models/cstr")
    assert serve.model_configured([*app, "--spec", "cstr"])
