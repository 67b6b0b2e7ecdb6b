"""Teacher inputs: format, left truncation, and no future utterance ever leaking into a prediction."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from emostream.evaluation.meld import read_meld, speaker_indices
from emostream.inference.prompt import PromptBuilder, Turn, prompt_text
from emostream.train.text_data import encode_split


def _decode(tokenizer: Any, ids: list[int]) -> str:
    return tokenizer.backend_tokenizer.decode(ids, skip_special_tokens=False)


def test_format_and_mask_position(tokenizer: Any) -> None:
    builder = PromptBuilder(tokenizer.backend_tokenizer, 128)
    p = builder.build([Turn(0, "Hello there."), Turn(1, "Hi!")])
    assert _decode(tokenizer, p.ids) == "[CLS] <s0> hello there. <s1> hi! now <s1> feels [MASK] [SEP]"
    assert p.ids[p.mask_pos] == tokenizer.mask_token_id and p.mask_pos == len(p.ids) - 2
    assert (
        prompt_text([Turn(0, "Hello there."), Turn(1, "Hi!")])
        == "<s0> Hello there. <s1> Hi! now <s1> feels [MASK]"
    )


def test_left_truncation_keeps_the_end_and_the_prompt(tokenizer: Any) -> None:
    builder = PromptBuilder(tokenizer.backend_tokenizer, 24)
    turns = [Turn(i % 2, f"word{i} " * 6) for i in range(6)] + [Turn(2, "the final words")]
    p = builder.build(turns)
    text = _decode(tokenizer, p.ids)
    assert len(p.ids) == 24
    assert text.endswith("<s2> the final words now <s2> feels [MASK] [SEP]") and text.startswith("[CLS]")
    assert "word0" not in text
    # the budget is a hard cap even when the current utterance alone is longer
    long = builder.build([Turn(0, "very " * 80 + "end")])
    assert len(long.ids) == 24 and _decode(tokenizer, long.ids).endswith("end now <s0> feels [MASK] [SEP]")


def test_max_past_turns_zero_is_the_current_utterance_only(tokenizer: Any) -> None:
    builder = PromptBuilder(tokenizer.backend_tokenizer, 128)
    p = builder.build([Turn(0, "earlier"), Turn(1, "now this")], max_past_turns=0)
    assert _decode(tokenizer, p.ids) == "[CLS] <s1> now this now <s1> feels [MASK] [SEP]"


def test_no_future_utterance_leaks(tokenizer: Any, tmp_path: Path) -> None:
    """Each utterance carries a unique marker word; an input may only contain markers of its past."""
    header = "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime\n"
    rows, n = [], 0
    for d in range(3):
        for u in range(7):
            rows.append(f"{n},marker{d}x{u} says hi,spk{(u * 3) % 4},neutral,neutral,{d},{u},1,1,a,b")
            n += 1
    csv = tmp_path / "gen.csv"
    csv.write_text(header + "\n".join(reversed(rows)) + "\n")  # file order must not matter
    split = read_meld(csv)
    builder = PromptBuilder(tokenizer.backend_tokenizer, 512)
    examples = encode_split(split, builder)
    assert len(examples) == 21
    for ex in examples:
        d, u = ex.key
        text = _decode(tokenizer, ex.ids)
        seen = {(dd, uu) for dd in range(3) for uu in range(7) if f"marker{dd}x{uu} " in text}
        assert seen == {(d, k) for k in range(u + 1)}, (ex.key, text)
    # the runtime's one-call path gives the same ids as training's per-dialogue path
    turns = split.dialogues[1]
    spk = speaker_indices(turns)
    full = [Turn(s, t.text) for s, t in zip(spk, turns, strict=True)]
    for k in range(len(full)):
        assert builder.build(full[: k + 1]).ids == examples[7 + k].ids


def test_builder_rejects_a_tokenizer_without_speaker_tokens(minilm_dir: Path) -> None:
    from tokenizers import Tokenizer

    with pytest.raises(ValueError, match="speaker tokens"):
        PromptBuilder(Tokenizer.from_file(str(minilm_dir / "tokenizer.json")), 128)


def test_roberta_style_vocabulary_uses_its_own_special_tokens() -> None:
    """An MPNet-style vocabulary (the distillation teacher's) lists BERT's [CLS]/[SEP]/[MASK] too, unused
    in its pretraining: the builder must pick <s>, </s> and <mask>."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {
        t: i for i, t in enumerate(["<s>", "<pad>", "</s>", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "<mask>"])
    }
    for word in ["hi", "now", "feels", *[f"<s{k}>" for k in range(9)]]:
        vocab[word] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    p = PromptBuilder(tok, 32).build([Turn(0, "hi")])
    assert [tok.id_to_token(i) for i in p.ids] == [
        "<s>",
        "<s0>",
        "hi",
        "now",
        "<s0>",
        "feels",
        "<mask>",
        "</s>",
    ]
    assert p.mask_pos == 6
