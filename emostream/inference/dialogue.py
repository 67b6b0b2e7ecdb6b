"""One room's dialogue so far, as the text teacher needs it (torch-free, shared by the context worker and
``emostream eval meld``, so evaluation runs the exact live code path).

Bounded to the last ``limit`` utterances. Turns are ordered by start time, so a transcript that arrives
late (concurrent handlers, several ASR workers) still lands in its place, and a prediction only ever sees
turns that started before it (past-only, the live setting). Each turn is tokenized once. Speakers get the
index of their first appearance in the room, kept even after their turns fall out of the window.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from emostream.inference.prompt import PromptBuilder, PromptInput, Turn

if TYPE_CHECKING:
    from emostream.evaluation.meld import Utterance as MeldUtterance

MAX_SPEAKERS = 1024
"""Bound on remembered speaker indices per room (indices wrap modulo the 9 speaker tokens anyway)."""


@dataclass(frozen=True, order=True)
class _Turn:
    start: float
    key: str
    speaker: int = field(compare=False)
    segment: tuple[int, ...] = field(compare=False)


class DialogueHistory:
    """The last ``limit`` utterances of one room, in start-time order."""

    def __init__(self, builder: PromptBuilder, limit: int = 32) -> None:
        if limit < 1:
            raise ValueError("history limit must be >= 1")
        self.builder = builder
        self.limit = limit
        self.turns: list[_Turn] = []
        self.speakers: dict[str, int] = {}

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

    def add(self, key: str, speaker: str, start: float, text: str) -> PromptInput:
        """Insert a turn (once per ``key``: redelivery changes nothing) and return its teacher input.

        The input is taken before the window is trimmed, so even a turn older than the whole window gets
        its own (short) context instead of none.
        """
        if not any(t.key == key for t in self.turns):
            index = self.speaker_index(speaker)
            segment = tuple(self.builder.turn_ids(Turn(speaker=index, text=text)))
            bisect.insort(self.turns, _Turn(start=start, key=key, speaker=index, segment=segment))
        prompt = self.prompt_for(key)
        del self.turns[: max(0, len(self.turns) - self.limit)]
        return prompt

    def prompt_for(self, key: str) -> PromptInput:
        """Teacher input for turn ``key`` from the turns before it (at most ``limit`` - 1 of them)."""
        for i, turn in enumerate(self.turns):
            if turn.key == key:
                past = self.turns[max(0, i - self.limit + 1) : i + 1]
                return self.builder.assemble([t.segment for t in past], turn.speaker)
        raise KeyError(key)


def meld_prompts(
    builder: PromptBuilder, dialogue: Sequence[MeldUtterance], limit: int = 32
) -> list[PromptInput]:
    """Teacher inputs for every utterance of one MELD dialogue, each from its own past only (gold text)."""
    history = DialogueHistory(builder, limit)
    return [history.add(str(u.index), u.speaker, float(u.index), u.text) for u in dialogue]
