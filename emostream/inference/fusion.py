"""The fusion head at run time (ONNX Runtime, no torch): text logits corrected by the visual cue.

Contract of ``model.onnx`` in a fusion model folder (store name ``emostream-fusion-int8``), exported by
``emostream train quantize`` from the [erc] residual-fusion module (DDVLM: visual projection, clamped gate,
cosine- and confidence-scaled correction added to the text logits):

    inputs   text_embedding [B, H] float32   the teacher's [MASK] representation (TextContext.embedding)
             text_logits    [B, 7] float32   the teacher's logits (TextContext.logits)
             visual_embedding [B, D] float32 embedding of the VLM description (VisualDescription.embedding)
             visual_confidence [B] float32   confidence of the visual cue in [0, 1]
    outputs  logits         [B, 7] float32   fused logits over EMOTIONS

When no fusion model is installed the text head decides alone (``load_fusion`` returns None).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from emostream.config import Settings
from emostream.errors import UserError
from emostream.inference.onnx import RuntimeOptions, session

log = logging.getLogger("emostream.fusion")
INPUTS = ("text_embedding", "text_logits", "visual_embedding", "visual_confidence")


class FusionHead:
    """One fused decision per (text, visual) pair."""

    def __init__(self, sess: Any, meta: dict[str, Any], name: str = "") -> None:
        self.session = sess
        self.meta = meta
        self.name = name
        shapes = {i.name: i.shape for i in sess.get_inputs()}
        missing = [n for n in INPUTS if n not in shapes]
        if missing:
            raise UserError(
                f"fusion model {name}: inputs {', '.join(missing)} missing (see emostream/inference/fusion.py)"
            )
        dim, text_dim = shapes["visual_embedding"][-1], shapes["text_embedding"][-1]
        self.visual_dim = dim if isinstance(dim, int) else None
        self.text_dim = text_dim if isinstance(text_dim, int) else None
        self._warned = False

    @classmethod
    def from_dir(cls, folder: Path, options: RuntimeOptions | None = None) -> FusionHead:
        meta_path = folder / "meta.json"
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        return cls(session(folder / "model.onnx", options or RuntimeOptions.cpu(1)), meta, name=folder.name)

    def usable(self, visual_embedding: list[float] | None, text_embedding: list[float] | None = None) -> bool:
        """A visual embedding this head can take (present, right width, finite), beside a text embedding of
        the width it was trained on: a head trained on another text model's embeddings is not used (late
        fusion decides instead), and says so once."""
        if text_embedding is not None and self.text_dim is not None and len(text_embedding) != self.text_dim:
            if not self._warned:
                self._warned = True
                log.warning(
                    "fusion head reads another text model's embeddings: late fusion decides instead",
                    extra={"head": self.name, "head_text_dim": self.text_dim, "text_dim": len(text_embedding),
                           "fix": "retrain the fusion head on the installed text model (emostream train fusion)"},
                )  # fmt: skip
            return False
        if not visual_embedding:
            return False
        if self.visual_dim is not None and len(visual_embedding) != self.visual_dim:
            return False
        return bool(np.isfinite(np.asarray(visual_embedding, dtype=np.float32)).all())

    def fuse(
        self,
        text_embedding: list[float],
        text_logits: list[float],
        visual_embedding: list[float],
        visual_confidence: float,
    ) -> np.ndarray:
        feed = {
            "text_embedding": np.asarray([text_embedding], dtype=np.float32),
            "text_logits": np.asarray([text_logits], dtype=np.float32),
            "visual_embedding": np.asarray([visual_embedding], dtype=np.float32),
            "visual_confidence": np.asarray([visual_confidence], dtype=np.float32),
        }
        (logits,) = self.session.run(["logits"], feed)
        return np.asarray(logits[0], dtype=np.float32)


def load_fusion(name: str, options: RuntimeOptions, settings: Settings) -> FusionHead | None:
    """The installed fusion head (a store name or a folder), or None when there is none to use."""
    if not name:
        return None
    path = Path(name).expanduser()
    if not path.is_dir():
        from emostream.store import load

        try:
            path = load(name, settings)
        except UserError as exc:
            log.info("no fusion model, the text head decides alone", extra={"reason": str(exc)})
            return None
    if not (path / "model.onnx").is_file():
        log.info(
            "no fusion model, the text head decides alone", extra={"reason": f"{path}/model.onnx missing"}
        )
        return None
    return FusionHead.from_dir(path, options)
