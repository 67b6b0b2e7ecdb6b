"""Small heads of the DDVLM recipe: the visual student and the residual fusion (train/README.md).

Both are plain Linear/LayerNorm stacks, so weight-only INT8 (emostream/train/quantize.py) and ONNX export apply
unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from emostream.schema import EMOTIONS


class VisualStudent(nn.Module):
    """MLP over a description embedding -> (h_s in the teacher's space, logits)."""

    def __init__(
        self, in_dim: int = 384, text_dim: int = 384, hidden: int = 384, dropout: float = 0.1
    ) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(in_dim, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, text_dim),
            nn.LayerNorm(text_dim),
        )
        self.head = nn.Linear(text_dim, len(EMOTIONS))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        return h, self.head(h)


GATE_MIN = 0.05
GATE_MAX = 0.5


def clamp_gate(g: torch.Tensor) -> torch.Tensor:
    """Keep the visual share in [0.05, 0.5]: never ignored outright, never above the text."""
    return g.clamp(GATE_MIN, GATE_MAX)


class ResidualFusion(nn.Module):
    """Text logits plus a gated, scaled visual correction.

    h_v = P(visual); g = clamp(sigmoid(W [h_t, h_v, h_t*h_v, h_t-h_v]), 0.05, 0.5);
    h_fused = h_t + g (h_v - h_t); delta = C(LN(h_fused - h_t));
    logits = z_t + alpha * g * max(cos(h_t, h_v), 0) * conf * delta, alpha learnable (init 0.3).
    A visual cue that disagrees in direction with the text (cos <= 0) or comes with no confidence adds
    nothing, so the fused model degrades to the text model, never below it by construction at init.
    """

    def __init__(self, text_dim: int = 384, visual_dim: int = 384, alpha_init: float = 0.3) -> None:
        super().__init__()
        self.project = nn.Linear(visual_dim, text_dim)
        self.gate = nn.Linear(4 * text_dim, 1)
        self.norm = nn.LayerNorm(text_dim)
        self.correct = nn.Linear(text_dim, len(EMOTIONS))
        self.alpha = nn.Parameter(torch.tensor(float(alpha_init)))

    def forward(
        self,
        h_t: torch.Tensor,
        z_t: torch.Tensor,
        visual: torch.Tensor,
        confidence: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (fused logits [B, 7], gate [B])."""
        h_v = self.project(visual)
        g = clamp_gate(torch.sigmoid(self.gate(torch.cat([h_t, h_v, h_t * h_v, h_t - h_v], dim=-1)))).squeeze(
            -1
        )
        h_fused = h_t + g.unsqueeze(-1) * (h_v - h_t)
        delta = self.correct(self.norm(h_fused - h_t))
        cos = F.cosine_similarity(h_t, h_v, dim=-1).clamp_min(0.0)
        conf = torch.ones_like(g) if confidence is None else confidence
        scale = self.alpha * g * cos * conf
        return z_t + scale.unsqueeze(-1) * delta, g
