"""The text teacher: a sentence encoder over the prompt, read at the [MASK] token, plus a linear head.

Saved as a Hugging Face folder the runtime helper can export to ONNX without this package's training code:
``config.json`` + ``model.safetensors`` (the encoder, vocabulary resized for the speaker tokens),
``tokenizer.json`` (speaker tokens included, padding/truncation off), ``head.safetensors``
(``weight`` [7, hidden], ``bias`` [7]) and ``meta.json`` (labels, prompt, pooling, head, max_tokens).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from emostream.errors import UserError
from emostream.inference.prompt import PROMPT_FORMAT, SPEAKER_TOKENS, SPECIAL_TOKENS
from emostream.schema import EMOTIONS


class TextTeacher(nn.Module):
    """Encoder + dropout + Linear over the final hidden state of the [MASK] token."""

    def __init__(self, encoder: nn.Module, n_classes: int = len(EMOTIONS), dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = encoder
        hidden = int(encoder.config.hidden_size)  # type: ignore[union-attr,arg-type]
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, n_classes)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, mask_pos: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (h, logits): h is the [MASK] representation [B, hidden], logits [B, n_classes]."""
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        h = out[torch.arange(out.shape[0], device=out.device), mask_pos]
        return h, self.head(self.dropout(h))


def load_tokenizer(path: str | Path) -> Any:
    """The encoder's fast tokenizer with the speaker tokens added and its own padding/truncation off."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path))
    missing = [t for t in SPEAKER_TOKENS if t not in tok.get_vocab()]
    if missing:
        tok.add_special_tokens({"additional_special_tokens": list(SPEAKER_TOKENS)})
    tok.backend_tokenizer.no_padding()
    tok.backend_tokenizer.no_truncation()
    if tok.mask_token not in SPECIAL_TOKENS["mask"]:
        raise ValueError(
            f"{path}: mask token is {tok.mask_token!r}, expected one of {SPECIAL_TOKENS['mask']}"
        )
    return tok


def build_teacher(
    encoder_path: str | Path, tokenizer: Any, dropout: float = 0.1, layers: int = 0
) -> TextTeacher:
    """Load the pretrained encoder, grow its vocabulary for the speaker tokens and wrap it.

    A new speaker token <sK> starts as the mean of the embeddings of "speaker" and the digit K, so the
    tokens are distinct and in-distribution from the first step. ``layers`` > 0 keeps only the lowest
    ``layers`` transformer layers: a shallow student cut from a larger encoder keeps its embeddings and
    its first layers' weights (the upper layers are not loaded at all).
    """
    from transformers import AutoConfig, AutoModel
    from transformers.utils import logging as hf_logging

    config = AutoConfig.from_pretrained(str(encoder_path))
    if layers:
        if not 0 < layers <= config.num_hidden_layers:
            raise UserError(f"{encoder_path}: has {config.num_hidden_layers} layers, cannot keep {layers}")
        config.num_hidden_layers = layers
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the cut layers are reported as unexpected keys: expected here
    try:
        encoder = AutoModel.from_pretrained(str(encoder_path), config=config)
    finally:
        hf_logging.set_verbosity(verbosity)
    old = encoder.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > old:
        encoder.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        emb = encoder.get_input_embeddings().weight
        with torch.no_grad():
            base = emb[tokenizer.convert_tokens_to_ids("speaker")]
            for k, tok in enumerate(SPEAKER_TOKENS):
                digit = emb[tokenizer.convert_tokens_to_ids(str(k))]
                emb[tokenizer.convert_tokens_to_ids(tok)] = 0.5 * (base + digit)
    return TextTeacher(encoder, dropout=dropout)


def meta_for(max_tokens: int, hidden: int, **extra: Any) -> dict[str, Any]:
    """meta.json content the runtime relies on."""
    return {
        "labels": list(EMOTIONS),
        "max_tokens": max_tokens,
        "prompt_format": PROMPT_FORMAT,
        "speaker_tokens": list(SPEAKER_TOKENS),
        "input_format": "[CLS] <sK> utt ... <sK> current now <sK> feels [MASK] [SEP], history "
        "left-truncated at token level (emostream.inference.prompt.PromptBuilder)",
        "pooling": "final hidden state of the [MASK] token",
        "head": {"type": "linear", "in": hidden, "out": len(EMOTIONS), "file": "head.safetensors"},
        "encoder_inputs": ["input_ids", "attention_mask"],
        **extra,
    }


def save_hf(model: TextTeacher, tokenizer: Any, out: str | Path, meta: dict[str, Any]) -> Path:
    """Write the HF folder described in the module docstring."""
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.encoder.save_pretrained(str(out))  # type: ignore[operator]
    tokenizer.save_pretrained(str(out))
    tokenizer.backend_tokenizer.save(str(out / "tokenizer.json"))
    head = {k: v.detach().contiguous().cpu() for k, v in model.head.state_dict().items()}
    save_file(head, str(out / "head.safetensors"))
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out


def load_hf(path: str | Path) -> tuple[TextTeacher, Any, dict[str, Any]]:
    """Load a folder written by :func:`save_hf` (eval mode)."""
    from safetensors.torch import load_file
    from transformers import AutoModel

    path = Path(path)
    tok = load_tokenizer(path)
    model = TextTeacher(AutoModel.from_pretrained(str(path)), dropout=0.0)
    model.head.load_state_dict(load_file(str(path / "head.safetensors")))
    meta = json.loads((path / "meta.json").read_text())
    return model.eval(), tok, meta
