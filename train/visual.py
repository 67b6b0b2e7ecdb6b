"""Visual student: MLP over description embeddings, distilled from the frozen text teacher.

loss = CE + Pearson response KD (inter + intra, tau 4, x tau^2) + relational feature KD (KL + 0.2 JSD,
tau 1), over cached features (emostream/train/features.py): the teacher cache gives h_t and logits, the visual cache
the description embeddings of the same utterances.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from emostream.train.features import join, load_cache
from emostream.train.heads import run_epochs, seed_everything, to_tensors
from emostream.train.losses import class_weights, student_loss
from emostream.train.modules import VisualStudent


@dataclass
class VisualConfig:
    """Visual-student hyperparameters (DDVLM Table 2 defaults for the KD terms)."""

    teacher_train: str = ""
    """Teacher cache (.npz) of the training utterances."""
    teacher_dev: str = ""
    visual_train: str = ""
    """Description-embedding cache (.npz) of the training utterances."""
    visual_dev: str = ""
    run_dir: str = "train/runs/visual"
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    hidden: int = 384
    dropout: float = 0.1
    response_tau: float = 4.0
    relation_tau: float = 1.0
    response_weight: float = 1.0
    relation_weight: float = 1.0
    class_weight_power: float = 0.25
    seed: int = 13


def load_pair(teacher: str, visual: str) -> dict[str, Any]:
    return join(load_cache(teacher, ("keys", "h", "logits", "labels")), load_cache(visual, ("keys", "emb")))


def save_student(model: VisualStudent, out: Path, meta: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(out / "student.safetensors")
    )
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")


def load_student(path: str | Path) -> VisualStudent:
    from safetensors.torch import load_file

    path = Path(path)
    meta = json.loads((path / "meta.json").read_text())
    model = VisualStudent(meta["in_dim"], meta["text_dim"], meta["hidden"], dropout=0.0)
    model.load_state_dict(load_file(str(path / "student.safetensors")))
    return model.eval()


def train_visual(cfg: VisualConfig, resume: bool = True, progress: bool = True) -> dict[str, Any]:
    """Train the visual student; best-on-dev weights go to ``<run_dir>/best/student.safetensors``."""
    seed_everything(cfg.seed)
    train = to_tensors(load_pair(cfg.teacher_train, cfg.visual_train))
    dev = to_tensors(load_pair(cfg.teacher_dev, cfg.visual_dev))
    in_dim, text_dim = int(train["emb"].shape[1]), int(train["h"].shape[1])
    model = VisualStudent(in_dim, text_dim, cfg.hidden, cfg.dropout)
    counts = torch.bincount(train["labels"], minlength=7).tolist()
    weight = class_weights(counts, cfg.class_weight_power)

    def loss_fn(b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        h_s, z_s = model(b["emb"])
        return student_loss(
            z_s,
            h_s,
            b["labels"],
            b["logits"],
            b["h"],
            cfg.response_tau,
            cfg.relation_tau,
            cfg.response_weight,
            cfg.relation_weight,
            weight,
        )

    def save_best(out: Path, best: dict[str, Any]) -> None:
        save_student(model, out, {"in_dim": in_dim, "text_dim": text_dim, "hidden": cfg.hidden, "dev": best})

    return run_epochs(
        model,
        train,
        dev,
        loss_fn,
        lambda b: model(b["emb"])[1],
        Path(cfg.run_dir),
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        seed=cfg.seed,
        config=asdict(cfg),
        save_best=save_best,
        resume=resume,
        progress=progress,
    )
