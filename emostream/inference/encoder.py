"""Torch-free sentence encoder: tokenizers + ONNX Runtime + mean pooling + L2 norm.

The runtime embeds VLM descriptions with the same vectors sentence-transformers would give, without
importing torch: ``emostream/train/export_encoder.py`` exports the store's sentence-transformers model once to
ONNX (INT8 weights), and this module reproduces the rest of the pipeline (masked mean pooling, then
L2 normalisation) in numpy.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from emostream.errors import UserError
from emostream.inference.onnx import RuntimeOptions, session

if TYPE_CHECKING:
    from emostream.config import Settings

ONNX_SUFFIX = "-onnx"
"""Store name of an exported encoder = sentence-transformers name + this suffix."""

MAX_TOKENS = {"all-MiniLM-L6-v2": 256, "all-mpnet-base-v2": 384}
"""sentence-transformers ``max_seq_length`` of the known encoders (others: 256)."""


def store_name(name: str) -> str:
    """``all-MiniLM-L6-v2`` -> ``all-MiniLM-L6-v2-onnx`` (the exported runtime copy in the store)."""
    return name if name.endswith(ONNX_SUFFIX) else name + ONNX_SUFFIX


@dataclass(frozen=True, slots=True)
class EncoderOptions:
    """How text is turned into vectors."""

    max_tokens: int = 256
    """Longer inputs are truncated (sentence-transformers' max_seq_length)."""
    batch_size: int = 32
    """Sentences per ONNX Runtime call."""


class SentenceEncoder:
    """Embeds sentences into L2-normalised vectors (``dim`` floats each)."""

    def __init__(
        self,
        model_dir: Path,
        name: str = "",
        options: EncoderOptions | None = None,
        runtime: RuntimeOptions | None = None,
    ) -> None:
        """``runtime``: provider and threads of the stage that embeds (``[vlm]``); plain 1-thread CPU
        for tools."""
        from tokenizers import Tokenizer

        model = model_dir / "model.onnx"
        tok = model_dir / "tokenizer.json"
        for path in (model, tok):
            if not path.is_file():
                raise UserError(
                    f"sentence encoder file {path} is missing: run `python -m emostream.train.export_encoder` "
                    "or `emostream models pull` for it"
                )
        self.name = name or model_dir.name
        base = self.name.removesuffix(ONNX_SUFFIX)
        self.options = options or EncoderOptions(max_tokens=MAX_TOKENS.get(base, 256))
        self._tokenizer = Tokenizer.from_file(str(tok))
        self._tokenizer.enable_truncation(max_length=self.options.max_tokens)
        self._tokenizer.enable_padding()
        self._session = session(model, runtime or RuntimeOptions.cpu(1))
        self._inputs = {i.name for i in self._session.get_inputs()}
        self._lock = threading.Lock()
        self.dim = int(self.encode(["probe"]).shape[1])

    @classmethod
    def from_store(
        cls,
        name: str,
        settings: Settings,
        options: EncoderOptions | None = None,
    ) -> SentenceEncoder:
        """Open the exported ONNX copy of the sentence-transformers model ``name`` from the model store."""
        from emostream.store import load

        full = store_name(name)
        return cls(load(full, settings), name=full, options=options, runtime=RuntimeOptions.of(settings.vlm))

    def encode(self, sentences: list[str]) -> npt.NDArray[np.float32]:
        """[len(sentences), dim] float32, each row of unit length (empty input -> [0, dim])."""
        out: list[npt.NDArray[np.float32]] = []
        step = self.options.batch_size
        for i in range(0, len(sentences), step):
            out.append(self._encode_batch(sentences[i : i + step]))
        if not out:
            return np.zeros((0, getattr(self, "dim", 0)), dtype=np.float32)
        return np.concatenate(out, axis=0)

    def _encode_batch(self, batch: list[str]) -> npt.NDArray[np.float32]:
        encs = self._tokenizer.encode_batch(batch)
        ids = np.asarray([e.ids for e in encs], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in encs], dtype=np.int64)
        feeds: dict[str, npt.NDArray[np.int64]] = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.asarray([e.type_ids for e in encs], dtype=np.int64)
        with self._lock:
            hidden = self._session.run(None, feeds)[0]
        return mean_pool_normalize(np.asarray(hidden, dtype=np.float32), mask)


def mean_pool_normalize(
    hidden: npt.NDArray[np.float32], mask: npt.NDArray[np.int64]
) -> npt.NDArray[np.float32]:
    """Masked mean over tokens, then L2 norm (sentence-transformers' Pooling + Normalize)."""
    m = mask[..., None].astype(np.float32)
    summed = (hidden * m).sum(axis=1)
    counts = np.clip(m.sum(axis=1), 1e-9, None)
    pooled = summed / counts
    norms = np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
    return (pooled / norms).astype(np.float32)
