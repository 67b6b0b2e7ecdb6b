"""The KD losses, EMA update and fusion gate, pinned to values computed by hand (math, not torch)."""

from __future__ import annotations

import math
from statistics import correlation

import pytest
import torch

from emostream.train.losses import (
    class_weights,
    ema_update,
    kd_kl,
    pearson_kd,
    relational_kd,
    self_distill_loss,
    student_loss,
)
from emostream.train.modules import ResidualFusion, clamp_gate

# KL([0.75, 0.25] || [0.5, 0.5])
KL_HAND = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)


def _logits(probs: list[list[float]], tau: float) -> torch.Tensor:
    """Logits whose softmax at temperature tau is exactly ``probs``."""
    return torch.tensor([[tau * math.log(p) for p in row] for row in probs], dtype=torch.float64)


def test_kd_kl_is_tau_squared_kl() -> None:
    student = _logits([[0.5, 0.5]], 2.0)
    teacher = _logits([[0.75, 0.25]], 2.0)
    assert float(kd_kl(student, teacher, 2.0)) == pytest.approx(4 * KL_HAND, abs=1e-9)
    assert float(kd_kl(teacher, teacher, 2.0)) == pytest.approx(0.0, abs=1e-12)


def test_self_distill_is_ce_in_epoch_one_then_mixed() -> None:
    logits = _logits([[0.5, 0.5]], 2.0)
    ema = _logits([[0.75, 0.25]], 2.0)
    labels = torch.tensor([0])
    ce = -math.log(math.exp(2 * math.log(0.5)) / (2 * math.exp(2 * math.log(0.5))))  # = ln 2
    assert float(self_distill_loss(logits, labels, None)) == pytest.approx(ce)
    mixed = float(self_distill_loss(logits, labels, ema, alpha=0.7, tau=2.0))
    assert mixed == pytest.approx(0.7 * math.log(2) + 0.3 * 4 * KL_HAND, abs=1e-9)


def test_ema_update() -> None:
    ema, model = torch.nn.Linear(1, 1), torch.nn.Linear(1, 1)
    with torch.no_grad():
        ema.weight.fill_(1.0)
        ema.bias.fill_(-2.0)
        model.weight.fill_(3.0)
        model.bias.fill_(0.0)
    ema_update(ema, model, decay=0.99)
    assert ema.weight.item() == pytest.approx(0.99 * 1 + 0.01 * 3)
    assert ema.bias.item() == pytest.approx(0.99 * -2 + 0.01 * 0)
    assert model.weight.item() == 3.0


def test_pearson_kd_inter_and_intra() -> None:
    p_t = [[0.5, 0.3, 0.2], [0.2, 0.3, 0.5], [0.3, 0.4, 0.3]]
    p_s = [[0.4, 0.4, 0.2], [0.2, 0.3, 0.5], [0.1, 0.3, 0.6]]
    inter = sum(1 - correlation(s, t) for s, t in zip(p_s, p_t, strict=True)) / 3
    cols_s, cols_t = list(zip(*p_s, strict=True)), list(zip(*p_t, strict=True))
    intra = sum(1 - correlation(s, t) for s, t in zip(cols_s, cols_t, strict=True)) / 3
    got = float(pearson_kd(_logits(p_s, 4.0), _logits(p_t, 4.0), tau=4.0))
    assert got == pytest.approx(16 * (inter + intra), abs=1e-5)
    only_inter = float(pearson_kd(_logits(p_s, 4.0), _logits(p_t, 4.0), tau=4.0, intra_weight=0.0))
    assert only_inter == pytest.approx(16 * inter, abs=1e-5)
    assert float(pearson_kd(_logits(p_t, 4.0), _logits(p_t, 4.0), tau=4.0)) == pytest.approx(0.0, abs=1e-4)


