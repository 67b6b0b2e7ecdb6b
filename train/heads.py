"""A small epoch loop shared by the visual-student and fusion trainings (cached features, tiny models).

Handles seeds, shuffled mini-batches, per-epoch dev scoring, best-on-dev weights, resumable
``last.pt``, ``metrics.json`` and the PNG report.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from emostream.train.metrics import scores

log = logging.getLogger("emostream.train")

Batch = dict[str, torch.Tensor]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def to_tensors(data: dict[str, np.ndarray]) -> Batch:
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in data.items() if k != "keys"}


def run_epochs(
    model: nn.Module,
    train: Batch,
    dev: Batch,
    loss_fn: Callable[[Batch], dict[str, torch.Tensor]],
    predict_fn: Callable[[Batch], torch.Tensor],
    run_dir: Path,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    seed: int,
    config: dict[str, Any],
    save_best: Callable[[Path, dict[str, Any]], None],
    resume: bool = True,
    progress: bool = True,
    extra_dev: Callable[[], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Train ``model`` with AdamW on ``loss_fn(batch)["total"]``; score ``predict_fn(dev)`` each epoch."""
    seed_everything(seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {"weighted_f1": -1.0}
    start = 1
    ckpt = run_dir / "last.pt"
    if resume and ckpt.exists():
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        history, best, start = state["history"], state["best"], state["epoch"] + 1
        torch.set_rng_state(state["torch_rng"])
        log.info("resumed from %s after epoch %d", ckpt, state["epoch"])
    (run_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    n = len(train["labels"])
    dev_labels = dev["labels"].tolist()
    t_start = time.time()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=epochs, initial=start - 1, desc=run_dir.name, unit="epoch")
    for epoch in range(start, epochs + 1):
        model.train()
        gen = torch.Generator().manual_seed(seed + epoch)
        order = torch.randperm(n, generator=gen)
        sums: dict[str, float] = {}
        steps = 0
        for lo in range(0, n, batch_size):
            idx = order[lo : lo + batch_size]
            if len(idx) < 2:  # batch statistics (Pearson over the batch) need two rows
                continue
            parts = loss_fn({k: v[idx] for k, v in train.items()})
            opt.zero_grad(set_to_none=True)
            parts["total"].backward()
            opt.step()
            steps += 1
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
        model.eval()
        with torch.no_grad():
            preds = predict_fn(dev).argmax(-1).tolist()
        entry: dict[str, Any] = {"epoch": epoch, **{f"train_{k}": v / max(1, steps) for k, v in sums.items()}}
        entry["dev"] = scores(dev_labels, preds)
        if extra_dev is not None:
            entry.update(extra_dev())
        history.append(entry)
        if entry["dev"]["weighted_f1"] > best["weighted_f1"]:
            best = {**entry["dev"], "epoch": epoch}
            save_best(run_dir / "best", best)
        log.info(
            "epoch %d loss %.4f dev wF1 %.2f acc %.2f",
            epoch,
            entry.get("train_total", 0.0),
            entry["dev"]["weighted_f1"],
            entry["dev"]["accuracy"],
        )
        torch.save(
            {
                "model": model.state_dict(),
                "opt": opt.state_dict(),
                "history": history,
                "best": best,
                "epoch": epoch,
                "torch_rng": torch.get_rng_state(),
            },
            ckpt,
        )
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    result = {
        "config": config,
        "history": history,
        "best": best,
        "wall_minutes": (time.time() - t_start) / 60,
    }
    (run_dir / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    from emostream.train.report import write_report

    write_report(run_dir)
    return result
