"""The result of a what-if: :class:`WhatIf`, every scenario's predicted trajectories side by side.

Per scenario it holds the forecast (mean and calibrated band of every tag), the setpoints in
force at each step and, closed loop, where the controller ended up (failed solves, steady-state
targets, cost rate before and after, the active constraints), and it renders them as a long frame
(:meth:`WhatIf.to_frame`), one tag side by side (:meth:`WhatIf.compare`), a per-scenario summary
(:meth:`WhatIf.summary`) and the JSON document of ``twin whatif`` (:meth:`WhatIf.to_json_dict`).
:func:`twin.control.whatif.whatif` computes it, and :mod:`twin.control.whatif` re-exports it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import polars as pl

from twin.control.recommendation import ActiveConstraint
from twin.control.whatif_scenario import Scenario
from twin.model.forecast import Forecast

__all__ = ["WhatIf"]

T = TypeVar("T")


@dataclass(frozen=True)
class WhatIf:
    """The predicted trajectories of every scenario, side by side."""

    scenarios: tuple[Scenario, ...]
    forecasts: tuple[Forecast, ...]
    """one per scenario: every tag, mean / lower / upper ``[steps, n_tags]``, eng. units"""
    setpoint_paths: tuple[dict[str, np.ndarray], ...]
    """one per scenario: CV tag -> setpoint ``[steps]`` in force at each step"""
    failed_solves: tuple[int, ...] = ()
    """one per scenario: closed-loop steps where the controller failed and held the MVs"""
    targets: tuple[dict[str, float], ...] = ()
    """one per scenario: MV and CV tag -> steady-state target of its controller at the last
    step, the new optimum (empty: open loop, or no target optimiser)"""
    cost_before: tuple[float, ...] = ()
    """one per scenario: the cost rate under its prices at the current measurements (nan:
    open loop, or no tag has a price)"""
    cost_after: tuple[float, ...] = ()
    """one per scenario: the predicted cost rate under its prices at its new targets"""
    constraints: tuple[tuple[ActiveConstraint, ...], ...] = ()
    """one per scenario: the limits its targets sit on or gave up at the last step"""

    def _per_scenario(
        self,
    ) -> list[tuple[dict[str, float], float, float, tuple[ActiveConstraint, ...]]]:
        """targets, cost before / after, constraints of each scenario (defaults when absent)."""
        n = len(self.scenarios)
        nan = math.nan
        return list(
            zip(
                self.targets or ({},) * n,
                self.cost_before or (nan,) * n,
                self.cost_after or (nan,) * n,
                self.constraints or ((),) * n,
                strict=True,
            )
        )

    def forecast(self, name: str) -> Forecast:
        """The forecast of the scenario called ``name``."""
        names = [s.name for s in self.scenarios]
        if name not in names:
            raise KeyError(f"no scenario {name!r} (scenarios: {names})")
        return self.forecasts[names.index(name)]

    def subset(self, names: Sequence[str]) -> WhatIf:
        """The scenarios called ``names``, in this result's order."""
        keep = [i for i, s in enumerate(self.scenarios) if s.name in names]

        def pick(values: tuple[T, ...]) -> tuple[T, ...]:
            return tuple(values[i] for i in keep) if values else ()

        return WhatIf(
            pick(self.scenarios),
            pick(self.forecasts),
            pick(self.setpoint_paths),
            failed_solves=pick(self.failed_solves),
            targets=pick(self.targets),
            cost_before=pick(self.cost_before),
            cost_after=pick(self.cost_after),
            constraints=pick(self.constraints),
        )

    def summary(self) -> pl.DataFrame:
        """Per scenario: ``scenario, cost_before, cost_after``, then the steady-state target of
        each CV and MV (columns named by tag, spec order; null where the scenario has none)."""
        tags = [t for t in self.forecasts[0].tags if any(t in tg for tg in self.targets)]
        rows = []
        for sc, (tg, before, after, _) in zip(self.scenarios, self._per_scenario(), strict=True):
            row: dict[str, object] = {
                "scenario": sc.name,
                "cost_before": _num(before),
                "cost_after": _num(after),
            }
            row.update((t, _num(tg.get(t, math.nan))) for t in tags)
            rows.append(row)
        schema = {
            "scenario": pl.String,
            **dict.fromkeys(["cost_before", "cost_after", *tags], pl.Float64),
        }
        return pl.DataFrame(rows, schema=schema, orient="row")

    def to_json_dict(self) -> dict[str, object]:
        """The JSON document of ``twin whatif --out FILE.json`` (schema_version 2): the
        scenarios as given, their failed solves, targets, cost rates before and after and
        active constraints, and :meth:`to_frame`'s columns and rows. Version 2 adds to each
        scenario ``prices``, ``limits``, ``priorities``, ``targets``, ``cost_before``,
        ``cost_after`` and ``constraints`` (non-finite numbers as null); the rest is version 1's."""
        frame = self.to_frame().with_columns(
            pl.col("ts").dt.strftime("%Y-%m-%dT%H:%M:%S%.6f+00:00"),
            pl.col(pl.Float64).fill_nan(None),
        )
        scenarios = [
            {
                "name": s.name,
                "setpoints": [list(x) for x in s.setpoints],
                "mv_schedule": None
                if s.mv_schedule is None
                else {k: list(v) for k, v in s.mv_schedule.items()},
                "failed_solves": n,
                "prices": [list(x) for x in s.prices],
                "limits": [list(x) for x in s.limits],
                "priorities": [list(x) for x in s.priorities],
                "targets": {k: _num(v) for k, v in tg.items()},
                "cost_before": _num(before),
                "cost_after": _num(after),
                "constraints": [c.to_dict() for c in cons],
            }
            for s, n, (tg, before, after, cons) in zip(
                self.scenarios, self.failed_solves, self._per_scenario(), strict=True
            )
        ]
        return {
            "schema_version": 2,
            "scenarios": scenarios,
            "columns": frame.columns,
            "rows": frame.rows(),
        }

    def to_frame(self) -> pl.DataFrame:
        """Long frame of all scenarios: ``scenario, step, ts, tag, unit, mean, lower, upper, setpoint``.

        ``setpoint`` is the CV setpoint in force at that step (null for MVs and DVs).
        """
        parts = []
        for sc, fc, sps in zip(self.scenarios, self.forecasts, self.setpoint_paths, strict=True):
            part = fc.to_frame()
            sp = np.full(part.height, np.nan)
            steps = part.get_column("step").to_numpy() - 1
            tags = part.get_column("tag").to_numpy()
            for tag, path in sps.items():
                rows = tags == tag
                sp[rows] = path[steps[rows]]
            parts.append(
                part.with_columns(
                    scenario=pl.lit(sc.name), setpoint=pl.Series(sp).fill_nan(None)
                ).select("scenario", *part.columns, "setpoint")
            )
        return pl.concat(parts)

    def compare(self, tag: str) -> pl.DataFrame:
        """One tag side by side: ``step, ts``, then ``<scenario>``, ``<scenario>.lower``,
        ``<scenario>.upper`` and, for a CV, ``<scenario>.setpoint`` per scenario."""
        first = self.forecasts[0]
        if tag not in first.tags:
            raise KeyError(f"no tag {tag!r} (tags: {list(first.tags)})")
        out = first.to_frame().filter(pl.col("tag") == tag).select("step", "ts")
        for sc, fc, sps in zip(self.scenarios, self.forecasts, self.setpoint_paths, strict=True):
            mean, lower, upper = fc.tag(tag)
            cols = {sc.name: mean, f"{sc.name}.lower": lower, f"{sc.name}.upper": upper}
            if tag in sps:
                cols[f"{sc.name}.setpoint"] = sps[tag]
            out = out.with_columns(pl.Series(k, v) for k, v in cols.items())
        return out


def _num(x: float) -> float | None:
    """A float for JSON and frames: non-finite values become null."""
    return float(x) if math.isfinite(x) else None
