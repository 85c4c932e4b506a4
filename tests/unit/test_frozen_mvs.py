"""The twin knows which MVs it never saw move: the controller must not trust its gains for them.

A tiny twin (a second or two of training) is fitted on a first-order plant driven by one MV
``u`` under random steps while the other MV ``v`` is held, either exactly or with sensor noise.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from twin.model.dataset import Normalizer
from twin.model.network import TwinConfig
from twin.model.twin import CHECKSUMS, UNMOVED_SPREAD, Twin
from twin.spec import PlantSpec, parse_spec

SPEC_TOML = """
[plant]
name = "two_mv"
sample_period_s = 1.0

[[tags]]
name = "y"
node = "ns=2;s=y"
unit = "K"
role = "cv"
lo = -10.0
hi = 10.0
setpoint = 0.0
weight = 1.0

[[tags]]
name = "u"
node = "ns=2;s=u"
unit = "%"
role = "mv"
lo = 0.0
hi = 100.0
rate_limit = 5.0

[[tags]]
name = "v"
node = "ns=2;s=v"
unit = "kg/h"
role = "mv"
lo = 0.0
hi = 20.0
rate_limit = 1.0
"""
CONFIG = TwinConfig(
    window=4,
    horizon=4,
    latent=4,
    hidden=8,
    ensemble=2,
    batch=64,
    minutes=1.0,
    max_epochs=1,  # what is checked is the normaliser, not the fit
    patience=1,
    seed=0,
)
N = 600


def spec() -> PlantSpec:
    return parse_spec(SPEC_TOML, source="two_mv.toml")


def frame(v_noise: float) -> pl.DataFrame:
    """``u`` steps over most of its range every 20 s; ``v`` stays at 7.5 kg/h (plus noise)."""
    rng = np.random.default_rng(0)
    u = np.repeat(rng.uniform(20.0, 80.0, N // 20 + 1), 20)[:N]
    y = np.zeros(N)
    for k in range(1, N):
        y[k] = 0.8 * y[k - 1] + 0.02 * (u[k] - 50.0) + 0.01 * rng.standard_normal()
    v = 7.5 + v_noise * rng.standard_normal(N)
    start = pl.datetime(2026, 1, 1, time_zone="UTC")
    ts = pl.datetime_range(start, start + pl.duration(seconds=N - 1), "1s", eager=True)
    return pl.DataFrame({"ts": ts.dt.cast_time_unit("us"), "y": y, "u": u, "v": v})


@pytest.fixture(scope="module", params=[0.0, 0.01], ids=["v constant", "v held, noisy sensor"])
def twin(request: pytest.FixtureRequest) -> Twin:
    return Twin.fit(spec(), frame(request.param), CONFIG, progress=False)


def as_saved_before_std(folder: Path) -> None:
    """Make ``folder`` what an older ``Twin.save`` wrote: normalizer.json without ``std``."""
    path = folder / "normalizer.json"
    doc = json.loads(path.read_text())
    del doc["std"]
    path.write_text(json.dumps(doc, indent=2) + "\n")
    sums = json.loads((folder / CHECKSUMS).read_text())
    sums["normalizer.json"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (folder / CHECKSUMS).write_text(json.dumps(sums, indent=2) + "\n")


def test_the_held_mv_is_named_and_the_moving_one_is_not(twin: Twin) -> None:
    assert twin.unmoved_mvs() == ("v",)
    std = twin.normalizer.std
    assert std is not None
    assert std[2] < UNMOVED_SPREAD * 20.0 < std[1]  # v's spread is below 0.5 % of its span
    assert twin.unmoved_mvs(threshold=0.0) == ()
    assert twin.unmoved_mvs(threshold=1.0) == ("u", "v")  # nothing moves over its whole span


def test_save_and_load_keep_the_std_and_the_verdict(twin: Twin, tmp_path: Path) -> None:
    folder = twin.save(tmp_path / "two_mv")
    assert "std" in json.loads((folder / "normalizer.json").read_text())
    loaded = Twin.load(folder, spec=spec())  # the checksums cover the file with its std
    assert loaded.normalizer.std is not None and twin.normalizer.std is not None
    np.testing.assert_array_equal(loaded.normalizer.std, twin.normalizer.std)
    assert loaded.unmoved_mvs() == ("v",)


def test_a_folder_saved_before_the_std_was_kept_still_finds_the_held_mv(
    twin: Twin, tmp_path: Path
) -> None:
    folder = twin.save(tmp_path / "two_mv")
    as_saved_before_std(folder)
    old = Twin.load(folder, spec=spec())
    assert old.normalizer.std is None
    # constant: the scale is the fallback 0.1 * span; noisy: the scale is the tiny std
    assert old.unmoved_mvs() == ("v",)
    np.testing.assert_array_equal(old.normalizer.scale, twin.normalizer.scale)


def test_normalizer_dict_with_and_without_std() -> None:
    fitted = Normalizer.fit(np.array([[1.0, 5.0], [3.0, 5.0]]), fallback=np.array([1.0, 2.0]))
    assert fitted.std is not None
    np.testing.assert_allclose(fitted.std, [np.sqrt(2.0), 0.0])  # raw std, not the fallback
    np.testing.assert_allclose(fitted.scale, [np.sqrt(2.0), 2.0])
    again = Normalizer.from_dict(json.loads(json.dumps(fitted.to_dict())))
    assert again.std is not None
    np.testing.assert_array_equal(again.std, fitted.std)
    part = fitted.subset([1]).std
    assert part is not None and part.tolist() == [0.0]
    old = Normalizer.from_dict({"mean": [2.0, 5.0], "scale": [1.5, 2.0]})
    assert old.std is None and "std" not in old.to_dict()
    with pytest.raises(ValueError, match="one entry per tag"):
        Normalizer.from_dict({"mean": [2.0, 5.0], "scale": [1.5, 2.0], "std": [1.0]})
