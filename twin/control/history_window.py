"""What the controller reads of the plant's history: the last samples, checked and forward-filled.

    history, values, ts = recent_window(spec, history, horizon)   # values [H+1, n_tags]
    u0 = last_finite(values[:, mv_idx], mv_names, "MV")          # the current MVs [n_mv]

Bad input raises :class:`~twin.errors.TwinError` naming it: a missing column, an empty or
non-numeric history, a ``ts`` column without datetimes, an MV with no finite value.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from twin.errors import TwinError
from twin.spec import PlantSpec


def recent_window(
    spec: PlantSpec, history: pl.DataFrame, horizon: int
) -> tuple[pl.DataFrame, np.ndarray, np.ndarray]:
    """``history`` sorted by time, its last ``horizon + 1`` rows as forward-filled values
    ``[T, n_tags]`` (every spec tag in spec order, eng. units) and their times ``[T]``
    (``datetime64[us]``, UTC)."""
    names = spec.tag_names
    missing = [n for n in ["ts", *names] if n not in history.columns]
    if missing:
        raise TwinError(f"history lacks the columns {missing} of plant {spec.name!r}")
    if history.height == 0:
        raise TwinError("history is empty")
    if not history.get_column("ts").is_sorted():
        history = history.sort("ts")
    tail = history.tail(horizon + 1)
    cols = []
    for name in names:
        try:
            cols.append(np.asarray(tail.get_column(name).to_numpy(), dtype=float))
        except (TypeError, ValueError) as exc:
            raise TwinError(f"history column {name!r} is not numeric: {exc}") from None
    ts = tail.get_column("ts").to_numpy()  # UTC for a time-zone-aware column
    if not np.issubdtype(ts.dtype, np.datetime64):
        raise TwinError(f"history column 'ts' must hold datetimes, not {ts.dtype}")
    return history, ffill(np.column_stack(cols)), ts.astype("datetime64[us]")


def ffill(values: np.ndarray) -> np.ndarray:
    """Carry each column's last finite value forward ``[T, n]`` (leading NaNs stay)."""
    out = values.copy()
    for i in range(1, len(out)):
        out[i] = np.where(np.isfinite(out[i]), out[i], out[i - 1])
    return out


def last_finite(values: np.ndarray, names: list[str], role: str) -> np.ndarray:
    """The last row of forward-filled ``values``; TwinError naming columns with no value."""
    last = values[-1]
    bad = [n for n, v in zip(names, last, strict=True) if not math.isfinite(v)]
    if bad:
        raise TwinError(f"history has no finite value of {role}s {bad} in its last samples")
    return last.astype(float)
