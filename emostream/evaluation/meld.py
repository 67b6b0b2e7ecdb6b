"""MELD CSV reader shared by training, evaluation and replay (torch-free).

MELD's CSVs carry defects: text that was UTF-8 decoded as cp1252 ("â€™" for "'"), non-breaking and
repeated whitespace, CRLF line ends, and occasionally labels outside the 7 classes. The reader repairs the
text, normalises typographic quotes to ASCII (what an ASR transcript would contain), skips rows it
cannot use and counts why, and groups utterances by dialogue in utterance order. Dialogues never mix:
every index here is keyed by ``dialogue``.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from emostream.errors import UserError
from emostream.schema import EMOTIONS

_MOJIBAKE_HINT = re.compile("[âÃÂ]")
_TYPOGRAPHY = str.maketrans(
    {
        "\u2019": "'",
        "\u2018": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u2014": " - ",
        "\u2013": " - ",
        "\u2026": "...",
        "\u00a0": " ",
        "\ufeff": "",
    }
)
# cp1252-decoded UTF-8 that a plain re-encode cannot undo (bytes cp1252 leaves undefined, e.g. 0x9d).
_FALLBACK = (
    ("â€™", "'"),
    ("â€˜", "'"),
    ("â€œ", '"'),
    ("â€\x9d", '"'),
    ("â€¦", "..."),
    ("â€”", " - "),
    ("â€“", " - "),
    ("â€", '"'),
    ("Â", ""),
)
"""Longest patterns first: "â€" alone is the closing quote whose last byte was lost."""
_SPACE = re.compile(r"\s+")
_REQUIRED = ("Utterance", "Speaker", "Emotion", "Dialogue_ID", "Utterance_ID")


def clean_text(text: str) -> str:
    """Repair mis-decoded characters, map typography to ASCII and collapse whitespace."""
    if _MOJIBAKE_HINT.search(text):
        try:
            text = text.encode("cp1252").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            for bad, good in _FALLBACK:
                text = text.replace(bad, good)
    text = text.translate(_TYPOGRAPHY)
    return _SPACE.sub(" ", text).strip()


@dataclass(frozen=True)
class Utterance:
    """One labelled MELD row after cleaning."""

    dialogue: int
    index: int
    """Utterance_ID within the dialogue (order of speaking)."""
    speaker: str
    text: str
    emotion: str
    """One of emostream.schema.EMOTIONS."""
    start: str = ""
    end: str = ""

    @property
    def label(self) -> int:
        """Position of ``emotion`` in EMOTIONS."""
        return EMOTIONS.index(self.emotion)


@dataclass
class MeldSplit:
    """A MELD split grouped by dialogue, plus the counts of skipped rows by reason."""

    dialogues: dict[int, list[Utterance]]
    skipped: Counter[str] = field(default_factory=Counter)

    def __len__(self) -> int:
        return sum(len(d) for d in self.dialogues.values())

    def __iter__(self) -> Iterator[Utterance]:
        for dialogue in self.dialogues.values():
            yield from dialogue

    def label_counts(self) -> Counter[str]:
        """How many utterances carry each emotion."""
        return Counter(u.emotion for u in self)


TEXT_VARIANTS = ("gold", "flat", "lower", "flat-lower", "bare")
"""How evaluation and training perturb gold text toward spoken text: ``flat`` turns ``!``/``?`` into
``.`` (a flatly spoken line), ``lower`` case-folds, ``bare`` drops all punctuation (ASR without it)."""
_FLAT = str.maketrans({"!": ".", "?": "."})
_PUNCT = re.compile(r"[^\w\s']+")


def text_variant(text: str, variant: str) -> str:
    """``text`` as one of :data:`TEXT_VARIANTS` (the one definition used by eval and training)."""
    if variant not in TEXT_VARIANTS:
        raise UserError(f"unknown text variant {variant!r} (choose from {', '.join(TEXT_VARIANTS)})")
    if variant == "gold":
        return text
    if variant in ("flat", "flat-lower"):
        text = re.sub(r"\.{2,}", ".", text.translate(_FLAT))
    if variant in ("lower", "flat-lower"):
        text = text.lower()
    if variant == "bare":
        text = _SPACE.sub(" ", _PUNCT.sub(" ", text)).strip() or text
    return text


def speaker_indices(dialogue: list[Utterance]) -> list[int]:
    """Per-utterance speaker index within its dialogue, by order of first appearance (0, 1, ...)."""
    seen: dict[str, int] = {}
    return [seen.setdefault(u.speaker, len(seen)) for u in dialogue]


def read_meld(path: str | Path, variant: str = "gold") -> MeldSplit:
    """Read a MELD-format CSV (train/dev/test_sent_emo.csv layout) into dialogues.

    ``variant`` rewrites every utterance's text (:func:`text_variant`) after repair.

    Rows with an unknown label, empty text or unparsable ids are skipped and counted in ``skipped``.
    Duplicate (dialogue, utterance) ids keep the first row.
    """
    text_variant("", variant)  # refuse an unknown variant before reading
    path = Path(path)
    if not path.is_file():
        raise UserError(f"MELD CSV not found: {path} (pass the path to e.g. dev_sent_emo.csv)")
    raw = path.read_bytes()
    try:
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        content = raw.decode("cp1252", errors="replace")
    reader = csv.DictReader(content.splitlines())
    missing = [c for c in _REQUIRED if c not in (reader.fieldnames or [])]
    if missing:
        raise UserError(f"{path}: not a MELD CSV, missing columns {', '.join(missing)}")
    dialogues: dict[int, dict[int, Utterance]] = {}
    skipped: Counter[str] = Counter()
    for row in reader:
        emotion = _SPACE.sub(" ", row.get("Emotion") or "").strip().lower()
        if emotion not in EMOTIONS:
            skipped["unknown_label"] += 1
            continue
        try:
            dialogue = int(str(row["Dialogue_ID"]).strip())
            index = int(str(row["Utterance_ID"]).strip())
        except ValueError:
            skipped["bad_id"] += 1
            continue
        text = clean_text(row.get("Utterance") or "")
        if not text:
            skipped["empty_text"] += 1
            continue
        turns = dialogues.setdefault(dialogue, {})
        if index in turns:
            skipped["duplicate"] += 1
            continue
        turns[index] = Utterance(
            dialogue=dialogue,
            index=index,
            speaker=clean_text(row.get("Speaker") or "") or "unknown",
            text=text_variant(text, variant),
            emotion=emotion,
            start=(row.get("StartTime") or "").strip(),
            end=(row.get("EndTime") or "").strip(),
        )
    ordered = {d: [turns[i] for i in sorted(turns)] for d, turns in sorted(dialogues.items())}
    return MeldSplit(dialogues=ordered, skipped=skipped)
