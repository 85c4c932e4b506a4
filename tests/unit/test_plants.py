"""The simulated plants against their sources: steady states, step signs, dead times, trips,
the differentiable model, reproducibility, noise and speed."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import pytest
import scipy.linalg
import torch

from connectors.sim.base import NUMPY_OPS, SimPlant
from connectors.sim.cstr import CP, CSTR, E_R, K0, MDH, RHO
from connectors.sim.plants import PLANTS, make_plant
from connectors.sim.quadtank import GAMMA1, GAMMA2, H_MAX, QuadTank
from connectors.sim.woodberry import TRANSFER_FUNCTIONS, WoodBerry

ALL = ["cstr", "quadtank", "woodberry"]


def run(plant: SimPlant, n: int, mv: dict[str, float] | None = None) -> list[dict[str, float]]:
    """``n`` samples with ``mv`` applied from the first one on."""
    out = [plant.step(mv)]
    out += [plant.step() for _ in range(n - 1)]
    return out


def jacobian(f: Callable[[np.ndarray], np.ndarray], x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central finite differences of ``f`` at ``x``: ``[n_f, n_x]``."""
    cols = []
    for i in range(len(x)):
        dx = np.zeros_like(x)
        dx[i] = eps * max(1.0, abs(x[i]))
        cols.append((f(x + dx) - f(x - dx)) / (2 * dx[i]))
    return np.stack(cols, axis=1)


def test_registry_lists_all_three_plants() -> None:
    assert set(ALL) <= set(PLANTS)
    for name in ALL:
        plant = make_plant(name, noise=False)
        assert plant.spec.name == name
        assert set(plant.measure()) == set(plant.spec.tag_names)


# --- CSTR (Henson & Seborg 1997) -----------------------------------------------------------


def test_cstr_runs_on_the_stable_lower_branch_at_tc_300() -> None:
    plant = CSTR(noise=False)
    ca, temp = plant.steady_state()
    assert ca == pytest.approx(0.877, abs=1e-3) and temp == pytest.approx(324.5, abs=0.05)
    y = run(plant, 200)[-1]  # 20 min left alone: stays there
    assert y["Ca"] == pytest.approx(0.877, abs=1e-3) and y["T"] == pytest.approx(324.5, abs=0.05)


def test_cstr_textbook_point_is_a_steady_state_but_unstable() -> None:
    plant = CSTR(noise=False)
    u, d, p = plant.u0, plant.d0, plant.p
    x = np.array([0.5, 350.0])
    dx = plant.rhs(x, u, d, p, NUMPY_OPS)
    heat = MDH / (RHO * CP) * K0 * math.exp(-E_R / 350.0) * 0.5  # K/min, the largest term
    assert abs(dx[0]) < 1e-4 and abs(dx[1]) < 1e-4 * heat
    eig = np.linalg.eigvals(jacobian(lambda xx: plant.rhs(xx, u, d, p, NUMPY_OPS), x))
    assert eig.real.max() > 0  # a saddle: open-loop unstable
    # nudged by half a kelvin either way, it moves away from the point, fast (e^{2.8 t/min})
    up, down = CSTR(noise=False), CSTR(noise=False)
    up.x, down.x = np.array([0.5, 350.5]), np.array([0.5, 349.5])
    assert run(up, 10)[-1]["T"] > 355.0 and run(down, 10)[-1]["T"] < 345.0
    assert run(down, 300)[-1]["T"] == pytest.approx(324.5, abs=0.05)  # to the lower branch


def test_cstr_hotter_coolant_gives_hotter_reactor_and_less_a() -> None:
    plant = CSTR(noise=False)
    y = run(plant, 300, {"Tc": 302.0})[-1]
    assert y["T"] > 324.5 + 1.0 and y["Ca"] < 0.877 - 0.01
    assert plant.tripped is None


def test_cstr_runaway_trips_with_a_reason_and_stays_finite() -> None:
    plant = CSTR(noise=True, seed=3)
    ys = run(plant, 300, {"Tc": 310.0})
    assert plant.tripped is not None and "thermal runaway" in plant.tripped
    assert all(math.isfinite(v) for y in ys for v in y.values())
    assert ys[-1]["T"] > 370.0  # ignited to the upper branch, reported as it is