def test_relational_kd_kl_plus_jsd() -> None:
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    s = torch.tensor([[2.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    e = math.e
    p = [e / (e + 1), 1 / (e + 1)]  # softmax([1, 0]) (row 2 is its mirror; same loss)
    q = [0.5, 0.5]  # t1 . s = [1, 1], t2 . s = [0, 0]
    m = [(a + b) / 2 for a, b in zip(p, q, strict=True)]

    def kl(a: list[float], b: list[float]) -> float:
        return sum(x * math.log(x / y) for x, y in zip(a, b, strict=True))

    expected = kl(p, q) + 0.2 * 0.5 * (kl(p, m) + kl(q, m))
    assert float(relational_kd(t, s, tau=1.0, jsd_weight=0.2)) == pytest.approx(expected, abs=1e-9)
    assert float(relational_kd(t, t)) == pytest.approx(0.0, abs=1e-9)


def test_student_loss_total_is_the_sum_of_parts() -> None:
    torch.manual_seed(0)
    z_s, z_t, h_s, h_t = torch.randn(5, 7), torch.randn(5, 7), torch.randn(5, 6), torch.randn(5, 6)
    parts = student_loss(z_s, h_s, torch.tensor([0, 1, 2, 3, 4]), z_t, h_t)
    assert float(parts["total"]) == pytest.approx(float(parts["ce"] + parts["response"] + parts["relation"]))


def test_class_weights_are_mild_and_mean_one() -> None:
    w = class_weights([100, 25], power=0.5)
    assert float(w[1] / w[0]) == pytest.approx(2.0)
    assert float((w * torch.tensor([100.0, 25.0])).sum() / 125) == pytest.approx(1.0)
    assert class_weights([100, 25], power=0.0).tolist() == [1.0, 1.0]


def test_gate_is_clamped() -> None:
    g = clamp_gate(torch.tensor([0.0, 0.01, 0.2, 0.7, 1.0]))
    assert g.tolist() == pytest.approx([0.05, 0.05, 0.2, 0.5, 0.5])
    fusion = ResidualFusion(text_dim=2, visual_dim=2)
    h_t, z_t, v = torch.tensor([[1.0, 0.0]]), torch.zeros(1, 7), torch.tensor([[1.0, 1.0]])
    with torch.no_grad():
        fusion.gate.weight.zero_()
        fusion.gate.bias.fill_(50.0)
        assert float(fusion(h_t, z_t, v)[1]) == pytest.approx(0.5)
        fusion.gate.bias.fill_(-50.0)
        assert float(fusion(h_t, z_t, v)[1]) == pytest.approx(0.05)


def test_fusion_correction_by_hand() -> None:
    fusion = ResidualFusion(text_dim=2, visual_dim=2)
    assert fusion.alpha.item() == pytest.approx(0.3)
    with torch.no_grad():
        fusion.project.weight.copy_(torch.eye(2))
        fusion.project.bias.zero_()
        fusion.gate.weight.zero_()
        fusion.gate.bias.zero_()  # sigmoid(0) = 0.5, at the upper clamp
        fusion.correct.weight.zero_()
        fusion.correct.weight[0, 0] = 1.0
        fusion.correct.bias.zero_()
    h_t, v = torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 1.0]])
    z_t = torch.arange(7, dtype=torch.float32).unsqueeze(0)
    # h_fused - h_t = 0.5 * ([1, 1] - [1, 0]) = [0, 0.5]; LN -> [-1, 1] * 0.25 / sqrt(0.0625 + 1e-5)
    ln0 = -0.25 / math.sqrt(0.0625 + 1e-5)
    scale = 0.3 * 0.5 * (1 / math.sqrt(2)) * 0.8  # alpha * g * cos * confidence
    logits, g = fusion(h_t, z_t, v, torch.tensor([0.8]))
    expected = z_t.clone()
    expected[0, 0] += scale * ln0
    assert torch.allclose(logits, expected, atol=1e-5)
    # no confidence or an opposed visual cue adds nothing: the text logits come out unchanged
    assert torch.equal(fusion(h_t, z_t, v, torch.tensor([0.0]))[0], z_t)
    assert torch.equal(fusion(h_t, z_t, -v)[0], z_t)
