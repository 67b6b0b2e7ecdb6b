"""ASR transcripts of MELD lines (`emostream train asr-text`): the spoken-text input of training and eval.

JSONL, one object per utterance: ``dialogue``, ``utterance`` (MELD ids), ``text`` (what Whisper heard),
plus ``voice`` and ``wpm`` (how espeak-ng spoke it).
"""

from __future__ import annotations

import json
from pathlib import Path

from emostream.errors import UserError


def load_transcripts(*paths: str | Path) -> dict[tuple[int, int], str]:
    """(dialogue, utterance) -> transcript, merged from caches written by `emostream train asr-text`."""
    out: dict[tuple[int, int], str] = {}
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
                    out[(int(row["dialogue"]), int(row["utterance"]))] = str(row["text"])
                except (ValueError, KeyError, TypeError):
                    raise UserError(f"{p}:{n}: not a transcript line; delete the line and rerun") from None
    return out