# --- Quadruple tank (Johansson 2000) -------------------------------------------------------


def test_quadtank_p_plus_steady_state_matches_the_paper() -> None:
    plant = QuadTank(noise=False)
    h = plant.steady_state()
    assert h == pytest.approx([12.6, 13.0, 4.8, 4.9], abs=0.3)  # the paper's rounded h0
    assert h == pytest.approx(plant.x0, abs=1e-6)  # the nominal state is the exact one
    y = run(plant, 100)[-1]
    assert [y[f"h{i}"] for i in (1, 2, 3, 4)] == pytest.approx(plant.x0, abs=1e-6)


def test_quadtank_p_plus_is_non_minimum_phase() -> None:
    """Johansson (2000) sec. III: one RHP transmission zero for gamma1 + gamma2 < 1."""
    plant = QuadTank(noise=False)
    x0, u0, p = plant.x0, plant.u0, plant.p
    a = jacobian(lambda x: plant.rhs(x, u0, plant.d0, p, NUMPY_OPS), x0)
    b = jacobian(lambda u: plant.rhs(x0, u, plant.d0, p, NUMPY_OPS), u0)
    c = np.eye(2, 4)  # outputs h1, h2
    g0 = -c @ np.linalg.solve(a, b)  # static gains from (v1, v2)
    assert np.all(g0 > 0) and np.linalg.det(g0) < 0
    # transmission zeros: finite generalised eigenvalues of the Rosenbrock pencil
    pencil = np.block([[a, b], [c, np.zeros((2, 2))]])
    mass = scipy.linalg.block_diag(np.eye(4), np.zeros((2, 2)))
    zeros = scipy.linalg.eigvals(pencil, mass)
    zeros = np.sort(zeros[np.isfinite(zeros)].real)
    # the paper's closed form: (1 + s T3)(1 + s T4) = (1 - g1)(1 - g2) / (g1 g2)
    t3, t4 = -1 / a[2, 2], -1 / a[3, 3]
    rhs = (1 - GAMMA1) * (1 - GAMMA2) / (GAMMA1 * GAMMA2)
    expected = np.sort(np.roots([t3 * t4, t3 + t4, 1 - rhs]))
    assert zeros == pytest.approx(expected, rel=1e-4)
    assert zeros[1] > 0 and zeros[1] == pytest.approx(0.013, abs=0.002)


def test_quadtank_step_signs_follow_the_piping() -> None:
    h0 = QuadTank(noise=False).x0
    one = QuadTank(noise=False)
    y = run(one, 80, {"v1": 3.45})[-1]  # 400 s
    assert y["h1"] > h0[0] + 0.5 and y["h4"] > h0[3] + 0.2 and y["h2"] > h0[1] + 0.05
    assert y["h3"] == pytest.approx(h0[2], abs=1e-9)  # pump 1 does not feed tank 3
    two = QuadTank(noise=False)
    y = run(two, 80, {"v2": 3.45})[-1]
    assert y["h2"] > h0[1] + 0.2 and y["h3"] > h0[2] + 0.2 and y["h1"] > h0[0] + 0.05
    assert y["h4"] == pytest.approx(h0[3], abs=1e-9)


def test_quadtank_overflow_trips_and_empty_tanks_stay_finite() -> None:
    full = QuadTank(noise=False)
    ys = run(full, 100, {"v1": 6.0, "v2": 6.0})
    assert full.tripped is not None and "tank 1 overflowing" in full.tripped
    assert max(y[f"h{i}"] for y in ys for i in (1, 2, 3, 4)) <= H_MAX
    empty = QuadTank(noise=True, seed=1)
    ys = run(empty, 60, {"v1": 0.0, "v2": 0.0})  # 5 min: all four run dry
    levels = [y[f"h{i}"] for y in ys for i in (1, 2, 3, 4)]
    assert all(math.isfinite(v) for v in levels) and max(empty.x) < 0.05
    assert np.all(empty.x >= 0.0)
    # the differentiable model at an empty tank: finite values and gradients
    x = torch.zeros(4, dtype=torch.float64)
    u = torch.tensor([0.5, 0.5], dtype=torch.float64, requires_grad=True)
    empty.torch_step(x, u).sum().backward()
    assert u.grad is not None and torch.isfinite(u.grad).all()


