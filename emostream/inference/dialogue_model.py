"""The dialogue model at run time (numpy, no torch): a causal speaker-aware GRU over per-utterance encodings.

The utterance encoder reads one utterance; this model reads the room's dialogue so far and adds a residual
to the encoder's logits of the newest turn. Files, in the text model's folder: ``dialogue.json``
(architecture) and ``dialogue.npz`` (one member per training seed, tensors ``m{i}.<param>``, the
state dict of emostream.train.dialogue.DialogueGRU); members' logits are averaged. Each call recomputes
the window from its first turn (at most ``context.history`` turns, microseconds of matrix work), so turns
that arrive out of order or after a restart need no saved state.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emostream.errors import UserError

SPEC_FILE = "dialogue.json"


def inputs_of(h: np.ndarray, logits: np.ndarray, kind: str) -> np.ndarray:
    """Per-turn input vector [T, D] of the recurrence from the encoder's [MASK] states and logits."""
    if kind == "logits":
        return np.asarray(logits, dtype=np.float32)
    if kind == "h+logits":
        return np.concatenate([h, logits], axis=1).astype(np.float32)
    raise UserError(f"dialogue inputs must be h+logits or logits, not {kind!r}")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass(frozen=True)
class _GRU:
    w_ih: np.ndarray
    w_hh: np.ndarray
    b_ih: np.ndarray
    b_hh: np.ndarray

    def step(self, x: np.ndarray, h: np.ndarray) -> np.ndarray:
        """torch.nn.GRUCell: gates (r, z, n) stacked in that order."""
        gi = self.w_ih @ x + self.b_ih
        gh = self.w_hh @ h + self.b_hh
        n = len(h)
        r = _sigmoid(gi[:n] + gh[:n])
        z = _sigmoid(gi[n : 2 * n] + gh[n : 2 * n])
        c = np.tanh(gi[2 * n :] + r * gh[2 * n :])
        return (1.0 - z) * c + z * h


@dataclass(frozen=True)
class _Member:
    norm_w: np.ndarray
    norm_b: np.ndarray
    inp_w: np.ndarray
    inp_b: np.ndarray
    glob: _GRU
    spk: _GRU
    out_w: np.ndarray
    out_b: np.ndarray

    def residuals(self, x: np.ndarray, speakers: Sequence[int]) -> np.ndarray:
        mu = x.mean(axis=1, keepdims=True)
        var = x.var(axis=1, keepdims=True)
        u = np.tanh(((x - mu) / np.sqrt(var + 1e-5) * self.norm_w + self.norm_b) @ self.inp_w.T + self.inp_b)
        hidden = u.shape[1]
        g = np.zeros(hidden, dtype=np.float32)
        states: dict[int, np.ndarray] = {}
        out = np.zeros((len(x), len(self.out_b)), dtype=np.float32)
        for t, speaker in enumerate(speakers):
            g = self.glob.step(u[t], g)
            s = self.spk.step(u[t], states.get(speaker, np.zeros(hidden, dtype=np.float32)))
            states[speaker] = s
            out[t] = self.out_w @ np.concatenate([g, s, u[t]]) + self.out_b
        return out


class DialogueModel:
    """Averaged members of emostream.train.dialogue.DialogueGRU, run turn by turn in numpy."""

    def __init__(self, spec: dict[str, Any], members: list[_Member]) -> None:
        self.spec = spec
        self.inputs = str(spec["inputs"])
        self.members = members

    @classmethod
    def from_dir(cls, folder: Path) -> DialogueModel:
        spec_path = folder / SPEC_FILE
        spec = json.loads(spec_path.read_text())
        weights_path = folder / spec.get("file", "dialogue.npz")
        if not weights_path.is_file():
            raise UserError(
                f"{weights_path} missing: the dialogue model needs its weights beside {spec_path}"
            )
        with np.load(weights_path, allow_pickle=False) as data:
            t = {k: data[k].astype(np.float32) for k in data.files}

        def gru(p: str) -> _GRU:
            return _GRU(t[f"{p}.weight_ih"], t[f"{p}.weight_hh"], t[f"{p}.bias_ih"], t[f"{p}.bias_hh"])

        members = [
            _Member(
                t[f"m{i}.norm.weight"],
                t[f"m{i}.norm.bias"],
                t[f"m{i}.inp.weight"],
                t[f"m{i}.inp.bias"],
                gru(f"m{i}.glob"),
                gru(f"m{i}.spk"),
                t[f"m{i}.out.weight"],
                t[f"m{i}.out.bias"],
            )
            for i in range(int(spec["members"]))
        ]
        return cls(spec, members)

    @staticmethod
    def present(folder: Path) -> bool:
        return (folder / SPEC_FILE).is_file()

    def logits_all(self, x: np.ndarray, logits: np.ndarray, speakers: Sequence[int]) -> np.ndarray:
        """Logits [T, 7] of every turn of a window, each from the turns up to it (``x`` from :func:`inputs_of`)."""
        res = np.mean([m.residuals(x, speakers) for m in self.members], axis=0)
        return np.asarray(logits, dtype=np.float32) + res

    def decide(self, h: np.ndarray, logits: np.ndarray, speakers: Sequence[int]) -> np.ndarray:
        """Logits [7] of the last turn of the window (``h`` [T, H], ``logits`` [T, 7], oldest first)."""
        return self.logits_all(inputs_of(h, logits, self.inputs), logits, speakers)[-1]
