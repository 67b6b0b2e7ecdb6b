"""Dialogue-model training on generated caches with emotional inertia, and the k-fold split behind it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from emostream.errors import UserError
from emostream.evaluation.meld import read_meld
from emostream.train.dialogue import DialogueConfig, load_split, train_dialogue
from emostream.train.metrics import scores
from emostream.train.synthetic import make_dialogue_cache
from emostream.train.text import fold_split

FIXTURE_CSV = Path(__file__).parents[1] / "fixtures" / "meld" / "dev_sample.csv"


def test_the_dialogue_model_learns_what_single_utterances_miss(tmp_path: Path) -> None:
    train = make_dialogue_cache(tmp_path / "train.npz", 300, seed=0)
    train_noisy = make_dialogue_cache(tmp_path / "train2.npz", 300, seed=0)  # same dialogues, same keys
    dev = make_dialogue_cache(tmp_path / "dev.npz", 120, seed=1)
    cfg = DialogueConfig(
        train_features=[str(train), str(train_noisy)],
        variant_weights=[0.7, 0.3],
        dev_gold=str(dev),
        dev_flat=str(dev),
        run_dir=str(tmp_path / "run"),
        hidden=32,
        epochs=6,
        seeds=[1, 2],
    )
    result = train_dialogue(cfg)
    split = load_split(str(dev), "h+logits")
    alone = scores(np.concatenate(split.labels).tolist(), np.concatenate(split.logits).argmax(1).tolist())
    assert result["ensemble"]["gold"]["weighted_f1"] > alone["weighted_f1"] + 3
    spec = json.loads((tmp_path / "run" / "dialogue.json").read_text())
    assert spec["members"] == 2 and spec["d_in"] == 7 and len(spec["epochs"]) == 2
    assert (tmp_path / "run" / "metrics.json").is_file()


def test_variant_caches_must_hold_the_same_utterances(tmp_path: Path) -> None:
    a = make_dialogue_cache(tmp_path / "a.npz", 20, seed=0)
    b = make_dialogue_cache(tmp_path / "b.npz", 21, seed=0)
    cfg = DialogueConfig(
        train_features=[str(a), str(b)], dev_gold=str(a), run_dir=str(tmp_path / "r"), epochs=1
    )
    with pytest.raises(UserError, match="same utterances"):
        train_dialogue(cfg)


def test_folds_partition_the_dialogues() -> None:
    split = read_meld(FIXTURE_CSV)
    held = [set(fold_split(split, 3, k, held_out=True).dialogues) for k in range(3)]
    rest = [set(fold_split(split, 3, k, held_out=False).dialogues) for k in range(3)]
    assert set().union(*held) == set(split.dialogues) and sum(len(h) for h in held) == len(split.dialogues)
    for h, r in zip(held, rest, strict=True):
        assert not h & r and h | r == set(split.dialogues)
