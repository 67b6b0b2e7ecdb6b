"""Lower a worker thread's CPU priority: work with slack yields the cores to the critical path.

In one process (embedded ``serve``) the face expert and Whisper share two cores during the VAD
hangover; the text is what the event waits for, the face has the fusion deadline's slack. On Linux the
nice value is per thread, so the face threads can ask for less CPU without touching the rest.
"""

from __future__ import annotations

import os
import threading


def lower_this_thread(by: int) -> None:
    """Raise the calling thread's nice value by ``by`` (0: unchanged; no-op where unsupported)."""
    if by <= 0 or not hasattr(os, "setpriority"):
        return
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + by))
    except OSError:  # a sandbox without the call: run at normal priority
        return