# --- Wood-Berry column (Wood & Berry 1973) -------------------------------------------------


def test_woodberry_nominal_inputs_hold_nominal_outputs() -> None:
    y = run(WoodBerry(noise=False), 100)[-1]
    assert y["XD"] == pytest.approx(96.25, abs=1e-12) and y["XB"] == pytest.approx(0.5, abs=1e-12)


@pytest.mark.parametrize(
    ("mv", "dxd", "dxb"),
    [({"R": 2.05}, 12.8 * 0.1, 6.6 * 0.1), ({"S": 1.72}, -18.9 * 0.01, -19.4 * 0.01)],
)
def test_woodberry_static_gains_are_the_papers(
    mv: dict[str, float], dxd: float, dxb: float
) -> None:
    plant = WoodBerry(noise=False)
    y = run(plant, 600, mv)[-1]  # 600 min, over 28 time constants
    assert y["XD"] - 96.25 == pytest.approx(dxd, rel=1e-6)
    assert y["XB"] - 0.5 == pytest.approx(dxb, rel=1e-6)
    assert plant.steady_state(plant.u) == pytest.approx(plant.x, abs=1e-9)


def test_woodberry_dead_times_are_visible() -> None:
    plant = WoodBerry(noise=False)
    ys = run(plant, 9, {"R": 2.05})  # ys[k] is at t = k + 1 min
    assert ys[0]["XD"] == 96.25 and ys[1]["XD"] > 96.25  # 1 min dead time
    assert all(y["XB"] == 0.5 for y in ys[:7]) and ys[7]["XB"] > 0.5  # 7 min dead time


def test_woodberry_fractional_dead_times_are_exact() -> None:
    """A feed step against the closed-form FOPDT response: 8.1 and 3.4 min, not rounded."""
    plant = WoodBerry(noise=False)
    step = 0.1
    plant.d[0] += step
    ys = run(plant, 30)

    def fopdt(out: str, t: float) -> float:
        (k, tau, theta) = next(tf[2:] for tf in TRANSFER_FUNCTIONS if tf[:2] == (out, "F"))
        return k * step * (1 - math.exp(-(t - theta) / tau)) if t > theta else 0.0

    for i, y in enumerate(ys):
        t = i + 1.0
        assert y["XD"] - 96.25 == pytest.approx(fopdt("XD", t), abs=1e-12)
        assert y["XB"] - 0.5 == pytest.approx(fopdt("XB", t), abs=1e-12)
    assert ys[8]["XD"] - 96.25 == pytest.approx(0.38 * (1 - math.exp(-0.9 / 14.9)), rel=1e-9)


def test_woodberry_off_range_composition_trips_and_is_clipped() -> None:
    plant = WoodBerry(noise=False)
    y = run(plant, 100, {"S": 1.9})[-1]  # XB would fall to 0.5 - 19.4 * 0.19 < 0
    assert plant.tripped is not None and "XB" in plant.tripped
    assert y["XB"] == 0.0 and 0.0 <= y["XD"] <= 100.0


# --- the differentiable model ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "x", "u", "rtol"),
    [
        ("cstr", [0.8, 330.0], [297.0], 1e-6),
        ("quadtank", [10.0, 15.0, 6.0, 3.0], [3.6, 2.7], 1e-6),
        ("woodberry", None, [2.0, 1.68], 1e-12),
    ],
)
def test_torch_step_matches_the_plant_step(
    name: str, x: list[float] | None, u: list[float], rtol: float
) -> None:
    plant = make_plant(name, noise=False)
    if x is None:  # Wood-Berry: a state with history in the delay line and lags off zero
        run(plant, 12, {"R": 2.1, "S": 1.65})
        plant.d[0] = 2.6
        run(plant, 3)
    else:
        plant.x = np.array(x)
    x_t = torch.tensor(plant.x, dtype=torch.float64)
    u_t = torch.tensor(u, dtype=torch.float64)
    d_t = torch.tensor(plant.d, dtype=torch.float64)
    plant.step(dict(zip(plant.mv_names, u, strict=True)))
    nxt = plant.torch_step(x_t, u_t, d_t).numpy()
    scale = np.maximum(np.abs(plant.x), 1.0)
    assert np.max(np.abs(nxt - plant.x) / scale) < rtol


