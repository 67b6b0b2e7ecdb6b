"""A tiny text-teacher training through the CLI: curriculum, EMA, best/ folder the runtime can load, resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from emostream.cli import main
from emostream.evaluation.meld import read_meld
from emostream.inference.prompt import PromptBuilder
from emostream.schema import EMOTIONS


def test_train_text_cli_end_to_end(minilm_dir: Path, meld_csv: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    argv = [
        "train", "text", "--config", "emostream/train/configs/text.toml", "--encoder", str(minilm_dir),
        "--train-csv", str(meld_csv), "--dev-csv", str(meld_csv), "--run-dir", str(run),
        "--set", "curriculum=[0, 48]", "--set", "batch_size=8", "--set", "threads=1", "--no-progress",
    ]  # fmt: skip
    assert main(argv) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    hist = metrics["history"]
    assert [h["context"] for h in hist] == [0, 48] and [h["kd"] for h in hist] == [False, True]
    assert "ema" in hist[1] and "ema" not in hist[0]
    for png in ("curves.png", "confusion.png"):
        assert (run / png).stat().st_size > 5000

    from emostream.train.metrics import scores
    from emostream.train.text import predict
    from emostream.train.text_data import encode_split
    from emostream.train.text_model import load_hf

    best = run / "best"
    meta = json.loads((best / "meta.json").read_text())
    assert meta["labels"] == list(EMOTIONS) and meta["max_tokens"] == 128
    model, _, _ = load_hf(best)
    # the saved tokenizer.json alone (torch-free runtime path) rebuilds the inputs; scores reproduce
    examples = encode_split(
        read_meld(meld_csv), PromptBuilder(Tokenizer.from_file(str(best / "tokenizer.json")), 128)
    )
    logits, h = predict(model, examples, 16)
    assert h.shape == (42, 384)
    again = scores([e.label for e in examples], logits.argmax(1).tolist())
    assert again["weighted_f1"] == pytest.approx(meta["dev"]["weighted_f1"])

    # resuming a finished run trains nothing and keeps the history
    assert main(argv) == 0
    assert json.loads((run / "metrics.json").read_text())["history"] == hist

    # feature caches for the visual/fusion stages: teacher outputs and description embeddings
    assert main(["train", "features", "teacher", "--model", str(best), "--input", str(meld_csv),
                 "--out", str(tmp_path / "t.npz")]) == 0  # fmt: skip
    lines = [
        json.dumps({"dialogue": e.key[0], "utterance": e.key[1], "text": "brows raised"})
        for e in examples[:5]
    ]
    (tmp_path / "d.jsonl").write_text("\n".join(lines) + "\n")
    assert main(["train", "features", "descriptions", "--model", str(minilm_dir),
                 "--input", str(tmp_path / "d.jsonl"), "--out", str(tmp_path / "d.npz")]) == 0  # fmt: skip
    from emostream.train.features import join, load_cache

    joined = join(load_cache(tmp_path / "t.npz", ("keys",)), load_cache(tmp_path / "d.npz", ("keys",)))
    assert joined["emb"].shape == (5, 384) and joined["confidence"].tolist() == [1.0] * 5
    assert (joined["logits"].argmax(1) == logits[:5].argmax(1)).all()

    # ASR text in the teacher cache: transcripts replace the text they cover, as a variant does
    from emostream.evaluation.meld import text_variant

    utts = [u for d in read_meld(meld_csv).dialogues.values() for u in d]
    asr = [{"dialogue": u.dialogue, "utterance": u.index, "text": text_variant(u.text, "flat")} for u in utts]
    half = len(asr) // 2
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(x) + "\n" for x in asr[:half]))
    (tmp_path / "b.jsonl").write_text("".join(json.dumps(x) + "\n" for x in asr[half:]))
    common = ["train", "features", "teacher", "--model", str(best), "--input", str(meld_csv)]
    assert main([*common, "--variant", "flat", "--out", str(tmp_path / "flat.npz")]) == 0
    heard = f"{tmp_path / 'a.jsonl'},{tmp_path / 'b.jsonl'}"
    assert main([*common, "--transcripts", heard, "--out", str(tmp_path / "asr.npz")]) == 0
    flat, spoken = load_cache(tmp_path / "flat.npz", ("keys",)), load_cache(tmp_path / "asr.npz", ("keys",))
    assert np.allclose(flat["logits"], spoken["logits"], atol=1e-5)


def test_bad_override_is_one_line_error(
    meld_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "train",
        "text",
        "--config",
        "emostream/train/configs/text.toml",
        "--set",
        "curriculm=[0]",
        "--run-dir",
        str(tmp_path),
    ]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown config keys ['curriculm']" in err[0]


def test_a_shallow_student_keeps_the_lowest_layers_of_its_encoder(
    minilm_dir: Path, tokenizer: object
) -> None:
    import torch

    from emostream.errors import UserError
    from emostream.train.text_model import build_teacher

    full, cut = build_teacher(minilm_dir, tokenizer), build_teacher(minilm_dir, tokenizer, layers=2)
    assert (full.encoder.config.num_hidden_layers, cut.encoder.config.num_hidden_layers) == (6, 2)
    assert len(cut.encoder.encoder.layer) == 2  # type: ignore[union-attr,arg-type]
    kept, whole = cut.encoder.state_dict(), full.encoder.state_dict()
    assert kept and all(torch.equal(v, whole[k]) for k, v in kept.items())
    with pytest.raises(UserError, match="has 6 layers, cannot keep 7"):
        build_teacher(minilm_dir, tokenizer, layers=7)
