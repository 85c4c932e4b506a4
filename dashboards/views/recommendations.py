"""Recommendations page: the controller's current moves (as ``twin run`` logged them) with their
steady-state targets, why it heads there (active constraints, cost rate, frozen MVs), the CVs it
predicts, its solver status, CSV and JSON downloads, and, in approval mode, an approve button."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import streamlit as st

from dashboards import auth, charts, data, exports, page, style
from twin.control.export import recommendation_rows
from twin.control.recommendation import Recommendation
from twin.errors import TwinError
from twin.spec import PlantSpec, builtin_spec

ADVISORY = (
    "Advisory: these moves are recommendations only. Nothing is written to the plant; "
    "an operator enters them at the control system."
)
AUDIT_ROWS = 20
REFRESH_S = 5.0
#: markdown colour of a constraint the targets had to give up (abnormal, not a limit violation)
GIVEN_UP_COLOUR = style.ALARM_COLOURS["at limit"]
FROZEN_WHY = (
    "not moved in the twin's training data: held at its current value; "
    "release with `twin run --release {tag}`"
)


def moves_table(rec: Recommendation) -> pl.DataFrame:
    """One row per MV: current, recommended, steady-state target, change, limits, whether the
    limits hold, and whether it is frozen."""
    shown = {  # export column -> the table's heading
        "tag": "tag",
        "unit": "unit",
        "current": "current",
        "recommended": "recommended",
        "target": "target",
        "change": "change",
        "lo": "lo",
        "hi": "hi",
        "rate_limit": "rate limit /sample",
        "limits_held": "limits held",
        "frozen": "frozen",
        "write_node": "write node",
    }
    return (
        recommendation_rows(rec)
        .select(pl.col(k).alias(v) for k, v in shown.items())
        .with_columns(pl.col("write node").fill_null(""))
    )


def why_lines(rec: Recommendation) -> list[str]:
    """Markdown lines on why the targets are where they are: the active constraints (given up
    ones in colour), the predicted cost rate now -> at the targets, the frozen MVs and why."""
    lines = [
        f":{GIVEN_UP_COLOUR}-background[{text}]" if c.state == "given up" else text
        for c, text in zip(rec.constraints, rec.constraint_lines(), strict=True)
    ]
    if math.isfinite(rec.cost_rate):
        now = f"{rec.cost_rate_now:.4g} now → " if math.isfinite(rec.cost_rate_now) else ""
        lines.append(f"predicted cost rate: {now}{rec.cost_rate:.4g} at the targets")
    lines += [f"**{tag}** frozen: {FROZEN_WHY.format(tag=tag)}" for tag in rec.frozen]
    return lines


def why(rec: Recommendation) -> None:
    """The "Why" block under the moves (nothing when the controller has no target optimiser)."""
    lines = why_lines(rec)
    if lines:
        st.markdown("**Why**\n" + "".join(f"\n- {line}" for line in lines))


def status(rec: Recommendation) -> None:
    """Solver status: a grey line when it succeeded, in colour when it did not."""
    age = (datetime.now(UTC) - rec.ts).total_seconds()
    cols = st.columns(4)
    cols[0].metric("solver", "ok" if rec.success else "failed", delta_color="off")
    cols[1].metric("objective [-]", f"{rec.objective:.4g}", delta_color="off")
    cols[2].metric("solve time [ms]", f"{rec.solve_time_s * 1000:.0f}", delta_color="off")
    cols[3].metric(
        "data age [s]",
        f"{age:.0f}",
        delta_color="off",
        help=f"the decision used the sample at {rec.ts:%Y-%m-%d %H:%M:%S} UTC",
    )
    text = f"solver: {rec.message} ({rec.iterations} iterations)"
    if not rec.success:
        st.markdown(f":red-background[{text}: the MVs are held at their current values]")
    elif not rec.limits_held:
        st.markdown(f":red-background[{text}, but a limit does not hold]")
    else:
        st.caption(text + "; every limit holds")


def spec_for(cfg: data.AppConfig, rec: Recommendation) -> PlantSpec | None:
    """The plant spec to draw with: the app's, else the built-in plant the recommendation names."""
    try:
        return data.plant_spec(cfg) or builtin_spec(rec.plant)
    except TwinError:
        return None


