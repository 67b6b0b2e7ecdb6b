"""KD targets from a larger teacher: every form of every line scored once, looked up by the text read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from emostream.cli import main
from emostream.errors import UserError
from emostream.evaluation.meld import read_meld, speaker_indices, text_variant
from emostream.inference.prompt import PromptBuilder, Turn
from emostream.schema import EMOTIONS
from emostream.train.teacher_targets import TeacherTargets, forms_of
from emostream.train.text_data import Example, spoken_noise


def test_forms_are_distinct_gold_first() -> None:
    assert forms_of("Oh my God!", None) == ["Oh my God!", "Oh my God.", "Oh my God"]
    assert forms_of("okay", "Okay.") == ["okay", "Okay."]  # flat and bare equal gold: one row
    assert forms_of("Yes?", "Yes.") == ["Yes?", "Yes.", "Yes"]  # a transcript equal to a form adds none


@pytest.fixture(scope="module")
def teacher(minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained utterance-only teacher folder whose head leans to "fear" (rare in the gold labels), so
    following it and following the labels lead to different predictions."""
    import torch

    from emostream.train.text_model import build_teacher, load_tokenizer, meta_for, save_hf

    torch.manual_seed(0)
    tok = load_tokenizer(minilm_dir)
    model = build_teacher(minilm_dir, tok)
    with torch.no_grad():
        model.head.bias[EMOTIONS.index("fear")] += 3.0
    out = tmp_path_factory.mktemp("teacher") / "best"
    save_hf(model, tok, out, meta_for(128, 384, context_turns=0))
    return out


def _transcripts(meld_csv: Path, path: Path) -> dict[tuple[int, int], str]:
    utts = [u for d in read_meld(meld_csv).dialogues.values() for u in d]
    heard = {(u.dialogue, u.index): u.text.upper() + " uh" for u in utts[::2]}  # half the lines
    path.write_text(
        "".join(json.dumps({"dialogue": d, "utterance": i, "text": t}) + "\n" for (d, i), t in heard.items())
    )
    return heard


def test_cli_scores_every_form_as_the_teacher_reads_it_alone(
    teacher: Path, meld_csv: Path, tmp_path: Path, capsys: Any
) -> None:
    from emostream.train.text import predict
    from emostream.train.text_model import load_hf

    heard = _transcripts(meld_csv, tmp_path / "asr.jsonl")
    out = tmp_path / "targets.npz"
    argv = ["train", "teacher-targets", "--teacher", str(teacher), "--csv", str(meld_csv),
            "--transcripts", str(tmp_path / "asr.jsonl"), "--out", str(out), "--threads", "1"]  # fmt: skip
    assert main(argv) == 0
    split = read_meld(meld_csv)
    utts = [u for d in split.dialogues.values() for u in d]
    expected = sum(len(forms_of(u.text, heard.get((u.dialogue, u.index)))) for u in utts)
    assert json.loads(capsys.readouterr().out)["rows"] == expected > 2 * len(utts)

    # one utterance deep in a dialogue, read flat: the row equals the teacher on that text alone
    model, tok, _ = load_hf(teacher)
    dialogue = next(d for d in split.dialogues.values() if len(d) > 3)
    u, speaker = dialogue[3], speaker_indices(dialogue)[3]
    flat = text_variant(u.text, "flat")
    p = PromptBuilder(tok.backend_tokenizer, 128, past_turns=0).build([Turn(speaker, flat)], 0)
    want, _ = predict(model, [Example(p.ids, p.mask_pos, u.label, (u.dialogue, u.index), flat)], 1)
    targets = TeacherTargets([out])
    got = targets.batch([Example([], 0, 0, (u.dialogue, u.index), flat)]).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)

    # every text the student's noise can produce has a target; a text never scored is a clear error
    noise = spoken_noise(3, 0.3, 0.3, heard, 0.3)
    drawn = [Example([], 0, 0, (x.dialogue, x.index), noise(x)) for x in utts for _ in range(4)]
    assert targets.coverage(drawn) == 1.0
    with pytest.raises(UserError, match="no teacher target"):
        targets.batch([Example([], 0, 0, (u.dialogue, u.index), "never said")])


def test_a_teacher_that_reads_context_is_refused(minilm_dir: Path, meld_csv: Path, tmp_path: Path) -> None:
    from emostream.train.teacher_targets import write_targets
    from emostream.train.text_model import build_teacher, load_tokenizer, meta_for, save_hf

    tok = load_tokenizer(minilm_dir)
    save_hf(build_teacher(minilm_dir, tok), tok, tmp_path / "ctx", meta_for(128, 384))
    with pytest.raises(UserError, match="reads context"):
        write_targets(tmp_path / "ctx", read_meld(meld_csv), tmp_path / "t.npz")


def test_student_trains_toward_the_cached_teacher(
    teacher: Path, minilm_dir: Path, meld_csv: Path, tmp_path: Path
) -> None:
    """Pure KD (alpha 0) from epoch 1 toward the teacher: the student ends closer to the teacher's
    predictions than the same run with CE only; a cache lacking most train texts is refused up front."""
    from emostream.config import Settings
    from emostream.train.teacher_targets import write_targets
    from emostream.train.text import TextConfig, train_text

    split = read_meld(meld_csv)
    cache = write_targets(teacher, split, tmp_path / "t.npz")
    teacher_top = TeacherTargets([cache])

    def run(name: str, **kw: Any) -> dict[str, Any]:
        cfg = TextConfig(
            train_csv=str(meld_csv), dev_csv=str(meld_csv), encoder=str(minilm_dir), run_dir=str(tmp_path / name),
            curriculum=[0, 0, 0], eval_context=0, batch_size=8, threads=1, self_distill=False, kd_start_epoch=1,
            punct_flat=0.3, punct_bare=0.2, lr_encoder=1e-4, **kw,
        )  # fmt: skip
        return train_text(cfg, Settings(), progress=False)

    def agreement(name: str) -> float:
        from emostream.train.text import predict
        from emostream.train.text_model import load_hf

        model, tok, _ = load_hf(tmp_path / name / "best")
        b = PromptBuilder(tok.backend_tokenizer, 128, past_turns=0)
        ex = []
        for d in split.dialogues.values():
            for s, u in zip(speaker_indices(d), d, strict=True):
                p = b.build([Turn(s, u.text)], 0)
                ex.append(Example(p.ids, p.mask_pos, u.label, (u.dialogue, u.index), u.text))
        logits, _ = predict(model, ex, 16)
        want = teacher_top.batch(ex).numpy().argmax(1)
        return float((logits.argmax(1) == want).mean())

    kd = run("kd", teacher_targets=[str(cache)], kd_alpha=0.0, kd_tau=1.0)
    assert [h["kd"] for h in kd["history"]] == [True, True, True]
    run("ce")
    assert agreement("kd") > agreement("ce")

    partial = tmp_path / "partial.npz"
    c = dict(np.load(cache))
    np.savez(partial, keys=c["keys"][:3], texts=c["texts"][:3], logits=c["logits"][:3])
    with pytest.raises(UserError, match="cover"):
        run("partial", teacher_targets=[str(partial)])
