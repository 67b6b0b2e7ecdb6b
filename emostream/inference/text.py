"""The text teacher at run time: tokenizers + ONNX Runtime, no torch.

The model folder (store name ``emostream-text-int8``) holds ``model.onnx`` (inputs ``input_ids``,
``attention_mask``, ``mask_pos``; outputs ``embedding`` = final hidden state of the [MASK] token and
``logits`` over EMOTIONS), ``tokenizer.json`` (with the speaker tokens) and ``meta.json`` (labels,
max_tokens, quantization). Inputs come from :class:`emostream.inference.prompt.PromptBuilder`, the same code
training used, so the context worker and ``emostream eval meld`` see exactly what the teacher saw.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from emostream.errors import UserError
from emostream.inference.onnx import RuntimeOptions, session
from emostream.inference.prompt import PromptBuilder, PromptInput, Turn
from emostream.schema import EMOTIONS

if TYPE_CHECKING:
    from emostream.config import Settings

log = logging.getLogger("emostream.context")

GPU_VARIANTS = {"emostream-text-int8": "emostream-text-qdq"}
"""Store model -> its variant for the CUDA/TensorRT providers: the same INT8 weights as Q/DQ (standard ONNX
operators) instead of the CPU-only DynamicQuantizeMatMul kernel (models/emostream-text-qdq/README.md)."""


def model_for_provider(name: str, provider: str) -> str:
    """The store model to load for ``provider``: the GPU variant of ``name`` on cuda/tensorrt, else ``name``."""
    return GPU_VARIANTS.get(name, name) if provider in ("cuda", "tensorrt") else name


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class TextModel:
    """Runs the exported teacher on :class:`PromptInput` batches; returns (embedding, logits)."""

    def __init__(self, sess: Any, builder: PromptBuilder, meta: dict[str, Any], name: str = "") -> None:
        self.session = sess
        self.builder = builder
        self.meta = meta
        self.name = name
        labels = tuple(meta.get("labels", EMOTIONS))
        if labels != EMOTIONS:
            raise UserError(f"model {name or '?'} has labels {labels}, this emostream expects {EMOTIONS}")
        self.input_names = {i.name for i in sess.get_inputs()}

    @classmethod
    def from_files(
        cls,
        onnx_path: Path,
        tokenizer_json: Path,
        meta: dict[str, Any] | None = None,
        max_tokens: int | None = None,
        options: RuntimeOptions | None = None,
        name: str = "",
    ) -> TextModel:
        from tokenizers import Tokenizer

        meta = dict(meta or {})
        budget = int(max_tokens or meta.get("max_tokens", 128))
        tokenizer: Any = Tokenizer.from_file(str(tokenizer_json))
        builder = PromptBuilder(tokenizer, max_tokens=budget)
        return cls(session(onnx_path, options or RuntimeOptions.cpu(1)), builder, meta, name=name)

    @classmethod
    def from_dir(
        cls, folder: Path, options: RuntimeOptions | None = None, max_tokens: int | None = None
    ) -> TextModel:
        """A model folder (``model.onnx``, ``tokenizer.json``, ``meta.json``)."""
        missing = [n for n in ("model.onnx", "tokenizer.json", "meta.json") if not (folder / n).is_file()]
        if missing:
            raise UserError(f"{folder} is not a runtime text model: {', '.join(missing)} missing")
        meta = json.loads((folder / "meta.json").read_text())
        kernel = meta.get("quantization", {}).get("kernel")
        if options is not None and options.provider != "cpu" and kernel == "integer":
            log.warning(
                "this model's INT8 kernel runs on CPU only; for GPU/Jetson use emostream-text-qdq "
                "(`emostream train quantize --checkpoint models/emostream-text-int8 --kernel dq`)",
                extra={"model": folder.name, "provider": options.provider},
            )
        return cls.from_files(
            folder / "model.onnx", folder / "tokenizer.json", meta, max_tokens, options, name=folder.name
        )

    @classmethod
    def load(
        cls,
        name: str,
        options: RuntimeOptions,
        settings: Settings,
        max_tokens: int | None = None,
    ) -> TextModel:
        """By store name (``emostream-text-int8``) or by a folder path; ``max_tokens`` overrides meta.json."""
        path = Path(os.path.expanduser(name))
        if not path.is_dir():
            from emostream.store import load

            chosen = model_for_provider(name, options.provider)
            if chosen != name:
                log.info(
                    "GPU variant of the text model", extra={"model": chosen, "provider": options.provider}
                )
            path = load(chosen, settings)
        return cls.from_dir(path, options, max_tokens)

    def run(self, prompts: Sequence[PromptInput]) -> tuple[np.ndarray, np.ndarray]:
        """Batch ``prompts`` (right-padded with 0 and masked); (embedding [B, H], logits [B, 7])."""
        width = max(len(p.ids) for p in prompts)
        ids = np.zeros((len(prompts), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        for i, p in enumerate(prompts):
            ids[i, : len(p.ids)] = p.ids
            mask[i, : len(p.ids)] = 1
        feed = {"input_ids": ids, "attention_mask": mask}
        feed["mask_pos"] = np.array([p.mask_pos for p in prompts], dtype=np.int64)
        embedding, logits = self.session.run(["embedding", "logits"], feed)
        return embedding.astype(np.float32), logits.astype(np.float32)

    def predict(self, turns: Sequence[Turn]) -> tuple[np.ndarray, np.ndarray]:
        """Embedding and logits of ``turns[-1]`` given the past turns before it."""
        embedding, logits = self.run([self.builder.build(turns)])
        return embedding[0], logits[0]
