"""Feature caches (.npz) so the visual and fusion stages never recompute the big encoders.

teacher cache: ``keys`` [N, 2] (dialogue, utterance), ``h`` [N, D] ([MASK] states), ``logits`` [N, 7],
``labels`` [N]. visual cache: ``keys`` [N, 2], ``emb`` [N, Dv] (description embeddings), ``confidence`` [N]
(visual confidence in [0, 1], e.g. the FEC expression confidence; 1 when unknown). Descriptions come from
the replay pipeline's VisualDescription messages, written as JSONL lines
``{"dialogue": int, "utterance": int, "text": str, "confidence": float}``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from emostream.errors import UserError


def save_cache(path: str | Path, **arrays: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{k: np.asarray(v) for k, v in arrays.items()})  # type: ignore[arg-type]
    return path


def load_cache(path: str | Path, required: tuple[str, ...]) -> dict[str, np.ndarray]:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"feature cache not found: {p}")
    with np.load(p) as data:
        out = {k: data[k] for k in data.files}
    missing = [k for k in required if k not in out]
    if missing:
        raise UserError(f"{p}: feature cache lacks {missing}")
    return out


def join(teacher: dict[str, np.ndarray], visual: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Rows present in both caches, matched on (dialogue, utterance), in the teacher's order."""
    index = {tuple(k): i for i, k in enumerate(visual["keys"].tolist())}
    rows = [(i, index[tuple(k)]) for i, k in enumerate(teacher["keys"].tolist()) if tuple(k) in index]
    if not rows:
        raise UserError("teacher and visual caches share no (dialogue, utterance) keys")
    ti = np.array([r[0] for r in rows])
    vi = np.array([r[1] for r in rows])
    conf = visual.get("confidence")
    return {
        "keys": teacher["keys"][ti],
        "h": teacher["h"][ti].astype(np.float32),
        "logits": teacher["logits"][ti].astype(np.float32),
        "labels": teacher["labels"][ti].astype(np.int64),
        "emb": visual["emb"][vi].astype(np.float32),
        "confidence": (np.ones(len(vi)) if conf is None else conf[vi]).astype(np.float32),
    }


def teacher_features(
    model_dir: str | Path,
    csv: str | Path,
    out: str | Path,
    batch_size: int = 64,
    variant: str = "gold",
    context_turns: int | None = None,
    folds: int = 0,
    fold: int = 0,
    transcripts: Mapping[tuple[int, int], str] | None = None,
) -> Path:
    """Run a saved text teacher (emostream.train.text_model.save_hf folder) over a MELD CSV, past-only, and cache.

    ``variant`` perturbs the text (emostream.evaluation.meld.text_variant); ``context_turns`` caps the past
    turns in each input (default: the model's meta ``context_turns``, else the whole past); with ``folds``
    only the dialogues of held-out fold ``fold`` are scored (out-of-fold features, emostream.train.text.fold_split).
    ``transcripts`` (emostream.evaluation.transcripts) replace the text of the utterances they cover (ASR
    text). The cache also holds ``speakers`` [N], each utterance's first-appearance speaker index in its
    dialogue.
    """
    from emostream.evaluation.meld import read_meld, speaker_indices
    from emostream.inference.prompt import PromptBuilder
    from emostream.train.text import fold_split, predict
    from emostream.train.text_data import encode_split
    from emostream.train.text_model import load_hf

    model, tok, meta = load_hf(model_dir)
    split = read_meld(csv, variant)
    if folds:
        split = fold_split(split, folds, fold, held_out=True)
    past = meta.get("context_turns") if context_turns is None else context_turns
    heard = transcripts or {}
    builder = PromptBuilder(tok.backend_tokenizer, int(meta["max_tokens"]))
    examples = encode_split(split, builder, past, 0, lambda u: heard.get((u.dialogue, u.index), u.text))
    speakers = [s for d in split.dialogues.values() for s in speaker_indices(d)]
    logits, h = predict(model, examples, batch_size)
    return save_cache(
        out,
        keys=[e.key for e in examples],
        h=h,
        logits=logits,
        labels=[e.label for e in examples],
        speakers=speakers,
    )


def description_features(jsonl: str | Path, encoder_dir: str | Path, out: str | Path) -> Path:
    """Embed visual descriptions (JSONL, see module doc) with a sentence-transformers folder and cache."""
    from sentence_transformers import SentenceTransformer

    rows = [json.loads(line) for line in Path(jsonl).read_text().splitlines() if line.strip()]
    if not rows:
        raise UserError(f"{jsonl}: no descriptions")
    model = SentenceTransformer(str(encoder_dir), device="cpu")
    emb = model.encode([r["text"] for r in rows], batch_size=64, normalize_embeddings=True)
    return save_cache(
        out,
        keys=[(int(r["dialogue"]), int(r["utterance"])) for r in rows],
        emb=emb,
        confidence=[float(r.get("confidence", 1.0)) for r in rows],
    )
