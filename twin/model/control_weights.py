"""The stack's weights for the controller: fitted on forecasts as the controller corrects them.

The stack's own weights (:func:`twin.model.stack.fit_weights`) are fitted on forecast errors,
which on a plant with unmeasured disturbances are mostly the disturbances: they go to the part
that follows an unmeasured offset best (the ARX on increments), whatever its response to the MVs.
The controller does not need that from the model: it corrects every forecast step ``k`` by the
model's own ``k``-step error at the current sample, ``c_k = y_t - yhat(t | t-k)``
(:mod:`twin.control.offset`), which removes an offset from any part. What is left for the model
is the response to the moves and the disturbances' changes over the horizon. So the controller
plans on weights fitted, per step and tag as the stack's are, on each part's *corrected*
forecast ``yhat_m(t+k | t) + y_t - yhat_m(t | t-k)`` of the validation windows.

Measured on the development plants' closed loop: see ``benchmarks/results/control-weights``.
"""

from __future__ import annotations

import numpy as np

MIN_STRETCHES = 2
"""fewer validation windows with every step back available than this many horizons: the
forecast weights are used for control too"""


def back_index(ts: np.ndarray, horizon: int) -> np.ndarray:
    """``[N, H]``: the index of the window whose origin is ``k`` samples before window ``i``'s
    (column ``k - 1``), or -1 where there is none (the start of a stretch, a gap)."""
    t = (
        ts.astype("datetime64[us]").astype(np.int64)
        if ts.dtype.kind == "M"
        else ts.astype(np.int64)
    )
    d = np.diff(t)
    if not (d > 0).any():
        return np.full((len(t), horizon), -1)
    step = int(d[d > 0].min())
    want = t[:, None] - step * np.arange(1, horizon + 1)[None, :]
    idx = np.clip(np.searchsorted(t, want), 0, len(t) - 1)
    return np.where(t[idx] == want, idx, -1)


def corrected(
    means: list[np.ndarray], past: np.ndarray, ts: np.ndarray, cv: list[int]
) -> tuple[list[np.ndarray], np.ndarray]:
    """Each part's forecasts ``means [N, H, n]`` of the windows ``past [N, W, n]`` (origins
    ``ts``) corrected as the controller does, on the windows that have every step back; and
    those windows' index."""
    h = means[0].shape[1]
    back = back_index(ts, h)
    keep = np.flatnonzero((back >= 0).all(axis=1))
    steps = np.arange(h)
    out = []
    for m in means:
        c = m[keep].copy()
        earlier = m[back[keep][:, steps], steps]  # [n_keep, H, n]: yhat(t | t-k) at step k
        c[..., cv] += past[keep, -1][:, None, cv] - earlier[..., cv]
        out.append(c)
    return out, keep
