"""Text-teacher input from past-only dialogue history (torch-free; training and the context worker share it).

Format, before tokenization (the tokenizer lower-cases)::

    [CLS] <s0> first utterance <s1> second ... <sK> current utterance now <sK> feels [MASK] [SEP]

``<s0>``..``<s8>`` are special tokens added to the MiniLM tokenizer (index = order of first appearance of
the speaker in the dialogue, modulo 9); they live in the exported tokenizer.json, so a plain
``tokenizers.Tokenizer`` reproduces them at run time. The history is left-truncated at token level so the
whole input fits ``max_tokens``; the prompt is never truncated. The classifier reads the final hidden state
of the ``[MASK]`` token (position ``mask_pos``). Only turns up to and including the current one are ever
passed in: a prediction never sees a later utterance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

N_SPEAKER_TOKENS = 9
SPEAKER_TOKENS: tuple[str, ...] = tuple(f"<s{i}>" for i in range(N_SPEAKER_TOKENS))
MASK_TOKEN = "[MASK]"
SPECIAL_TOKENS: dict[str, tuple[str, ...]] = {
    "cls": ("<s>", "[CLS]"),
    "sep": ("</s>", "[SEP]"),
    "mask": ("<mask>", MASK_TOKEN),
}
"""Each role's spelling in a RoBERTa-style (MPNet) and a BERT-style (MiniLM) vocabulary, first found wins.
The runtime student is MiniLM, whose vocabulary has no ``<s>``; the larger teacher it is distilled from
(train/, all-mpnet-base-v2) was pretrained with ``<s>`` though its vocabulary also lists an unused
``[CLS]``, hence this order. The prompt text always writes ``[MASK]``; only its id changes."""
PROMPT_FORMAT = "now {speaker} feels [MASK]"
"""The prompt appended after the history; ``{speaker}`` is the current speaker's token."""


def speaker_token(index: int) -> str:
    """The special token of the speaker with first-appearance index ``index``."""
    return SPEAKER_TOKENS[index % N_SPEAKER_TOKENS]


class _Encoding(Protocol):
    @property
    def ids(self) -> list[int]: ...


class TokenizerLike(Protocol):
    """The part of ``tokenizers.Tokenizer`` used here."""

    def encode(self, sequence: str, add_special_tokens: bool = ...) -> _Encoding: ...

    def token_to_id(self, token: str) -> int | None: ...


@dataclass(frozen=True)
class Turn:
    """One utterance of the dialogue so far."""

    speaker: int
    """Speaker index within the dialogue (first appearance order)."""
    text: str


@dataclass(frozen=True)
class PromptInput:
    """Token ids ready for the encoder and where the [MASK] sits."""

    ids: list[int]
    mask_pos: int


def prompt_text(turns: Sequence[Turn], max_past_turns: int | None = None) -> str:
    """The untruncated input text (for logs and docs); the last turn is the one to classify."""
    if not turns:
        raise ValueError("need at least the current turn")
    kept = list(turns) if max_past_turns is None else list(turns)[-(max_past_turns + 1) :]
    body = " ".join(f"{speaker_token(t.speaker)} {t.text}" for t in kept)
    return f"{body} {PROMPT_FORMAT.format(speaker=speaker_token(turns[-1].speaker))}"


class PromptBuilder:
    """Builds :class:`PromptInput` for a turn given its past; caches nothing, so it is thread-safe.

    Turns off the tokenizer's own padding and truncation (in place): this class does both.
    """

    def __init__(
        self, tokenizer: TokenizerLike, max_tokens: int = 128, past_turns: int | None = None
    ) -> None:
        ids = {t: tokenizer.token_to_id(t) for t in SPEAKER_TOKENS}
        for role, spellings in SPECIAL_TOKENS.items():
            ids[role] = next((i for i in map(tokenizer.token_to_id, spellings) if i is not None), None)
        missing = [t for t, i in ids.items() if i is None]
        if missing:
            raise ValueError(f"tokenizer lacks tokens {missing}; add the speaker tokens first")
        for switch in ("no_padding", "no_truncation"):  # sentence-transformers ships Fixed(128) padding
            getattr(tokenizer, switch, lambda: None)()
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        self.past_turns = past_turns
        """At most this many past turns in an input (None = as many as fit; 0 = the current utterance only,
        for an encoder whose past is read by a dialogue model)."""
        self._cls = int(ids["cls"] or 0)
        self._sep = int(ids["sep"] or 0)
        self._mask = int(ids["mask"] or 0)
        self._prompt = {
            k: self._encode(PROMPT_FORMAT.format(speaker=speaker_token(k)).replace(MASK_TOKEN, ""))
            + [self._mask]
            for k in range(N_SPEAKER_TOKENS)
        }
        if max_tokens < 2 + max(len(p) for p in self._prompt.values()) + 1:
            raise ValueError(f"max_tokens={max_tokens} leaves no room for the utterance")

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def turn_ids(self, turn: Turn) -> list[int]:
        """Token ids of one history segment: speaker token then the utterance."""
        return self._encode(f"{speaker_token(turn.speaker)} {turn.text}")

    def assemble(self, segments: Sequence[Sequence[int]], speaker: int) -> PromptInput:
        """Join pre-tokenized segments (oldest first, current last), left-truncate, add the prompt."""
        if self.past_turns is not None:
            segments = segments[-(self.past_turns + 1) :]
        prompt = self._prompt[speaker % N_SPEAKER_TOKENS]
        budget = self.max_tokens - 2 - len(prompt)
        body = [i for seg in segments for i in seg]
        body = body[-budget:] if len(body) > budget else body
        ids = [self._cls, *body, *prompt, self._sep]
        return PromptInput(ids=ids, mask_pos=len(ids) - 2)

    def build(self, turns: Sequence[Turn], max_past_turns: int | None = None) -> PromptInput:
        """Input for ``turns[-1]`` given ``turns[:-1]`` (at most ``max_past_turns`` of them)."""
        if not turns:
            raise ValueError("need at least the current turn")
        kept = list(turns) if max_past_turns is None else list(turns)[-(max_past_turns + 1) :]
        return self.assemble([self.turn_ids(t) for t in kept], turns[-1].speaker)

    def build_dialogue(self, turns: Sequence[Turn], max_past_turns: int | None = None) -> list[PromptInput]:
        """Inputs for every turn of a dialogue, each from its own past only (tokenizes each turn once)."""
        segments = [self.turn_ids(t) for t in turns]
        out = []
        for k in range(len(turns)):
            lo = 0 if max_past_turns is None else max(0, k - max_past_turns)
            out.append(self.assemble(segments[lo : k + 1], turns[k].speaker))
        return out