def predicted(cfg: data.AppConfig, rec: Recommendation) -> None:
    """The CV (and MV plan) trajectories the controller expects, on the recent history."""
    if rec.forecast is None:
        st.caption("no forecast with this recommendation (the solve failed)")
        return
    spec = spec_for(cfg, rec)
    if spec is None:
        st.caption(f"unknown plant {rec.plant!r}: start the app with --spec to draw it")
        return
    assert cfg.historian is not None
    samples = 3 * rec.forecast.horizon  # three times the plan's span of history
    history = data.history_frame(
        str(cfg.historian), f"{spec.name}:{spec.source}", samples, data.stamp(cfg.historian), spec
    )
    fig = charts.forecast_figure(
        spec, [*spec.cvs, *spec.mvs], history, [("recommended plan", rec.forecast)], [rec.setpoints]
    )
    st.plotly_chart(fig, key="rec_chart", config={"displaylogo": False})


def downloads(rec: Recommendation) -> None:
    stamp = rec.ts.strftime("%Y%m%dT%H%M%SZ")
    page.download_pair(
        lambda suffix: exports.recommendation_bytes(rec, suffix), f"recommendation-{stamp}", "rec"
    )


def approval(cfg: data.AppConfig, rec: Recommendation) -> None:
    """Approval mode: the signed-in operator (or engineer) releases this recommendation for
    write-back, in their name; anyone else sees the button disabled and why."""
    assert cfg.historian is not None
    st.warning(
        "Approval mode: an approved recommendation is written to the plant by the "
        "write-back loop, once, if its guard allows."
    )
    user, refused = auth.current_user(), auth.why_not("approve")
    if refused is not None:
        st.caption(refused)
    elif user is not None:
        st.caption(f"approving as {user.name} ({user.role})")
    with st.form("approve_form", border=False):
        pressed = st.form_submit_button(
            "Approve these moves",
            key="rec_approve",
            type="primary",
            disabled=refused is not None,
            help=refused,
        )
    if not pressed:
        return
    user, refused = auth.current_user(), auth.why_not("approve")  # checked again on the press
    if user is None or refused is not None:
        st.error(refused or "sign in to approve")
        return
    if st.session_state.get("rec_seen") != rec.ts:
        st.error("a newer recommendation has arrived: review it, then approve again")
        return
    try:
        done = exports.request_approval(rec, cfg.historian, user.name, role=user.role, via=user.via)
    except TwinError as exc:
        st.error(str(exc))
    else:
        st.caption(f"approved by {done.operator} ({user.role}) at {done.ts:%H:%M:%S} UTC")


def audit(root: Path) -> None:
    """The last lines of the write-back audit log, if there is one."""
    path = root / "audit.jsonl"
    if not path.is_file():
        return
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines()[-AUDIT_ROWS:]:
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue
    if lines:
        st.markdown("**Write-back audit** (newest last)")
        keys = ("ts", "who", "action", "tag", "value", "why")
        st.dataframe(
            pl.DataFrame([{k: str(e.get(k, "")) for k in keys} for e in lines]),
            hide_index=True,
            key="audit_table",
        )


def live(cfg: data.AppConfig) -> None:
    """The newest recommendation and everything about it (redrawn as ``twin run`` adds more)."""
    assert cfg.historian is not None
    rec = data.latest_recommendation(cfg.historian)
    if rec is None:
        style.note("No recommendation yet: `twin run` writes them into the historian folder.")
        return
    st.caption(
        f"plant {rec.plant}, decided on the sample at {rec.ts:%Y-%m-%d %H:%M:%S} UTC; "
        "setpoints " + ", ".join(f"{k} = {v:g}" for k, v in rec.setpoints.items())
    )
    st.dataframe(moves_table(rec), hide_index=True)
    why(rec)
    status(rec)
    downloads(rec)
    if cfg.approve:
        approval(cfg, rec)
    st.session_state["rec_seen"] = rec.ts  # what the operator has seen, for the approve button
    st.markdown("**Predicted trajectories** under the recommended plan")
    predicted(cfg, rec)
    audit(cfg.historian)


def main() -> None:
    cfg = page.open_page("Recommendations", historian=True)
    if cfg is None:
        return
    if not cfg.approve:
        style.note(ADVISORY)
    st.fragment(run_every=REFRESH_S)(live)(cfg)


main()
