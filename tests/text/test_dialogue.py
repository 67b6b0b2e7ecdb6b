"""Dialogue history: bounded, past-only, ordered by start time, idempotent, speaker tokens by first turn."""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer

from emostream.evaluation.meld import read_meld
from emostream.inference.dialogue import DialogueHistory, meld_prompts
from emostream.inference.prompt import SPEAKER_TOKENS, PromptBuilder

from .helpers import FIXTURE_CSV, TinyModels


def _builder(tiny_models: TinyModels, max_tokens: int = 128) -> PromptBuilder:
    tok: object = Tokenizer.from_file(str(Path(tiny_models.checkpoint) / "tokenizer.json"))
    return PromptBuilder(tok, max_tokens=max_tokens)  # type: ignore[arg-type]


def _words(builder: PromptBuilder, ids: list[int]) -> str:
    return builder.tokenizer.decode(ids, skip_special_tokens=False)  # type: ignore[attr-defined,no-any-return]


def test_history_is_bounded(tiny_models: TinyModels) -> None:
    h = DialogueHistory(_builder(tiny_models), limit=3)
    for i in range(10):
        h.add(f"r/a/{i}", "alice" if i % 2 else "bob", float(i), f"turn number {i}")
        assert len(h) == min(i + 1, 3)
    assert [t.key for t in h.turns] == ["r/a/7", "r/a/8", "r/a/9"]


def test_prompt_sees_only_past_turns_in_start_order(tiny_models: TinyModels) -> None:
    b = _builder(tiny_models)
    h = DialogueHistory(b, limit=8)
    h.add("k2", "bob", 2.0, "zebra")
    first = h.add("k1", "alice", 1.0, "apple").prompt  # arrives late, started earlier
    text = _words(b, first.ids)
    assert "apple" in text and "zebra" not in text  # never a later utterance
    second = _words(b, h.prompt_for("k2").ids)
    assert second.index("apple") < second.index("zebra")
    assert first.ids[first.mask_pos] == b.tokenizer.token_to_id("[MASK]")


def test_redelivery_is_idempotent_and_speakers_keep_their_token(tiny_models: TinyModels) -> None:
    b = _builder(tiny_models)
    h = DialogueHistory(b, limit=2)
    a = h.add("k1", "alice", 1.0, "hello there")
    assert h.add("k1", "alice", 1.0, "hello there").prompt == a.prompt and len(h) == 1
    h.add("k2", "bob", 2.0, "hi")
    h.add("k3", "carol", 3.0, "hey")
    last = h.add("k4", "alice", 4.0, "again").prompt  # alice's turns left the window, her index stays 0
    s0 = b.tokenizer.token_to_id(SPEAKER_TOKENS[0])
    assert last.ids[-4] == s0  # "now <s0> feels [MASK] [SEP]"


def test_long_history_is_left_truncated_to_the_token_budget(tiny_models: TinyModels) -> None:
    b = _builder(tiny_models, max_tokens=32)
    h = DialogueHistory(b, limit=32)
    for i in range(20):
        p = h.add(f"k{i}", "alice", float(i), f"sentence {i} with several words").prompt
        assert len(p.ids) <= 32
    assert "19" in _words(b, p.ids) and " 0 " not in _words(b, p.ids)


def test_meld_prompts_cover_every_utterance(tiny_models: TinyModels) -> None:
    b = _builder(tiny_models)
    split = read_meld(FIXTURE_CSV)
    total = sum(len(meld_prompts(b, d)) for d in split.dialogues.values())
    assert total == len(split) == 42
