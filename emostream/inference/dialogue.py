"""One room's dialogue so far, as the text teacher needs it (torch-free, shared by the context worker and
``emostream eval meld``, so evaluation runs the exact live code path).

Bounded to the last ``limit`` utterances. Turns are ordered by start time, so a transcript that arrives
late (concurrent handlers, several ASR workers) still lands in its place, and a prediction only ever sees
turns that started before it (past-only, the live setting). Each turn is tokenized once. Speakers get the
index of their first appearance in the room, kept even after their turns fall out of the window.

A model with a dialogue model (emostream.inference.dialogue_model) encodes each turn alone and reads the
window of encodings; the history keeps each turn's encoding (:meth:`DialogueHistory.remember`), so a
turn is encoded once, and one never encoded here (added by the tail or a rebuild) is encoded when first
needed. A turn heard as several ASR hypotheses (``Transcript.hypotheses``) keeps each distinct reading
with its weight, and its encoding is their weighted mean: the prompt of a model without a dialogue model
reads the best one only.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from emostream.inference.prompt import PromptBuilder, PromptInput, Turn

if TYPE_CHECKING:
    from emostream.evaluation.meld import Utterance as MeldUtterance

MAX_SPEAKERS = 1024
"""Bound on remembered speaker indices per room (indices wrap modulo the 9 speaker tokens anyway)."""
MAX_READINGS = 8
"""Bound on the ASR readings read per turn (each is one more encoder row); the best ones are kept."""


@dataclass(frozen=True, order=True)
class _Turn:
    start: float
    key: str
    speaker: int = field(compare=False)
    segment: tuple[int, ...] = field(compare=False)
    readings: Readings = field(default=(), compare=False)


Readings = tuple[tuple[tuple[int, ...], float], ...]
"""A turn's distinct ASR readings as (segment token ids, weight), best first; empty: ``segment`` alone."""

Encoding = tuple[np.ndarray, np.ndarray]
"""One turn's encoder output alone: ([MASK] state [H], logits [7])."""


@dataclass(frozen=True)
class Window:
    """What a decision on one turn reads, taken when the turn was added (before the history is trimmed)."""

    prompt: PromptInput
    """The current turn's encoder input (with as much past as the model's prompt takes)."""
    keys: tuple[str, ...]
    """The turns up to and including the current one, oldest first (at most ``limit``)."""
    speakers: tuple[int, ...]
    segments: tuple[tuple[int, ...], ...]
    encodings: tuple[Encoding | None, ...]
    """Each turn's encoding alone, where this history already holds it."""
    readings: tuple[Readings, ...] = ()
    """Each turn's ASR readings (an empty tuple: its segment alone); empty: a window built without them."""


class DialogueHistory:
    """The last ``limit`` utterances of one room, in start-time order."""

    def __init__(self, builder: PromptBuilder, limit: int = 32) -> None:
        if limit < 1:
            raise ValueError("history limit must be >= 1")
        self.builder = builder
        self.limit = limit
        self.turns: list[_Turn] = []
        self.speakers: dict[str, int] = {}
        self.encodings: dict[str, Encoding] = {}

    def __len__(self) -> int:
        return len(self.turns)

    def speaker_index(self, speaker: str) -> int:
        index = self.speakers.get(speaker)
        if index is None:
            index = len(self.speakers)
            if len(self.speakers) >= MAX_SPEAKERS:
                self.speakers.pop(next(iter(self.speakers)))
            self.speakers[speaker] = index
        return index

    def add(
        self,
        key: str,
        speaker: str,
        start: float,
        text: str,
        hypotheses: Sequence[tuple[str, float]] = (),
    ) -> Window:
        """Insert a turn (once per ``key``: redelivery changes nothing) and return its :class:`Window`.

        ``hypotheses``: the ASR's (text, weight) readings, best first (``text`` is the first). The window is
        taken before the history is trimmed, so even a turn older than the whole window gets its own
        (short) context instead of none.
        """
        if not any(t.key == key for t in self.turns):
            index = self.speaker_index(speaker)
            segment = tuple(self.builder.turn_ids(Turn(speaker=index, text=text)))
            readings = self._readings(index, hypotheses)
            bisect.insort(
                self.turns, _Turn(start=start, key=key, speaker=index, segment=segment, readings=readings)
            )
        window = self.window(key)
        for gone in self.turns[: max(0, len(self.turns) - self.limit)]:
            self.encodings.pop(gone.key, None)
        del self.turns[: max(0, len(self.turns) - self.limit)]
        return window

    def _readings(self, speaker: int, hypotheses: Sequence[tuple[str, float]]) -> Readings:
        """Distinct token segments of the hypotheses with summed weights (readings that differ only in
        what the tokenizer folds, such as case, are one); empty when one reading is left."""
        merged: dict[tuple[int, ...], float] = {}
        for text, weight in hypotheses[:MAX_READINGS]:
            if not math.isfinite(weight) or weight <= 0:  # a broken producer's weight says nothing
                continue
            seg = tuple(self.builder.turn_ids(Turn(speaker=speaker, text=text)))
            merged[seg] = merged.get(seg, 0.0) + float(weight)
        total = sum(merged.values())
        if len(merged) < 2 or total <= 0:
            return ()
        return tuple((seg, w / total) for seg, w in merged.items())

    def window(self, key: str) -> Window:
        """The window of turn ``key``: the turns before it (at most ``limit`` - 1 of them) and itself."""
        for i, turn in enumerate(self.turns):
            if turn.key == key:
                past = self.turns[max(0, i - self.limit + 1) : i + 1]
                return Window(
                    prompt=self.builder.assemble([t.segment for t in past], turn.speaker),
                    keys=tuple(t.key for t in past),
                    speakers=tuple(t.speaker for t in past),
                    segments=tuple(t.segment for t in past),
                    encodings=tuple(self.encodings.get(t.key) for t in past),
                    readings=tuple(t.readings for t in past),
                )
        raise KeyError(key)

    def prompt_for(self, key: str) -> PromptInput:
        """Teacher input for turn ``key`` from the turns before it (at most ``limit`` - 1 of them)."""
        return self.window(key).prompt

    def remember(self, encodings: dict[str, Encoding]) -> None:
        """Keep turns' encodings (from :meth:`emostream.inference.text.TextModel.decide`) while they are in
        the window; a turn trimmed meanwhile is not kept."""
        present = {t.key for t in self.turns}
        self.encodings.update((k, v) for k, v in encodings.items() if k in present)


def meld_prompts(
    builder: PromptBuilder, dialogue: Sequence[MeldUtterance], limit: int = 32
) -> list[PromptInput]:
    """Teacher inputs for every utterance of one MELD dialogue, each from its own past only (gold text)."""
    history = DialogueHistory(builder, limit)
    return [history.add(str(u.index), u.speaker, float(u.index), u.text).prompt for u in dialogue]
