"""ASR transcripts of MELD lines (`emostream train asr-text`): the spoken-text input of training and eval.

JSONL, one object per utterance: ``dialogue``, ``utterance`` (MELD ids), ``text`` (what Whisper heard),
``hypotheses`` (its best distinct readings as [text, weight], when more than one was kept), plus
``voice`` and ``wpm`` (how espeak-ng spoke it).
"""

from __future__ import annotations

import json
from pathlib import Path

from emostream.errors import UserError

Hypotheses = tuple[tuple[str, float], ...]
"""(text, weight) readings of one line, best first; empty: only the best text was kept."""
Heard = tuple[str, Hypotheses]
"""What Whisper heard for one line: the best text and its hypotheses."""


def load_heard(*paths: str | Path) -> dict[tuple[int, int], Heard]:
    """(dialogue, utterance) -> (transcript, hypotheses), merged from caches written by `emostream train
    asr-text` (``hypotheses`` is optional: caches made before it have the text alone)."""
    out: dict[tuple[int, int], Heard] = {}
    for path in paths:
        p = Path(path)
        if not p.is_file():
            raise UserError(f"ASR transcript cache {p} not found: make it with `emostream train asr-text`")
        with p.open(encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    hyps = tuple((str(t), float(w)) for t, w in row.get("hypotheses", ()))
                    out[(int(row["dialogue"]), int(row["utterance"]))] = (str(row["text"]), hyps)
                except (ValueError, KeyError, TypeError):
                    raise UserError(f"{p}:{n}: not a transcript line; delete the line and rerun") from None
    return out


def load_transcripts(*paths: str | Path) -> dict[tuple[int, int], str]:
    """(dialogue, utterance) -> transcript (the best hypothesis), as :func:`load_heard` reads them."""
    return {key: text for key, (text, _) in load_heard(*paths).items()}
