"""Dialogue model training: a causal, speaker-aware recurrence over per-utterance encodings (DialogueRNN-style).

The utterance encoder (``train/configs/text-utt.toml``) reads one utterance; this model reads the dialogue:
a global GRU over every turn so far and one GRU state per speaker, whose outputs add a residual to the
encoder's own logits. Trained on cached encoder outputs (emostream.train.features.teacher_features), so an
epoch takes seconds. The train caches must be **out-of-fold**: each train dialogue scored by an encoder
that never saw it, or the model learns to trust logits that were fitted to their own labels.

Per epoch every utterance's features are drawn from one of the text-variant caches (gold / flat / bare,
with ``variant_weights``), the cached twin of the encoder's punctuation dropout, so one model serves both
gold and spoken text. Dev (gold and flat caches of the full-train encoder) picks the best epoch on the
mean of their weighted-F1. The runtime twin is emostream.inference.dialogue_model (numpy).
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from emostream.errors import UserError
from emostream.inference.dialogue_model import inputs_of
from emostream.schema import EMOTIONS
from emostream.train.features import load_cache
from emostream.train.losses import class_weights
from emostream.train.metrics import scores

log = logging.getLogger("emostream.train.dialogue")

CACHE_KEYS = ("keys", "h", "logits", "labels", "speakers")


@dataclass
class DialogueConfig:
    """Dialogue-model hyperparameters (chosen on MELD dev; see the model card)."""

    train_features: list[str] = field(default_factory=list)
    """Out-of-fold train caches, one list entry per text variant (each may be several files joined by ",")."""
    variant_weights: list[float] = field(default_factory=list)
    """Per-epoch draw weight of each train variant (default: equal)."""
    dev_gold: str = ""
    """Dev cache on gold text (the encoder trained on all of train)."""
    dev_flat: str = ""
    """Dev cache on flattened text (``!``/``?`` -> ``.``); empty = select on gold only."""
    run_dir: str = "train/runs/dialogue"
    inputs: str = "logits"
    """What the recurrence reads per turn: ``logits`` or ``h+logits`` ([MASK] state and logits)."""
    hidden: int = 64
    dropout: float = 0.2
    epochs: int = 12
    batch_dialogues: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-2
    class_weight_power: float = 0.25
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3])
    """One model per seed; the runtime averages their logits."""
    threads: int = 1


class DialogueGRU(nn.Module):
    """LayerNorm + Linear + tanh per turn, a global GRU, a per-speaker GRU, a residual on the logits."""

    def __init__(self, d_in: int, hidden: int, n_classes: int = len(EMOTIONS), dropout: float = 0.3) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_in)
        self.inp = nn.Linear(d_in, hidden)
        self.glob = nn.GRUCell(hidden, hidden)
        self.spk = nn.GRUCell(hidden, hidden)
        self.out = nn.Linear(3 * hidden, n_classes)
        self.drop = nn.Dropout(dropout)

    def forward(
        self, x: torch.Tensor, logits: torch.Tensor, speakers: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """x [B, T, D], logits [B, T, 7], speakers [B, T] (int), mask [B, T] (bool) -> logits [B, T, 7]."""
        b, t_len, _ = x.shape
        u = torch.tanh(self.inp(self.drop(self.norm(x))))
        hidden = u.shape[-1]
        n_spk = int(speakers.max().item()) + 1 if speakers.numel() else 1
        g = x.new_zeros(b, hidden)
        s = x.new_zeros(b, n_spk, hidden)
        rows = torch.arange(b)
        outs = []
        for t in range(t_len):
            m = mask[:, t].unsqueeze(1)
            g = torch.where(m, self.glob(u[:, t], g), g)
            idx = speakers[:, t]
            prev = s[rows, idx]
            cur = torch.where(m, self.spk(u[:, t], prev), prev)
            s = s.index_put((rows, idx), cur)
            outs.append(self.out(self.drop(torch.cat([g, cur, u[:, t]], dim=1))))
        return logits + torch.stack(outs, dim=1)


@dataclass
class Dialogues:
    """Features of one split, grouped by dialogue in key order: lists of [T, ...] arrays."""

    x: list[np.ndarray]
    logits: list[np.ndarray]
    labels: list[np.ndarray]
    speakers: list[np.ndarray]
    keys: list[tuple[int, int]]


def load_split(paths: str, inputs: str) -> Dialogues:
    """Join one or more caches (comma-separated), sort by (dialogue, utterance), split by dialogue."""
    parts = [load_cache(p.strip(), CACHE_KEYS) for p in paths.split(",") if p.strip()]
    if not parts:
        raise UserError("dialogue training needs feature caches (train_features, dev_gold)")
    cache = {k: np.concatenate([p[k] for p in parts]) for k in CACHE_KEYS}
    order = np.lexsort((cache["keys"][:, 1], cache["keys"][:, 0]))
    cache = {k: v[order] for k, v in cache.items()}
    x = inputs_of(cache["h"], cache["logits"], inputs)
    out = Dialogues([], [], [], [], [tuple(k) for k in cache["keys"].tolist()])
    bounds = np.flatnonzero(np.diff(cache["keys"][:, 0])) + 1
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(x)], strict=True):
        out.x.append(x[lo:hi])
        out.logits.append(cache["logits"][lo:hi].astype(np.float32))
        out.labels.append(cache["labels"][lo:hi].astype(np.int64))
        out.speakers.append(cache["speakers"][lo:hi].astype(np.int64))
    return out


def _batch(views: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]) -> tuple[torch.Tensor, ...]:
    """Right-pad dialogues (x, logits, labels, speakers) to the longest; labels -100 where padded."""
    t_len = max(len(v[0]) for v in views)
    b, d = len(views), views[0][0].shape[1]
    x = torch.zeros(b, t_len, d)
    lg = torch.zeros(b, t_len, len(EMOTIONS))
    y = torch.full((b, t_len), -100, dtype=torch.long)
    spk = torch.zeros(b, t_len, dtype=torch.long)
    for i, (xi, li, yi, si) in enumerate(views):
        n = len(xi)
        x[i, :n], lg[i, :n], y[i, :n], spk[i, :n] = (
            torch.from_numpy(xi),
            torch.from_numpy(li),
            torch.from_numpy(yi),
            torch.from_numpy(si),
        )
    return x, lg, y, spk, y >= 0


@torch.no_grad()
def predict(model: DialogueGRU, split: Dialogues, batch: int = 64) -> np.ndarray:
    """Argmax-ready logits [N, 7] in the split's key order."""
    model.eval()
    out: list[np.ndarray] = []
    for lo in range(0, len(split.x), batch):
        sl = slice(lo, lo + batch)
        views = list(zip(split.x[sl], split.logits[sl], split.labels[sl], split.speakers[sl], strict=True))
        x, lg, _, spk, mask = _batch(views)
        z = model(x, lg, spk, mask)
        out.extend(z[i, : len(v[0])].numpy() for i, v in enumerate(views))
    return np.concatenate(out)


