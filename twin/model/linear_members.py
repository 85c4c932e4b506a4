"""One linear start per ensemble member: the chosen linear model re-estimated on a moving-block
bootstrap resample of its training rows.

When every member starts from the same linear model and the linear start is kept, the
ensemble's spread is zero and the calibrated band cannot widen where the model is unsure.
Re-estimating the parameters on a resample of the data gives members that agree where the
training data pin the model down and disagree off it (issue 12). The orders (and, for the
subspace model, the state basis) stay those chosen on the full data, so each member costs one
least-squares solve or two, not a new order search.

The resample is a moving-block bootstrap of the regression rows (consecutive in time, so the
errors' correlation within a block survives): blocks of ``block`` rows drawn with replacement
until as many rows as the data hold; the same as weighting each row by how often it was drawn.
"""

from __future__ import annotations

import copy
import math

import numpy as np

from twin.evaluate.linear import ARX, Subspace, _lstsq

RIDGE = 1e-9
"""the baselines' default (tiny) ridge, kept unless the full-data fit needed a larger one"""


def block_rows(n: int, block: int, rng: np.random.Generator) -> np.ndarray:
    """Indices ``[n]`` of a moving-block bootstrap of ``n`` rows in blocks of ``block``."""
    block = max(1, min(block, n))
    starts = rng.integers(0, n - block + 1, size=math.ceil(n / block))
    return (starts[:, None] + np.arange(block)[None, :]).reshape(-1)[:n]


def resampled(
    model: ARX | Subspace, z: np.ndarray, block: int, seed: tuple[int, ...]
) -> ARX | Subspace:
    """A copy of the fitted ``model`` with its parameters re-estimated on a block bootstrap of
    the normalised training array ``z [T, n_tags]`` (orders as chosen on the full data)."""
    rng = np.random.default_rng(list(seed))
    ridge = max(float(getattr(model, "ridge_", 0.0)), RIDGE)
    if isinstance(model, ARX):
        phi, y = model._design(z, *model.orders_)
        idx = block_rows(len(phi), block, rng)
        arx = copy.copy(model)
        arx.theta_ = _lstsq(phi[idx], y[idx], ridge)
        return arx
    out = copy.copy(model)
    i, n = model.orders_
    y, u = z[:, model.cv_], z[:, model.mv_ + model.dv_]
    x_all, t_idx = Subspace._states(y, u, i, ridge)
    out.model_ = _regress(x_all[:n], t_idx, y, u, block, rng)
    return out


def _regress(
    x: np.ndarray,
    t_idx: np.ndarray,
    y: np.ndarray,
    u: np.ndarray,
    block: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, ...]:
    """:meth:`Subspace._regress` on block-resampled rows: ``(A, B, b, K, C, D, d)``."""
    one = np.ones((len(t_idx), 1))
    reg = np.hstack([x.T, u[t_idx], one])
    rows = block_rows(len(t_idx), block, rng)
    cdd = _lstsq(reg[rows], y[t_idx][rows])
    e = y[t_idx] - reg @ cdd
    n, nu = len(x), u.shape[1]
    c, d, dc = cdd[:n].T, cdd[n : n + nu].T, cdd[-1]
    pos = {t: j for j, t in enumerate(t_idx)}
    pairs = np.array([(pos[t], pos[t + 1]) for t in t_idx if t + 1 in pos])
    pairs = pairs[block_rows(len(pairs), block, rng)]
    j0, j1 = pairs[:, 0], pairs[:, 1]
    reg1 = np.hstack([x[:, j0].T, u[t_idx[j0]], e[j0], one[j0]])
    abk = _lstsq(reg1, x[:, j1].T)
    a, b, k, bc = abk[:n].T, abk[n : n + nu].T, abk[n + nu : -1].T, abk[-1]
    if np.max(np.abs(np.linalg.eigvals(a - k @ c))) >= 1.0:
        k = np.zeros_like(k)  # as the full-data fit: an unstable predictor runs open loop
    return a, b, bc, k, c, d, dc


def centred(members: list[ARX | Subspace], full: ARX | Subspace) -> list[ARX | Subspace]:
    """The members' parameters shifted so that their mean is the full-data fit's:
    ``theta_k + theta_full - mean_j theta_j`` (same orders and, for the subspace model, the same
    state basis, so the parameters are comparable). The spread stays, the mean's bias goes."""
    out: list[ARX | Subspace] = []
    for m in members:
        c = copy.copy(m)
        if isinstance(c, ARX) and isinstance(full, ARX):
            mean = np.mean([x.theta_ for x in members if isinstance(x, ARX)], axis=0)
            c.theta_ = m.theta_ + full.theta_ - mean  # type: ignore[union-attr]
        elif isinstance(c, Subspace) and isinstance(full, Subspace):
            parts = zip(*(x.model_ for x in members if isinstance(x, Subspace)), strict=True)
            means = [np.mean(p, axis=0) for p in parts]
            c.model_ = tuple(
                mk + fk - mu
                for mk, fk, mu in zip(m.model_, full.model_, means, strict=True)  # type: ignore[union-attr]
            )
        out.append(c)
    return out
