"""docs/events.md shows the EmotionEvent JSON Schema subscribers get: it must be the one the code emits."""

from __future__ import annotations

import json
import re
from pathlib import Path

import msgspec

from emostream.schema import EmotionEvent

DOC = Path(__file__).resolve().parents[2] / "docs" / "events.md"


def test_the_documented_schema_is_the_emitted_one() -> None:
    text = DOC.read_text()
    after = text.split("JSON Schema (`emostream schema events`):", 1)[1]
    block = re.search(r"```json\n(.*?)\n```", after, re.S)
    assert block is not None, "docs/events.md lost its schema block"
    documented = json.loads(block.group(1))
    emitted = msgspec.json.schema(EmotionEvent)
    assert documented == emitted, "docs/events.md is stale: paste `emostream schema events` into it"
    statuses = documented["$defs"]["EmotionEvent"]["properties"]["visual_status"]["enum"]
    assert "expired" in statuses
