"""Losses of the DDVLM recipe (train/README.md): teacher self-distillation, visual-student KD, EMA update.

Every function is pure over its tensors (no module state) so unit tests can pin it to hand values.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def class_weights(counts: list[int], power: float) -> torch.Tensor:
    """Mild inverse-frequency weights ``(n_max / n_c) ** power``, rescaled to mean 1 over the samples.

    power 0 = plain CE; 1 = full inverse frequency. Rescaling keeps the loss scale (and so the LR) stable.
    """
    n = torch.tensor(counts, dtype=torch.float64).clamp_min(1.0)
    w = (n.max() / n) ** power
    w = w / ((w * n).sum() / n.sum())
    return w.float()


def kd_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, tau: float) -> torch.Tensor:
    """tau^2 * KL(softmax(t/tau) || softmax(s/tau)), mean over the batch (Hinton KD)."""
    log_p_s = F.log_softmax(student_logits / tau, dim=-1)
    log_p_t = F.log_softmax(teacher_logits / tau, dim=-1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1).mean()
    return kl * tau * tau


def self_distill_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    ema_logits: torch.Tensor | None,
    alpha: float = 0.7,
    tau: float = 2.0,
    weight: torch.Tensor | None = None,
    kind: str = "kl",
) -> torch.Tensor:
    """alpha*CE + (1-alpha)*KD toward ``ema_logits`` (the EMA copy's, or a larger teacher's); plain CE when
    they are None (epoch 1). KD ``kind``: ``kl`` = tau^2*KL(target || model), ``dist`` = :func:`pearson_kd`."""
    ce = F.cross_entropy(logits, labels, weight=weight)
    if ema_logits is None:
        return ce
    if kind == "dist":
        return alpha * ce + (1.0 - alpha) * pearson_kd(logits, ema_logits, tau)
    return alpha * ce + (1.0 - alpha) * kd_kl(logits, ema_logits.detach(), tau)


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float = 0.99) -> None:
    """ema <- decay*ema + (1-decay)*model for parameters; buffers are copied."""
    for p_e, p in zip(ema.parameters(), model.parameters(), strict=True):
        p_e.mul_(decay).add_(p.detach(), alpha=1.0 - decay)
    for b_e, b in zip(ema.buffers(), model.buffers(), strict=True):
        b_e.copy_(b)


def _pearson(a: torch.Tensor, b: torch.Tensor, dim: int, eps: float = 1e-8) -> torch.Tensor:
    """Pearson correlation of ``a`` and ``b`` along ``dim``."""
    a = a - a.mean(dim, keepdim=True)
    b = b - b.mean(dim, keepdim=True)
    return (a * b).sum(dim) / (a.norm(dim=dim) * b.norm(dim=dim) + eps)


def pearson_kd(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    tau: float = 4.0,
    inter_weight: float = 1.0,
    intra_weight: float = 1.0,
) -> torch.Tensor:
    """Correlation-based response KD (DIST), times tau^2.

    inter-class: per sample, 1 - Pearson(p_s[i, :], p_t[i, :]) over the classes, averaged over samples;
    intra-class: per class, 1 - Pearson(p_s[:, c], p_t[:, c]) over the batch, averaged over classes;
    p = softmax(logits / tau). Matching relations rather than exact probabilities lets a weaker
    (visual) student follow a stronger teacher without copying its scale.
    """
    p_s = F.softmax(student_logits / tau, dim=-1)
    p_t = F.softmax(teacher_logits.detach() / tau, dim=-1)
    inter = (1.0 - _pearson(p_s, p_t, dim=1)).mean()
    intra = (1.0 - _pearson(p_s, p_t, dim=0)).mean()
    return tau * tau * (inter_weight * inter + intra_weight * intra)


def _kl_rows(p: torch.Tensor, q: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    return (p * ((p + eps).log() - (q + eps).log())).sum(-1)


def relational_kd(
    teacher_feats: torch.Tensor, student_feats: torch.Tensor, tau: float = 1.0, jsd_weight: float = 0.2
) -> torch.Tensor:
    """Relational feature KD: the student's view of the batch should match the teacher's.

    P = softmax(cos(t_i, t_j) / tau) (teacher-teacher), Q = softmax(cos(t_i, s_j) / tau)
    (teacher-student), row-wise over the batch; loss = mean_i KL(P_i || Q_i) + jsd_weight * JSD(P_i, Q_i).
    """
    t = F.normalize(teacher_feats.detach(), dim=-1)
    s = F.normalize(student_feats, dim=-1)
    p = F.softmax(t @ t.T / tau, dim=-1)
    q = F.softmax(t @ s.T / tau, dim=-1)
    m = 0.5 * (p + q)
    jsd = 0.5 * _kl_rows(p, m) + 0.5 * _kl_rows(q, m)
    return (_kl_rows(p, q) + jsd_weight * jsd).mean()


def student_loss(
    student_logits: torch.Tensor,
    student_feats: torch.Tensor,
    labels: torch.Tensor,
    teacher_logits: torch.Tensor,
    teacher_feats: torch.Tensor,
    response_tau: float = 4.0,
    relation_tau: float = 1.0,
    response_weight: float = 1.0,
    relation_weight: float = 1.0,
    weight: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Visual student objective: CE + Pearson response KD + relational feature KD (parts and total)."""
    ce = F.cross_entropy(student_logits, labels, weight=weight)
    resp = pearson_kd(student_logits, teacher_logits, response_tau)
    rel = relational_kd(teacher_feats, student_feats, relation_tau)
    return {
        "ce": ce,
        "response": resp,
        "relation": rel,
        "total": ce + response_weight * resp + relation_weight * rel,
    }
