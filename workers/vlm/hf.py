"""`transformers` describer: a local Qwen2.5-VL checkpoint (3B/7B-Instruct or any Qwen2.5-VL) in-process.

Optional backend (``pip install 'emostream[vlm]'``): torch and transformers are imported only when it
is created. ``vlm.transformers_model`` is a local directory, a model-store name, or a hub id that is
already in the local Hugging Face cache (never downloaded: ``local_files_only``). Runs on CUDA in
bfloat16 when a GPU is present, else on CPU in float32. Generation is greedy and runs in a worker
thread so the event loop keeps serving other messages.

The tokenizer and the image processor are used directly (the Qwen2_5_VLProcessor wrapper also builds
a video processor, which needs torchvision): the chat template's ``<|image_pad|>`` placeholder is
expanded to one token per merged patch, exactly as the processor does.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from emostream.errors import UserError
from emostream.schema import KeyFrames
from emostream.workers.vlm.base import ANNOTATOR_PROMPT, USER_PROMPT

if TYPE_CHECKING:
    from emostream.config import Settings


IMAGE_TOKEN = "<|image_pad|>"


def expand_image_tokens(text: str, token: str, counts: Sequence[int]) -> str:
    """Replace the i-th image placeholder by ``counts[i]`` copies (one per merged vision patch)."""
    parts = text.split(token)
    if len(parts) - 1 != len(counts):
        raise ValueError(f"prompt has {len(parts) - 1} image placeholders for {len(counts)} images")
    out = [parts[0]]
    for n, rest in zip(counts, parts[1:], strict=True):
        out.append(token * n + rest)
    return "".join(out)


def chat_template(model: str, tokenizer: Any) -> str | None:
    """The checkpoint's chat template: the tokenizer's, else chat_template.json/.jinja beside it."""
    if getattr(tokenizer, "chat_template", None):
        return None  # the tokenizer applies its own
    root = Path(model)
    jinja = root / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    js = root / "chat_template.json"
    if js.is_file():
        import json

        return str(json.loads(js.read_text(encoding="utf-8"))["chat_template"])
    raise UserError(f"Qwen2.5-VL checkpoint {model} has no chat template (chat_template.json)")


def resolve_model(name: str, settings: Settings) -> str:
    """Local directory for ``name`` (path, store name, or cached hub id passed through)."""
    if not name:
        raise UserError(
            "vlm.backend=transformers needs vlm.transformers_model: a local Qwen2.5-VL directory, "
            "a model-store name, or a hub id already in the Hugging Face cache"
        )
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    if "/" in name:
        return name
    from emostream.store import load

    return str(load(name, settings))


class TransformersDescriber:
    name: ClassVar[str] = "transformers"

    def __init__(self, model: str, device: str = "", max_new_tokens: int = 96) -> None:
        try:
            import torch
            from transformers import AutoImageProcessor, AutoTokenizer, Qwen2_5_VLForConditionalGeneration
        except ImportError:
            raise UserError(
                "vlm.backend=transformers needs torch and transformers: pip install 'emostream[vlm]'"
            ) from None
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model, local_files_only=True)
            self.images = AutoImageProcessor.from_pretrained(model, local_files_only=True, backend="pil")
            net = Qwen2_5_VLForConditionalGeneration.from_pretrained(
                model, dtype=dtype, local_files_only=True
            )
        except OSError as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UserError(f"cannot load Qwen2.5-VL from {model}: {first}") from None
        self.model = net.to(self.device).eval()  # type: ignore[arg-type]
        self.template = chat_template(model, self.tokenizer)
        self.image_token = str(getattr(self.tokenizer, "image_token", None) or IMAGE_TOKEN)
        self.max_new_tokens = max_new_tokens
        self._torch = torch
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> TransformersDescriber:
        return cls(resolve_model(settings.vlm.transformers_model, settings))

    def messages(self, n_images: int) -> list[dict[str, Any]]:
        content: list[dict[str, Any]] = [{"type": "image"} for _ in range(n_images)]
        content.append({"type": "text", "text": USER_PROMPT.format(n=n_images)})
        return [
            {"role": "system", "content": [{"type": "text", "text": ANNOTATOR_PROMPT}]},
            {"role": "user", "content": content},
        ]

    def generate(self, crops: Sequence[bytes]) -> str:
        from emostream.workers.face.image import decode_jpeg

        images = [img for img in (decode_jpeg(c) for c in crops) if img is not None]
        if not images:
            return ""
        prompt = self.tokenizer.apply_chat_template(
            self.messages(len(images)),
            chat_template=self.template,
            tokenize=False,
            add_generation_prompt=True,
        )
        vision = self.images(images=images, return_tensors="pt")
        merge = int(getattr(self.images, "merge_size", 2)) ** 2
        counts = [int(g.prod()) // merge for g in vision["image_grid_thw"]]
        text = expand_image_tokens(str(prompt), self.image_token, counts)
        enc = self.tokenizer([text], return_tensors="pt")
        inputs = {**enc, "pixel_values": vision["pixel_values"], "image_grid_thw": vision["image_grid_thw"]}
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        with self._lock, self._torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        new = out[:, inputs["input_ids"].shape[1] :]
        return str(self.tokenizer.batch_decode(new, skip_special_tokens=True)[0]).strip()

    async def describe(self, frames: KeyFrames, crops: Sequence[bytes]) -> str:
        return await asyncio.to_thread(self.generate, crops)

    async def close(self) -> None:
        return None
