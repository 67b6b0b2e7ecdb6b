"""Keep native libraries' start-up chatter off the user's terminal without losing anything else.

MediaPipe and LiteRT print absl/TFLite lines ("W0000 ... inference_feedback_manager.cc ...",
"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.") straight to file descriptor 2 when a model
is loaded and first run; no environment variable or Python logger controls them (upstream
google-ai-edge/mediapipe#5737). :func:`quiet_native_stderr` points fd 2 at a temporary file for that
moment, then writes back every captured line that is not known noise, so a real error printed by
another thread in the meantime still reaches stderr.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

NOISE = re.compile(
    r"^(WARNING: (All log messages|Logging) before (absl::InitializeLog|InitGoogle)"
    r"|[IW]0000 \d\d:\d\d:\S+ +\d+ \S+\.cc:\d+\]"
    r"|INFO: Created TensorFlow Lite \S+ delegate for CPU\.)"
)
"""Lines dropped: absl's pre-init banner, INFO/WARNING lines from native .cc files, TFLite's delegate note."""

_lock = threading.Lock()


@contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Drop native start-up noise printed inside the block; everything else is replayed to stderr."""
    with _lock, tempfile.TemporaryFile() as sink:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            kept = [ln for ln in sink.read().decode(errors="replace").splitlines() if not NOISE.match(ln)]
            if kept:
                print("\n".join(kept), file=sys.stderr, flush=True)
