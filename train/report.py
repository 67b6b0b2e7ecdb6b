"""Run reports: confusion-matrix PNG and training-curves PNG from a run's metrics.json."""

from __future__ import annotations

import json
from pathlib import Path

from emostream.evaluation.plots import plot_confusion, pyplot


def plot_curves(
    epochs: list[int], losses: list[float], dev: dict[str, list[float]], out: Path, title: str
) -> Path:
    """Train loss (left) and dev weighted-F1 / accuracy per epoch (right)."""
    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(epochs, losses, marker="o")
    a.xaxis.get_major_locator().set_params(integer=True)
    b.xaxis.get_major_locator().set_params(integer=True)
    a.set_xlabel("epoch")
    a.set_ylabel("train loss")
    for name, values in dev.items():
        b.plot(epochs, values, marker="o", label=name)
    b.set_xlabel("epoch")
    b.set_ylabel("dev (%)")
    b.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def write_text_report(run_dir: str | Path) -> list[Path]:
    """Plots for a text-teacher run (history entries carry "model" and optionally "ema" dev scores)."""
    run = Path(run_dir)
    m = json.loads((run / "metrics.json").read_text())
    hist = m["history"]
    epochs = [h["epoch"] for h in hist]
    dev: dict[str, list[float]] = {}
    for which in ("model", "ema"):
        for key, label in (("weighted_f1", "wF1"), ("accuracy", "acc")):
            vals = [h[which][key] if which in h else float("nan") for h in hist]  # no EMA in epoch 1
            if any(which in h for h in hist):
                dev[f"{which} {label}"] = vals
    out = [plot_curves(epochs, [h["train_loss"] for h in hist], dev, run / "curves.png", run.name)]
    best = m.get("best", {})
    if "confusion" in best:
        title = (
            f"{run.name} dev (epoch {best.get('epoch')} {best.get('which', '')}, wF1 {best['weighted_f1']})"
        )
        out.append(plot_confusion(best["confusion"], run / "confusion.png", title))
    return out


def write_report(run_dir: str | Path) -> list[Path]:
    """Plots for a run written by emostream.train.heads.run_epochs (history entries carry "dev")."""
    run = Path(run_dir)
    m = json.loads((run / "metrics.json").read_text())
    hist = m["history"]
    if not hist:
        return []
    epochs = [h["epoch"] for h in hist]
    dev = {"wF1": [h["dev"]["weighted_f1"] for h in hist], "acc": [h["dev"]["accuracy"] for h in hist]}
    out = [plot_curves(epochs, [h.get("train_total", 0.0) for h in hist], dev, run / "curves.png", run.name)]
    best = m.get("best", {})
    if "confusion" in best:
        out.append(
            plot_confusion(
                best["confusion"], run / "confusion.png", f"{run.name} dev (epoch {best['epoch']})"
            )
        )
    return out