def _dev_scores(model: DialogueGRU, dev: Dialogues) -> dict[str, Any]:
    gold = np.concatenate(dev.labels)
    return scores(gold.tolist(), predict(model, dev).argmax(1).tolist())


def train_one(cfg: DialogueConfig, seed: int, train: list[Dialogues], dev: list[Dialogues]) -> dict[str, Any]:
    """Train one seed; returns its per-epoch history and the best state (on dev selection score)."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    weights = cfg.variant_weights or [1.0] * len(train)
    d_in = train[0].x[0].shape[1]
    model = DialogueGRU(d_in, cfg.hidden, dropout=cfg.dropout)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    counts = np.bincount(np.concatenate(train[0].labels), minlength=len(EMOTIONS)).tolist()
    loss_fn = nn.CrossEntropyLoss(weight=class_weights(counts, cfg.class_weight_power), ignore_index=-100)
    n = len(train[0].x)
    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {"select": -1.0}
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        order = list(range(n))
        rng.shuffle(order)
        total = 0.0
        for lo in range(0, n, cfg.batch_dialogues):
            views = []
            for i in order[lo : lo + cfg.batch_dialogues]:
                pick = rng.choices(range(len(train)), weights, k=len(train[0].x[i]))
                rows = np.arange(len(pick))
                xi = np.stack([train[v].x[i][r] for r, v in zip(rows, pick, strict=True)])
                li = np.stack([train[v].logits[i][r] for r, v in zip(rows, pick, strict=True)])
                views.append((xi, li, train[0].labels[i], train[0].speakers[i]))
            x, lg, y, spk, mask = _batch(views)
            z = model(x, lg, spk, mask)
            loss = loss_fn(z.reshape(-1, len(EMOTIONS)), y.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            total += loss.item()
        entry: dict[str, Any] = {
            "epoch": epoch,
            "train_loss": round(total / max(1, n // cfg.batch_dialogues), 4),
        }
        entry["gold"] = _dev_scores(model, dev[0])
        select = entry["gold"]["weighted_f1"]
        if len(dev) > 1:
            entry["flat"] = _dev_scores(model, dev[1])
            select = (select + entry["flat"]["weighted_f1"]) / 2
        entry["select"] = round(select, 2)
        history.append(entry)
        log.info(
            "seed %d epoch %d loss %.4f dev gold %.2f%s",
            seed,
            epoch,
            entry["train_loss"],
            entry["gold"]["weighted_f1"],
            f" flat {entry['flat']['weighted_f1']:.2f}" if "flat" in entry else "",
        )
        if entry["select"] > best["select"]:
            best = {
                "select": entry["select"],
                "epoch": epoch,
                "state": {k: v.clone() for k, v in model.state_dict().items()},
            }
    return {"seed": seed, "history": history, "best": best, "d_in": d_in}


def _check_alignment(train: list[Dialogues]) -> None:
    ref = train[0].keys
    for t in train[1:]:
        if t.keys != ref:
            raise UserError("train feature caches of different variants must hold the same utterances")


def train_dialogue(cfg: DialogueConfig, resume: bool = True, progress: bool = False) -> dict[str, Any]:
    """Train one model per seed, save them as the runtime's ``dialogue.npz`` + ``dialogue.json``."""
    del resume, progress  # seconds per run: nothing to resume, no bar needed
    if not cfg.train_features or not cfg.dev_gold:
        raise UserError("train dialogue needs train_features (out-of-fold caches) and dev_gold")
    torch.set_num_threads(cfg.threads)
    t0 = time.time()
    train = [load_split(p, cfg.inputs) for p in cfg.train_features]
    _check_alignment(train)
    dev = [load_split(cfg.dev_gold, cfg.inputs)] + (
        [load_split(cfg.dev_flat, cfg.inputs)] if cfg.dev_flat else []
    )
    runs = [train_one(cfg, seed, train, dev) for seed in cfg.seeds]
    run_dir = Path(cfg.run_dir)
    model = save_dialogue(run_dir, cfg, runs)
    ens = ensemble_scores(model, dev)
    result = {
        "config": asdict(cfg),
        "seeds": [
            {
                "seed": r["seed"],
                "best_epoch": r["best"]["epoch"],
                "select": r["best"]["select"],
                "history": r["history"],
            }
            for r in runs
        ],
        "ensemble": ens,
        "best": ens["gold"],
        "wall_minutes": round((time.time() - t0) / 60, 2),
    }
    (run_dir / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    log.info("ensemble of %d: dev %s", len(runs), {k: v["weighted_f1"] for k, v in ens.items()})
    return result


def save_dialogue(run_dir: Path, cfg: DialogueConfig, runs: list[dict[str, Any]]) -> Path:
    """``dialogue.npz`` (arrays ``m{i}.<param>``) and ``dialogue.json`` (architecture, inputs)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    arrays = {f"m{i}.{k}": v.numpy() for i, r in enumerate(runs) for k, v in r["best"]["state"].items()}
    np.savez(run_dir / "dialogue.npz", **arrays)
    spec = {
        "type": "speaker-gru",
        "inputs": cfg.inputs,
        "d_in": runs[0]["d_in"],
        "hidden": cfg.hidden,
        "members": len(runs),
        "seeds": [r["seed"] for r in runs],
        "epochs": [r["best"]["epoch"] for r in runs],
        "file": "dialogue.npz",
    }
    (run_dir / "dialogue.json").write_text(json.dumps(spec, indent=2) + "\n")
    return run_dir


def ensemble_scores(run_dir: Path, dev: list[Dialogues]) -> dict[str, Any]:
    """Dev scores of the saved ensemble through the numpy runtime (the code the context worker runs)."""
    from emostream.inference.dialogue_model import DialogueModel

    model = DialogueModel.from_dir(run_dir)
    out = {}
    for name, split in zip(("gold", "flat"), dev, strict=False):
        pred = [
            int(p)
            for x, lg, spk in zip(split.x, split.logits, split.speakers, strict=True)
            for p in model.logits_all(x, lg, spk.tolist()).argmax(1)
        ]
        out[name] = scores(np.concatenate(split.labels).tolist(), pred)
    return out
