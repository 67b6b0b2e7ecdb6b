"""The text teacher at run time: tokenizers + ONNX Runtime, no torch.

The model folder (store name ``emostream-text-int8``) holds ``model.onnx`` (inputs ``input_ids``,
``attention_mask``, ``mask_pos``; outputs ``embedding`` = final hidden state of the [MASK] token and
``logits`` over EMOTIONS), ``tokenizer.json`` (with the speaker tokens) and ``meta.json`` (labels,
max_tokens, quantization, ``context_turns``). A folder with ``dialogue.json`` also holds a dialogue model
(emostream.inference.dialogue_model): the encoder then reads each utterance alone (``context_turns`` 0)
and the dialogue model reads the window of their encodings. Inputs come from :class:`emostream.inference.prompt.PromptBuilder`, the same code
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
from emostream.inference.dialogue import Encoding, Readings, Window
from emostream.inference.dialogue_model import DialogueModel
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

    def __init__(
        self,
        sess: Any,
        builder: PromptBuilder,
        meta: dict[str, Any],
        name: str = "",
        dialogue: DialogueModel | None = None,
    ) -> None:
        self.session = sess
        self.builder = builder
        self.meta = meta
        self.name = name
        self.dialogue = dialogue
        if dialogue is not None and builder.past_turns != 0:
            raise UserError(f"model {name or '?'}: a dialogue model needs an encoder with context_turns 0")
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
        dialogue: DialogueModel | None = None,
    ) -> TextModel:
        from tokenizers import Tokenizer

        meta = dict(meta or {})
        budget = int(max_tokens or meta.get("max_tokens", 128))
        tokenizer: Any = Tokenizer.from_file(str(tokenizer_json))
        past = meta.get("context_turns")
        builder = PromptBuilder(tokenizer, max_tokens=budget, past_turns=None if past is None else int(past))
        sess = session(onnx_path, options or RuntimeOptions.cpu(1))
        return cls(sess, builder, meta, name=name, dialogue=dialogue)

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
        dialogue = DialogueModel.from_dir(folder) if DialogueModel.present(folder) else None
        return cls.from_files(
            folder / "model.onnx",
            folder / "tokenizer.json",
            meta,
            max_tokens,
            options,
            name=folder.name,
            dialogue=dialogue,
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

    def decide(self, window: Window) -> tuple[np.ndarray, np.ndarray, dict[str, Encoding]]:
        """(embedding, logits) of the window's current turn, and the turn encodings computed on the way.

        Without a dialogue model: the encoder over the turn's prompt. With one: every turn of the window
        not yet encoded is encoded alone (one at a time: INT8 activation scales are per batch, so a batch
        would change the numbers; a turn with several ASR readings is their weighted mean, see
        :meth:`_encode`), then the dialogue model reads them all.
        """
        if self.dialogue is None:
            embedding, logits = self.run([window.prompt])
            return embedding[0], logits[0], {}
        new: dict[str, Encoding] = {}
        encodings: list[Encoding] = []
        readings = window.readings or ((),) * len(window.keys)
        for key, speaker, segment, known, heard in zip(
            window.keys, window.speakers, window.segments, window.encodings, readings, strict=True
        ):
            if known is None:
                known = new[key] = self._encode(heard or ((segment, 1.0),), speaker)
            encodings.append(known)
        h = np.stack([e for e, _ in encodings])
        z = np.stack([z for _, z in encodings])
        return h[-1], self.dialogue.decide(h, z, window.speakers), new

    def _encode(self, readings: Readings, speaker: int) -> Encoding:
        """One turn's encoding: the weighted mean over its readings, encoded as one batch (a turn with one
        reading is its encoding alone, as before hypotheses; two in a batch cost ~1.2x one, not 2x, and the
        INT8 activation scales they share move the numbers by noise: dev 52.23 batched, 52.04 one by one)."""
        e, z = self.run([self.builder.assemble([segment], speaker) for segment, _ in readings])
        w = np.array([weight for _, weight in readings], dtype=np.float32)[:, None]
        return (w * e).sum(0), (w * z).sum(0)

    def predict(self, turns: Sequence[Turn]) -> tuple[np.ndarray, np.ndarray]:
        """Embedding and logits of ``turns[-1]`` given the past turns before it."""
        embedding, logits = self.run([self.builder.build(turns)])
        return embedding[0], logits[0]
