"""Logit-bias calibration: the search finds a bias that undoes a known shift, and is scored honestly."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import f1_score

from emostream.train.calibrate import cross_validate, fit_bias, weighted_f1


def shifted_logits(seed: int, n: int = 1400) -> tuple[np.ndarray, np.ndarray]:
    """Informative logits with class 3 pushed down by 1.5: the optimal bias lifts it back."""
    rng = np.random.default_rng(seed)
    y = rng.choice(7, size=n, p=[0.4, 0.15, 0.05, 0.1, 0.15, 0.05, 0.1])
    z = rng.normal(size=(n, 7)) + 2.0 * np.eye(7)[y]
    z[:, 3] -= 1.5
    return z, y


def test_weighted_f1_matches_sklearn() -> None:
    z, y = shifted_logits(0)
    pred = z.argmax(1)
    ref = 100 * f1_score(y, pred, labels=list(range(7)), average="weighted", zero_division=0)
    assert abs(weighted_f1(y, pred) - ref) < 1e-9


def test_fit_bias_recovers_the_shift_and_raises_weighted_f1() -> None:
    z, y = shifted_logits(1)
    bias = fit_bias([(z, y)])
    assert bias[0] == 0.0  # the reference class stays fixed
    assert 0.8 <= bias[3] - np.median(bias[1:]) <= 2.2
    assert weighted_f1(y, (z + bias).argmax(1)) > weighted_f1(y, z.argmax(1)) + 2
    z2, y2 = shifted_logits(2)  # a fresh sample from the same shift: the gain carries over
    assert weighted_f1(y2, (z2 + bias).argmax(1)) > weighted_f1(y2, z2.argmax(1)) + 2


def test_cross_validation_scores_held_out_dialogues() -> None:
    z, y = shifted_logits(3)
    dialogues = np.arange(len(y)) // 10
    cv = cross_validate({"gold": (z, y)}, dialogues, splits=3)
    assert cv["folds"] == 6 and cv["held_out_delta"]["gold"] > 1
    in_sample = weighted_f1(y, (z + fit_bias([(z, y)])).argmax(1)) - weighted_f1(y, z.argmax(1))
    assert cv["held_out_delta"]["gold"] <= in_sample + 0.5  # held out: no better than fitting on itself
