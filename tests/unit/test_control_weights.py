"""The stack's weights for the controller: fitted on forecasts as the offset correction leaves
them (twin.model.control_weights)."""

from __future__ import annotations

import numpy as np

from twin.model.control_weights import back_index, corrected
from twin.model.stack import fit_weights


def test_back_index_finds_each_step_back_and_stops_at_a_gap() -> None:
    ts = np.array([0, 1, 2, 3, 4, 7, 8, 9, 10])  # a gap after 4
    back = back_index(ts, 3)
    assert back[4].tolist() == [3, 2, 1]
    assert back[8].tolist() == [7, 6, 5]  # 10: 9, 8, 7
    assert back[2].tolist() == [1, 0, -1]  # before the first window
    assert back[6].tolist() == [5, -1, -1]  # 8: 7, then across the gap
    stamps = np.datetime64("2026-01-01T00:00") + np.arange(6) * np.timedelta64(60, "s")
    assert back_index(stamps, 2)[5].tolist() == [4, 3]


def _windows(n: int, h: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A random walk ``y`` as windows: past (last sample only matters) and future."""
    y = np.cumsum(np.random.default_rng(seed).standard_normal(n + h + 1))
    origins = np.arange(1, n + 1)
    past = y[origins][:, None, None]
    future = np.stack([y[origins + k] for k in range(1, h + 1)], axis=1)[..., None]
    return past, future, origins


def test_a_part_that_is_off_by_an_offset_is_exact_once_corrected_and_gets_the_weight() -> None:
    """Part A forecasts the future exactly but for a constant offset (what a model that pulls
    to a level the plant has left does); part B has no offset at the origin and only half the
    movement (a shrunken response). The forecast weights prefer B; corrected as the controller
    corrects, A is exact and takes the weight."""
    past, future, ts = _windows(600, 8, seed=4)
    a = future + 3.0
    b = past[:, -1:, :] + 0.5 * (future - past[:, -1:, :])
    forecast = fit_weights([a, b], future, [0])
    assert forecast[1, :, 0].min() > 0.75
    fixed, keep = corrected([a, b], past, ts, [0])
    assert len(keep) == 600 - 8  # the first H windows have no step back for every k
    np.testing.assert_allclose(fixed[0], future[keep], atol=1e-9)
    control = fit_weights(fixed, future[keep], [0])
    assert control[0, :, 0].min() > 0.99
