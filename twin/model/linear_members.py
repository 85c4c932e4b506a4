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
    model: ARX | Subspace, z: np.ndarray, block: int, seeds: list[tuple[int, ...]]
) -> list[ARX | Subspace]:
    """Copies of the fitted ``model``, one per seed, with the parameters re-estimated on a
    block bootstrap of the normalised training array ``z [T, n_tags]`` (orders as chosen on the
    full data). What does not depend on the resample (the ARX design, the subspace state
    sequence) is computed once for all of them."""
    ridge = max(float(getattr(model, "ridge_", 0.0)), RIDGE)
    out: list[ARX | Subspace] = []
    if isinstance(model, ARX):
        phi, y = model._design(z, *model.fit_orders_)  # IntegratedARX: its increments' orders
        for seed in seeds:
            idx = block_rows(len(phi), block, np.random.default_rng(list(seed)))
            arx = copy.copy(model)
            arx._use(*model.fit_orders_, _lstsq(phi[idx], y[idx], ridge))
            out.append(arx)
        return out
    i, n = model.orders_
    y, u = z[:, model.cv_], z[:, model.mv_ + model.dv_]
    x_all, t_idx = Subspace._states(y, u, i, ridge)
    for seed in seeds:
        rng = np.random.default_rng(list(seed))

        def rows(m: int, rng: np.random.Generator = rng) -> np.ndarray:
            return block_rows(m, block, rng)

        sub = copy.copy(model)
        sub.model_ = Subspace._regress(x_all[:n], t_idx, y, u, rows=rows)
        out.append(sub)
    return out


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
