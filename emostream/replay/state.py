"""Resume: a replay's output folder remembers which dialogues are finished.

Each finished dialogue is one file ``dialogues/dia{D}.jsonl`` (one row result per line) written to a
temporary name and renamed, so a kill leaves either the whole dialogue or nothing: the file *is* the done
marker. A rerun with the same parameters skips those dialogues and reuses their rows for the report.
``run.json`` holds the parameters that change results (split, text source, CSV); a rerun with other
parameters refuses with a one-line error instead of mixing runs.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from emostream.errors import UserError
from emostream.replay.metrics import RowResult


class RunState:
    """The output folder of one replay (see module docstring)."""

    def __init__(self, out: Path, params: dict[str, Any], fresh: bool = False) -> None:
        self.out = out
        self.rows_dir = out / "dialogues"
        self.features_dir = out / "features"
        if fresh:
            for d in (self.rows_dir, self.features_dir):
                shutil.rmtree(d, ignore_errors=True)
        out.mkdir(parents=True, exist_ok=True)
        self.rows_dir.mkdir(exist_ok=True)
        self.features_dir.mkdir(exist_ok=True)
        run_file = out / "run.json"
        if run_file.is_file() and self.done():
            try:
                before = json.loads(run_file.read_text())
            except ValueError:
                before = {}
            diff = sorted(k for k in params if before.get(k) != params[k])
            if diff:
                raise UserError(
                    f"{out} holds a replay with other {', '.join(diff)} "
                    f"({', '.join(f'{k}={before.get(k)!r}' for k in diff)}): pass another --out or --fresh"
                )
        run_file.write_text(json.dumps(params, indent=2))

    def done(self) -> set[int]:
        """Dialogue ids already finished."""
        ids: set[int] = set()
        for path in self.rows_dir.glob("dia*.jsonl"):
            stem = path.stem[3:]
            if stem.isdigit():
                ids.add(int(stem))
        return ids

    def save(self, dialogue: int, rows: list[RowResult], features: list[dict[str, Any]]) -> None:
        """Record a finished dialogue atomically (features first, then the rows file = done marker)."""
        _atomic_lines(self.features_dir / f"dia{dialogue}.jsonl", features)
        _atomic_lines(self.rows_dir / f"dia{dialogue}.jsonl", [r.to_json() for r in rows])

    def load(self, dialogues: list[int]) -> list[RowResult]:
        """Row results of finished ``dialogues``, in the given order."""
        rows: list[RowResult] = []
        for d in dialogues:
            path = self.rows_dir / f"dia{d}.jsonl"
            if path.is_file():
                rows += [RowResult.from_json(json.loads(x)) for x in path.read_text().splitlines() if x]
        return rows

    def merge_features(self, dialogues: list[int]) -> Path:
        """Concatenate per-dialogue features into ``features.jsonl`` (what ``train visual|fusion`` reads)."""
        path = self.out / "features.jsonl"
        with path.open("w") as fh:
            for d in dialogues:
                part = self.features_dir / f"dia{d}.jsonl"
                if part.is_file():
                    fh.write(part.read_text())
        return path


def write_descriptions(features: Path, out: Path) -> int:
    """``descriptions.jsonl`` in the form ``train visual|fusion`` reads (emostream/train/features.py): one line
    ``{"dialogue", "utterance", "text", "confidence"}`` per row whose key frames showed a face."""
    n = 0
    with out.open("w") as fh:
        for line in features.read_text().splitlines():
            f = json.loads(line) if line.strip() else {}
            if f.get("face_found") and f.get("description"):
                record = {
                    "dialogue": f["dialogue"],
                    "utterance": f["utterance_id"],
                    "text": f["description"],
                    "confidence": f.get("visual_confidence", 1.0),
                }
                fh.write(json.dumps(record) + "\n")
                n += 1
    return n


def write_transcripts(features: Path, out: Path) -> int:
    """``transcripts.jsonl`` in the form ``train asr-text`` writes (emostream/evaluation/transcripts.py): one
    line ``{"dialogue", "utterance", "text"[, "hypotheses"]}`` per row the ASR transcribed, so ``eval meld
    --transcripts`` scores exactly what this replay's text model read."""
    n = 0
    with out.open("w") as fh:
        for line in features.read_text().splitlines():
            f = json.loads(line) if line.strip() else {}
            if "transcript" not in f or f.get("asr_model") in ("", "gold"):
                continue
            record = {"dialogue": f["dialogue"], "utterance": f["utterance_id"], "text": f["transcript"]}
            if f.get("hypotheses"):
                record["hypotheses"] = f["hypotheses"]
            fh.write(json.dumps(record) + "\n")
            n += 1
    return n


def _atomic_lines(path: Path, records: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as fh:
        for record in records:
            fh.write(json.dumps(record) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
