"""Structured logs on stdlib logging: one line per record, ``key=value`` or JSON.

Fields go in ``extra``: ``log.warning("handler failed", extra={"stage": "asr", "id": "1-0"})`` prints
``ts=... level=warning logger=emostream.runtime.stage msg="handler failed" stage=asr id=1-0``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


def fields(record: logging.LogRecord) -> dict[str, Any]:
    """The record as an ordered mapping: time, level, logger, msg, then the extra fields."""
    out: dict[str, Any] = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
        "level": record.levelname.lower(),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    for key, value in vars(record).items():
        if key not in _STANDARD and not key.startswith("_"):
            out[key] = value
    if record.exc_info and record.exc_info[0] is not None:
        out.setdefault("error", f"{record.exc_info[0].__name__}: {record.exc_info[1]}")
        tb = record.exc_info[2]
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        if tb is not None:  # where it was raised, instead of a multi-line traceback
            out["where"] = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}"
    return out


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{k}={_kv(v)}" for k, v in fields(record).items())


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(fields(record), default=str)


def _kv(value: Any) -> str:
    text = str(value)
    if not text or any(c in text for c in ' "=\n\t'):
        return json.dumps(text)
    return text


def setup_logging(level: str = "info", fmt: str = "kv") -> None:
    """Send emostream's logs to stderr as structured lines (idempotent)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    root = logging.getLogger("emostream")
    for old in list(root.handlers):
        if getattr(old, "_emostream", False):
            root.removeHandler(old)
    handler._emostream = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    root.propagate = False
