"""The torch-free sentence encoder (our INT8 ONNX export of all-MiniLM-L6-v2 from the store)."""

from __future__ import annotations

import numpy as np

from emostream.inference.encoder import SentenceEncoder, mean_pool_normalize, store_name


def test_unit_vectors_and_meaning(encoder: SentenceEncoder) -> None:
    text = [
        "The eyebrows are rising while the jaw drops open.",
        "The brows lift and the mouth falls open.",
        "The stock market closed lower on Tuesday.",
    ]
    vecs = encoder.encode(text)
    assert vecs.shape == (3, 384) and encoder.dim == 384
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    near, far = float(vecs[0] @ vecs[1]), float(vecs[0] @ vecs[2])
    assert near > 0.5 and far < 0.2 and near - far > 0.4


def test_batching_and_padding_do_not_change_vectors(encoder: SentenceEncoder) -> None:
    short, long = (
        "Eyes closing.",
        "The head is turning toward the right of the frame while the gaze is lowering.",
    )
    batch = encoder.encode([short, long])
    alone = np.concatenate([encoder.encode([short]), encoder.encode([long])])
    assert np.allclose(batch, alone, atol=1e-4)
    assert encoder.encode([]).shape == (0, 384)
    assert encoder.encode(["word " * 600]).shape == (1, 384)  # truncated, not an error


def test_pooling_ignores_padding() -> None:
    hidden = np.asarray([[[1.0, 0.0], [3.0, 0.0], [100.0, 100.0]]], np.float32)
    out = mean_pool_normalize(hidden, np.asarray([[1, 1, 0]]))
    assert np.allclose(out, [[1.0, 0.0]])
    assert store_name("all-MiniLM-L6-v2") == "all-MiniLM-L6-v2-onnx"
    assert store_name("all-MiniLM-L6-v2-onnx") == "all-MiniLM-L6-v2-onnx"
