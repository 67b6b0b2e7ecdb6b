"""KD targets from a larger teacher, cached once: its logits for every text a student may read.

The student (MiniLM, the runtime encoder) reads each train utterance in a different form every epoch
(gold, ``!``/``?`` flattened, bare, or as Whisper heard it: text_data.spoken_noise), and its KD target must
be the teacher's view of that same text. The teacher (all-mpnet-base-v2, ~6x slower per step here) is
too slow to run beside every student step, so ``write_targets`` scores every distinct form of every
utterance once. Cache: ``keys`` [N, 2] (dialogue, utterance), ``texts`` [N] (the form read), ``logits``
[N, 7]; several rows per utterance.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from emostream.errors import UserError
from emostream.evaluation.meld import MeldSplit, speaker_indices, text_variant
from emostream.inference.prompt import PromptBuilder, Turn
from emostream.train.features import load_cache, save_cache
from emostream.train.text_data import Example

log = logging.getLogger("emostream.train.teacher_targets")

FORMS = ("gold", "flat", "bare")
"""The script-text forms every utterance is scored in (plus its transcript when one is given)."""


def forms_of(text: str, heard: str | None) -> list[str]:
    """The distinct texts a student may read for one utterance, gold first."""
    out: list[str] = []
    for t in [text_variant(text, f) for f in FORMS] + ([heard] if heard else []):
        if t not in out:
            out.append(t)
    return out


def write_targets(
    teacher_dir: str | Path,
    split: MeldSplit,
    out: str | Path,
    transcripts: Mapping[tuple[int, int], str] | None = None,
    batch_size: int = 64,
) -> Path:
    """Score every form of every utterance of ``split`` alone (no past) with the teacher; save the cache."""
    from emostream.train.text import predict
    from emostream.train.text_model import load_hf

    model, tok, meta = load_hf(teacher_dir)
    if meta.get("context_turns") != 0:
        raise UserError(f"{teacher_dir}: teacher reads context; KD targets need an utterance-only teacher")
    builder = PromptBuilder(tok.backend_tokenizer, int(meta["max_tokens"]), past_turns=0)
    heard = transcripts or {}
    examples: list[Example] = []
    for dialogue in split.dialogues.values():
        for speaker, u in zip(speaker_indices(dialogue), dialogue, strict=True):
            for text in forms_of(u.text, heard.get((u.dialogue, u.index))):
                p = builder.build([Turn(speaker, text)], 0)
                examples.append(Example(p.ids, p.mask_pos, u.label, (u.dialogue, u.index), text))
    log.info("teacher %s: %d texts for %d utterances", teacher_dir, len(examples), len(split))
    logits, _ = predict(model, examples, batch_size)
    return save_cache(
        out,
        keys=np.array([e.key for e in examples], dtype=np.int64),
        texts=np.array([e.text for e in examples]),
        logits=logits,
    )


class TeacherTargets:
    """The cached teacher logits, looked up by (utterance key, text read)."""

    def __init__(self, paths: Sequence[str | Path]) -> None:
        self._rows: dict[tuple[int, int, str], np.ndarray] = {}
        for path in paths:
            c = load_cache(path, ("keys", "texts", "logits"))
            for (d, i), t, z in zip(c["keys"].tolist(), c["texts"].tolist(), c["logits"], strict=True):
                self._rows[(int(d), int(i), str(t))] = z
        if not self._rows:
            raise UserError(f"teacher targets {list(paths)} hold no rows")

    def __len__(self) -> int:
        return len(self._rows)

    def coverage(self, examples: Sequence[Example]) -> float:
        """Share of ``examples`` whose exact text has a target."""
        return sum((*e.key, e.text) in self._rows for e in examples) / max(1, len(examples))

    def batch(self, examples: Sequence[Example]) -> torch.Tensor:
        """Teacher logits [B, 7] for a batch; a missing text is a user error (stale or wrong cache)."""
        try:
            return torch.from_numpy(np.stack([self._rows[(*e.key, e.text)] for e in examples]))
        except KeyError as exc:
            raise UserError(
                f"no teacher target for utterance {exc.args[0][:2]} text {exc.args[0][2]!r}: "
                "rebuild them with `emostream train teacher-targets` for this train CSV and transcripts"
            ) from None


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="emostream train teacher-targets", description=__doc__.split("\n")[0])
    p.add_argument("--teacher", required=True, help="teacher checkpoint folder (a text run's best/)")
    p.add_argument("--csv", required=True, help="MELD CSV the student trains on (train_sent_emo.csv)")
    p.add_argument("--out", required=True, help="cache to write (.npz)")
    p.add_argument("--transcripts", metavar="JSONL[,JSONL]", help="also score these ASR transcripts")
    p.add_argument("--threads", type=int, default=2, help="torch threads (2)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from emostream.evaluation.meld import read_meld
    from emostream.evaluation.transcripts import load_transcripts

    args = parse(list(sys.argv[1:] if argv is None else argv))
    torch.set_num_threads(args.threads)
    heard = load_transcripts(*args.transcripts.split(",")) if args.transcripts else None
    t0 = time.perf_counter()
    out = write_targets(args.teacher, read_meld(args.csv), args.out, heard)
    rows = len(load_cache(out, ("keys",))["keys"])
    print(json.dumps({"out": str(out), "rows": rows, "seconds": round(time.perf_counter() - t0, 1)}))
    return 0
