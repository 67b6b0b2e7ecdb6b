"""A thread can give up CPU priority without touching the rest of the process (Linux: nice per thread)."""

from __future__ import annotations

import os
import threading

from emostream.runtime.niceness import lower_this_thread


def test_only_the_calling_thread_is_lowered() -> None:
    seen: dict[str, int] = {}

    def worker() -> None:
        lower_this_thread(5)
        seen["worker"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen["worker"] == min(19, before + 5)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before  # this thread unchanged
    lower_this_thread(0)  # zero changes nothing
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before
