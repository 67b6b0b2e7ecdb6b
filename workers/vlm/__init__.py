"""`vlm` worker: factual descriptions of the speaker's key frames, embedded for the visual student.

Backends (``vlm.backend``): ``landmarks`` (embedded default), ``openai`` (OpenAI-compatible server),
``transformers`` (local Qwen2.5-VL). See :mod:`emostream.workers.vlm.stage` for the stage.
"""

from __future__ import annotations

from emostream.workers.vlm.stage import VlmStage, create

__all__ = ["VlmStage", "create"]