def _grad(plant: SimPlant, steps: int, out: torch.Tensor) -> torch.Tensor:
    """d(out @ x)/du after ``steps`` samples from nominal with u held: ``[n_out, n_mv]``."""
    u = torch.tensor(plant.u0, dtype=torch.float64, requires_grad=True)
    x = torch.tensor(plant.x0, dtype=torch.float64)
    for _ in range(steps):
        x = plant.torch_step(x, u)
    y = out @ x
    return torch.stack([torch.autograd.grad(y[i], u, retain_graph=True)[0] for i in range(len(y))])


def test_torch_gradients_have_the_physical_signs() -> None:
    cstr = CSTR(noise=False)
    g = _grad(cstr, 1, torch.eye(2, dtype=torch.float64))  # d(Ca, T)/dTc
    assert g[0, 0] < 0 < g[1, 0]
    quad = QuadTank(noise=False)
    g = _grad(quad, 1, torch.eye(4, dtype=torch.float64))  # d(h1..h4)/d(v1, v2)
    assert torch.isfinite(g).all()
    assert g[0, 0] > 0 and g[3, 0] > 0 and g[1, 1] > 0 and g[2, 1] > 0
    assert g[2, 0] == 0 and g[3, 1] == 0  # pump 1 never feeds tank 3, pump 2 never tank 4
    wb = WoodBerry(noise=False)
    n_x = len(wb.state_names)
    to_xd_xb = torch.zeros(2, n_x, dtype=torch.float64)
    to_xd_xb[0, 0:3] = to_xd_xb[1, 3:6] = 1.0
    g1 = _grad(wb, 1, to_xd_xb)
    assert torch.all(g1 == 0)  # every dead time is at least one sample
    g = _grad(wb, 10, to_xd_xb)  # d(XD, XB)/d(R, S) after 10 min held
    assert g[0, 0] > 0 and g[0, 1] < 0 and g[1, 0] > 0 and g[1, 1] < 0


# --- seeds, noise, speed -----------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_same_seed_same_run_other_seed_other_run(name: str) -> None:
    def trace(seed: int) -> np.ndarray:
        plant = make_plant(name, seed=seed)
        return np.array([list(plant.step().values()) for _ in range(50)])

    assert np.array_equal(trace(7), trace(7))
    assert not np.allclose(trace(7), trace(8))


@pytest.mark.parametrize("name", ALL)
def test_noise_is_present_and_small(name: str) -> None:
    noisy, clean = make_plant(name, seed=5), make_plant(name, noise=False)
    spans = {t.name: t.span for t in noisy.spec.tags}
    # measurement noise: repeated reads of one state scatter by about the sensor's sigma
    reads = np.array([[noisy.measure()[t] for t in spans] for _ in range(400)])
    spread = dict(zip(spans, reads.std(axis=0), strict=True))
    for tag, sigma in noisy.measurement_noise.items():
        assert spread[tag] == pytest.approx(sigma, rel=0.2)
        assert spread[tag] < 0.02 * spans[tag]
    # process noise and drifts: the state wanders off the noise-free run, but not far
    ys, ys_clean = run(noisy, 200), run(clean, 200)
    for tag in (t.name for t in noisy.spec.cvs):
        dev = np.array([a[tag] - b[tag] for a, b in zip(ys, ys_clean, strict=True)])
        assert dev.std() > 0 and np.abs(dev).max() < 0.1 * spans[tag], (tag, dev.std())
    assert not np.allclose(noisy.x, clean.x)


@pytest.mark.parametrize("name", ALL)
def test_a_simulated_day_runs_in_seconds(name: str) -> None:
    plant = make_plant(name, seed=0)
    n = round(3600.0 / plant.sample_period)  # one hour; the day extrapolates linearly
    start = time.process_time()
    run(plant, n)
    day = 24 * (time.process_time() - start)
    assert day < 20.0, f"{name}: 24 h of plant time would take {day:.1f} s of CPU"
