"""Visual student and fusion trainings run end to end on generated caches, learn, report and resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from emostream.errors import UserError
from emostream.train.config import load_config
from emostream.train.dialogue import DialogueConfig
from emostream.train.features import join, load_cache
from emostream.train.fusion import FusionConfig, train_fusion
from emostream.train.synthetic import make_caches
from emostream.train.text import TextConfig
from emostream.train.visual import VisualConfig, load_student, train_visual


@pytest.fixture(scope="module")
def caches(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("caches")
    t_tr, v_tr = make_caches(root, 768, "train", seed=1)
    t_dev, v_dev = make_caches(root, 256, "dev", seed=2)
    return {
        "teacher_train": str(t_tr),
        "visual_train": str(v_tr),
        "teacher_dev": str(t_dev),
        "visual_dev": str(v_dev),
    }


def test_join_matches_keys_across_row_orders(caches: dict[str, str]) -> None:
    t = load_cache(caches["teacher_dev"], ("keys",))
    v = load_cache(caches["visual_dev"], ("keys", "emb"))
    assert not np.array_equal(t["keys"], v["keys"])  # shuffled on purpose
    j = join(t, v)
    assert np.array_equal(j["keys"], t["keys"])
    row = int(np.flatnonzero((v["keys"] == j["keys"][5]).all(1))[0])
    assert np.array_equal(j["emb"][5], v["emb"][row])


def test_visual_then_fusion_train_end_to_end(caches: dict[str, str], tmp_path: Path) -> None:
    vcfg = VisualConfig(**caches, run_dir=str(tmp_path / "visual"), epochs=5)
    result = train_visual(vcfg, progress=False)
    hist = result["history"]
    assert hist[-1]["train_total"] < hist[0]["train_total"]
    assert hist[-1]["train_response"] < hist[0]["train_response"]
    assert result["best"]["weighted_f1"] > 30  # chance-level weighted-F1 on this prior is ~30 at most
    best = tmp_path / "visual" / "best"
    assert (best / "student.safetensors").is_file() and load_student(best).head.out_features == 7
    for png in ("curves.png", "confusion.png"):
        assert (tmp_path / "visual" / png).stat().st_size > 5000

    # resuming continues from last.pt instead of starting over
    more = train_visual(VisualConfig(**caches, run_dir=str(tmp_path / "visual"), epochs=6), progress=False)
    assert [h["epoch"] for h in more["history"]] == list(range(1, 7))
    assert more["history"][:5] == hist

    fcfg = FusionConfig(**caches, student=str(best), run_dir=str(tmp_path / "fusion"), epochs=6)
    fused = train_fusion(fcfg, progress=False)
    fh = fused["history"]
    assert fh[-1]["train_total"] < fh[0]["train_total"]
    assert all(0.05 <= h["train_gate"] <= 0.5 for h in fh)
    assert fused["best"]["weighted_f1"] > fh[0]["dev_text_only"]["weighted_f1"]  # the visual cue pays here
    assert fh[-1]["alpha"] != pytest.approx(0.3)
    meta = json.loads((tmp_path / "fusion" / "best" / "meta.json").read_text())
    assert (
        meta["dev_text_only"]["n"] == 256 and (tmp_path / "fusion" / "best" / "fusion.safetensors").is_file()
    )


def test_config_files_and_unknown_keys(tmp_path: Path) -> None:
    cfg_file = tmp_path / "v.toml"
    cfg_file.write_text("epochs = 3\nresponse_tau = 4.0\n")
    cfg = load_config(VisualConfig, cfg_file, {"lr": 0.01, "seed": None})
    assert (cfg.epochs, cfg.lr, cfg.seed) == (3, 0.01, 13)
    cfg_file.write_text("epoch = 3\n")
    with pytest.raises(UserError, match="unknown config keys"):
        load_config(VisualConfig, cfg_file)
    kinds = {"visual": VisualConfig, "fusion": FusionConfig, "dialogue": DialogueConfig}
    for shipped in Path("emostream/train/configs").glob("*.toml"):
        load_config(kinds.get(shipped.stem.split("-")[0], TextConfig), shipped)


def test_a_config_states_only_what_it_changes_from_its_base(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text("epochs = 3\nlr = 0.5\n")
    (tmp_path / "b.toml").write_text('base = "a.toml"\nlr = 0.01\n')
    merged = load_config(VisualConfig, tmp_path / "b.toml")
    assert (merged.epochs, merged.lr) == (3, 0.01)
    (tmp_path / "a.toml").write_text('base = "b.toml"\n')
    with pytest.raises(UserError, match="loops back"):
        load_config(VisualConfig, tmp_path / "b.toml")
    (tmp_path / "b.toml").write_text('base = "gone.toml"\n')
    with pytest.raises(UserError, match="gone.toml"):
        load_config(VisualConfig, tmp_path / "b.toml")
    l4 = load_config(TextConfig, "emostream/train/configs/text-l4-kd.toml")
    kd = load_config(TextConfig, "emostream/train/configs/text-utt-kd.toml")
    assert (l4.encoder_model, l4.encoder_layers, l4.kd_loss, l4.curriculum) == (
        "all-mpnet-base-v2",
        4,
        kd.kd_loss,
        kd.curriculum,
    )
