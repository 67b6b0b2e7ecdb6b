"""Find a MELD split on disk: its CSV and its clip folder, in the real MELD.Raw layout and common variants.

MELD.Raw ships ``{split}_sent_emo.csv`` next to three tarballs whose folders are ``train_splits/``,
``dev_splits_complete/`` and ``output_repeated_splits_test/`` holding ``dia{D}_utt{U}.mp4``. People unpack
them in different ways, so the search also accepts a ``MELD.Raw/`` nesting, the tarball name as an extra
level (``train/train_splits``), the plain split name as the folder, test clips named
``final_videos_testdia{D}_utt{U}.mp4``, any case of ``.mp4``, and ignores macOS ``._`` resource forks.
A root with only the CSV is valid: the replay then runs text-only.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from emostream.errors import UserError
from emostream.evaluation.meld import MeldSplit, Utterance, read_meld

SPLITS: tuple[str, ...] = ("train", "dev", "test")
CLIP_DIRS: dict[str, tuple[str, ...]] = {
    "train": ("train_splits", "train/train_splits", "train"),
    "dev": ("dev_splits_complete", "dev/dev_splits_complete", "dev_splits", "dev"),
    "test": (
        "output_repeated_splits_test",
        "test/output_repeated_splits_test",
        "final_videos_test",
        "test",
    ),
}
"""Clip folder names tried per split, relative to each candidate root, first match wins."""
_CLIP = re.compile(r"^(?:final_videos_test)?dia(\d+)_utt(\d+)\.mp4$", re.IGNORECASE)


@dataclass
class MeldLayout:
    """One split of a MELD folder: the CSV, the clip folder (None when absent) and the clip index."""

    root: Path
    split: str
    csv: Path
    clip_dir: Path | None
    clips: dict[tuple[int, int], Path] = field(default_factory=dict)

    def clip(self, dialogue: int, utterance: int) -> Path | None:
        """The clip of one CSV row, or None when the folder lacks it."""
        return self.clips.get((dialogue, utterance))

    def missing(self, rows: list[Utterance]) -> list[Utterance]:
        """Rows of ``rows`` that have no clip (all of them when the root is CSV-only)."""
        return [r for r in rows if (r.dialogue, r.index) not in self.clips]


def _candidate_roots(root: Path) -> list[Path]:
    roots = [root, root / "MELD.Raw", root / "MELD.Raw" / "MELD.Raw", root / "MELD"]
    return [r for r in roots if r.is_dir()]


def find_csv(root: Path, split: str) -> Path:
    """``{split}_sent_emo.csv`` under ``root`` (or a MELD.Raw/ or {split}/ level below it)."""
    name = f"{split}_sent_emo.csv"
    for base in _candidate_roots(root):
        for path in (base / name, base / split / name):
            if path.is_file():
                return path
    raise UserError(
        f"no {name} under {root} (looked in ., MELD.Raw/ and {split}/): pass --root the folder holding "
        f"the MELD CSVs"
    )


def index_clips(folder: Path) -> dict[tuple[int, int], Path]:
    """(dialogue, utterance) -> clip path for every ``dia{D}_utt{U}.mp4`` directly in ``folder``."""
    clips: dict[tuple[int, int], Path] = {}
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return clips
    for entry in entries:
        if entry.name.startswith("._"):
            continue
        m = _CLIP.match(entry.name)
        if m and entry.is_file():
            # A plain name wins over a ``final_videos_test`` duplicate of the same row.
            key = (int(m.group(1)), int(m.group(2)))
            if key not in clips or not entry.name.lower().startswith("final"):
                clips[key] = Path(entry.path)
    return clips


def find_clips(root: Path, split: str) -> tuple[Path | None, dict[tuple[int, int], Path]]:
    """The first known clip folder of ``split`` under ``root`` that holds clips, with its index."""
    for base in _candidate_roots(root):
        for rel in CLIP_DIRS[split]:
            folder = base / rel
            if folder.is_dir():
                clips = index_clips(folder)
                if clips:
                    return folder, clips
    return None, {}


def open_layout(root: str | Path, split: str) -> MeldLayout:
    """Locate the CSV and clips of ``split`` under ``root``; raises UserError when there is no CSV."""
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"MELD root {root} is not a folder: pass --root the folder holding the MELD CSVs")
    csv = find_csv(root, split)
    clip_dir, clips = find_clips(root, split)
    return MeldLayout(root=root, split=split, csv=csv, clip_dir=clip_dir, clips=clips)


def load_split(layout: MeldLayout) -> MeldSplit:
    """The split's rows, cleaned and grouped by dialogue (see emostream.evaluation.meld)."""
    return read_meld(layout.csv)


_MOJIBAKE = re.compile("â€|Ã.|Â")


def count_mojibake(csv_path: Path) -> int:
    """Rows whose text shows UTF-8 read as cp1252 (``â€™``); emostream.evaluation.meld repairs them on reading."""
    text = csv_path.read_bytes().decode("utf-8-sig", errors="replace")
    return sum(1 for line in text.splitlines() if _MOJIBAKE.search(line))


def parse_dialogues(spec: str) -> set[int]:
    """``"0-9,12"`` -> {0..9, 12}. Raises UserError on anything else."""
    chosen: set[int] = set()
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        lo, dash, hi = part.partition("-")
        try:
            if dash:
                a, b = int(lo), int(hi)
                if b < a:
                    raise ValueError
                chosen.update(range(a, b + 1))
            else:
                chosen.add(int(part))
        except ValueError:
            raise UserError(f"bad --dialogues {spec!r}: use ids and ranges like 0-9,12") from None
    if not chosen:
        raise UserError(f"bad --dialogues {spec!r}: no dialogue ids in it")
    return chosen


def describe_missing(missing: list[Utterance], total: int, shown: int = 5) -> str:
    """One line naming the missing clips, e.g. ``3 of 40 clips missing: dia1_utt2.mp4, ...``."""
    names = [f"dia{r.dialogue}_utt{r.index}.mp4" for r in missing[:shown]]
    more = f" (+{len(missing) - shown} more)" if len(missing) > shown else ""
    return f"{len(missing)} of {total} clips missing: {', '.join(names)}{more}"
