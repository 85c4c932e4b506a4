"""Training says why it stopped, and the smoothed stop rule counts optimiser steps."""

from __future__ import annotations

import numpy as np
import pytest

from twin.model.dataset import Windows
from twin.model.network import LatentDynamics, TwinConfig
from twin.model.train import train_model


def _windows(n: int, seed: int) -> Windows:
    rng = np.random.default_rng(seed)
    seq = (rng.standard_normal((n, 14, 3)).cumsum(1) * 0.1).astype(np.float32)
    return Windows(seq[:, :6].copy(), seq[:, 6:].copy(), np.arange(n))


CFG = TwinConfig(window=6, horizon=8, latent=4, hidden=8, ensemble=2, batch=32, minutes=5.0)


def test_smoothed_rule_stops_after_patience_steps_and_says_why() -> None:
    changes = {"stop": "smoothed", "patience_steps": 5, "lr": 0.0, "max_epochs": 50}
    cfg = TwinConfig.from_dict({**CFG.to_dict(), **changes})
    model = LatentDynamics(cfg, 3, [2], [])
    res = train_model(model, _windows(200, 0), _windows(60, 1), cfg, [0, 1], progress=False)
    # a learning rate of 0 never improves the score: stop once 5 steps passed, not at epoch 50
    assert res.stopped == "smoothed"
    assert res.epochs < 50
    assert "has not improved by 0.5 %" in res.reason and "kept epoch 1" in res.reason


@pytest.mark.parametrize(
    ("changes", "stopped", "words"),
    [
        ({"max_epochs": 2}, "epochs", "max_epochs (2) reached"),
        (
            {"max_epochs": 50, "patience": 1, "lr": 0.0},
            "patience",
            "no better validation NRMSE in 1",
        ),
    ],
)
def test_reason_names_the_rule_that_ended_training(changes, stopped, words) -> None:
    cfg = TwinConfig.from_dict({**CFG.to_dict(), **changes})
    model = LatentDynamics(cfg, 3, [2], [])
    res = train_model(model, _windows(200, 0), _windows(60, 1), cfg, [0, 1], progress=False)
    assert res.stopped == stopped
    assert words in res.reason
