"""Pre-tokenized MELD prompts and length-bucketed batches with dynamic padding.

Every example is built from its own dialogue's past only (PromptBuilder.build_dialogue), so neither a
later utterance nor another dialogue can leak into an input. Most contexts are far shorter than the
budget (train mean ~81 of 128 tokens; ~19 for single utterances), so padding each batch only to its
longest member and grouping similar lengths cuts compute by a third or more.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import torch

from emostream.evaluation.meld import MeldSplit, Utterance, speaker_indices, text_variant
from emostream.inference.prompt import PromptBuilder, Turn


@dataclass(frozen=True)
class Example:
    """One utterance's encoder input and gold label."""

    ids: list[int]
    mask_pos: int
    label: int
    key: tuple[int, int]
    """(dialogue, utterance index) of the utterance being classified."""
    text: str = ""
    """The current utterance's text as read (after augmentation): the key of its teacher KD target."""


def context_setting(context: int, max_tokens: int) -> tuple[int, int | None]:
    """Curriculum context value -> (max_tokens, max_past_turns): 0 = the current utterance only."""
    if context <= 0:
        return max_tokens, 0
    return context, None


def spoken_noise(
    seed: int,
    p_flat: float,
    p_bare: float,
    transcripts: Mapping[tuple[int, int], str] | None = None,
    p_asr: float = 0.0,
) -> Callable[[Utterance], str]:
    """Per-utterance noise toward spoken (ASR) text, reproducible from ``seed``.

    Each call draws once: with ``p_asr`` the utterance reads as Whisper transcribed it when spoken
    (``transcripts``, train/asr_text.py; an utterance without one keeps its gold text), else with
    ``p_bare`` all punctuation goes (Whisper on flat speech often writes none), else with ``p_flat``
    ``!``/``?`` become ``.``; otherwise the gold text stays. Case needs no dropout: the MiniLM tokenizer
    is uncased.
    """
    rng = random.Random(seed)
    heard = transcripts or {}

    def noise(u: Utterance) -> str:
        x = rng.random()
        if x < p_asr:
            text = heard.get((u.dialogue, u.index))
            if text is not None:
                return text
        x -= p_asr
        if 0 <= x < p_bare:
            return text_variant(u.text, "bare")
        if p_bare <= x < p_bare + p_flat:
            return text_variant(u.text, "flat")
        return u.text

    return noise


def encode_split(
    split: MeldSplit,
    builder: PromptBuilder,
    max_past_turns: int | None = None,
    limit: int = 0,
    augment: Callable[[Utterance], str] | None = None,
) -> list[Example]:
    """Examples for every utterance of ``split`` (the first ``limit`` if > 0), dialogue by dialogue.

    ``augment`` rewrites each turn's text once per dialogue, so an utterance reads the same as the
    current turn and as later turns' context.
    """
    out: list[Example] = []
    for dialogue in split.dialogues.values():
        speakers = speaker_indices(dialogue)
        turns = [Turn(s, augment(u) if augment else u.text) for s, u in zip(speakers, dialogue, strict=True)]
        for u, t, p in zip(dialogue, turns, builder.build_dialogue(turns, max_past_turns), strict=True):
            out.append(Example(p.ids, p.mask_pos, u.label, (u.dialogue, u.index), t.text))
        if limit and len(out) >= limit:
            return out[:limit]
    return out


@dataclass(frozen=True)
class Batch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    mask_pos: torch.Tensor
    labels: torch.Tensor


def collate(examples: list[Example], pad_id: int = 0) -> Batch:
    """Right-pad to the longest example of the batch."""
    width = max(len(e.ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    att = torch.zeros((len(examples), width), dtype=torch.long)
    for i, e in enumerate(examples):
        ids[i, : len(e.ids)] = torch.tensor(e.ids)
        att[i, : len(e.ids)] = 1
    return Batch(
        ids,
        att,
        torch.tensor([e.mask_pos for e in examples]),
        torch.tensor([e.label for e in examples]),
    )


def bucketed_batches(
    examples: list[Example], batch_size: int, seed: int, bucket_batches: int = 50
) -> list[list[Example]]:
    """Shuffle, sort by length inside chunks of ``bucket_batches`` batches, then shuffle the batches."""
    rng = random.Random(seed)
    order = list(examples)
    rng.shuffle(order)
    chunk = batch_size * bucket_batches
    batches: list[list[Example]] = []
    for lo in range(0, len(order), chunk):
        part = sorted(order[lo : lo + chunk], key=lambda e: len(e.ids))
        batches.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    rng.shuffle(batches)
    return batches


def eval_batches(examples: list[Example], batch_size: int) -> Iterator[tuple[list[int], list[Example]]]:
    """Length-sorted batches for inference, with each example's original position."""
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].ids))
    for lo in range(0, len(order), batch_size):
        idx = order[lo : lo + batch_size]
        yield idx, [examples[i] for i in idx]
