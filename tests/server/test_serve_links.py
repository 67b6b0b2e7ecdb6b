"""`emostream serve` without a configured secret prints working links: the room page link it prints
opens the page, its publish token may post into room demo and its watch token may read the room."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from urllib.parse import parse_qs, urlparse

from emostream.testing.redis_server import free_port


def test_serve_prints_a_working_room_page_link() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMOSTREAM_")}
    cmd = [sys.executable, "-m", "emostream", "serve", "--stages", "none", "--port", str(free_port())]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env, text=True)
    try:
        assert proc.stderr is not None
        link, deadline = "", time.monotonic() + 60
        while not link and time.monotonic() < deadline:
            line = proc.stderr.readline()
            assert line, "serve exited before printing its links"
            if m := re.search(r"room page demo:\s+(\S+)", line):
                link = m.group(1)
        url = urlparse(link)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        base = f"{url.scheme}://{url.netloc}"
        with urllib.request.urlopen(link, timeout=10) as page:
            assert page.status == 200 and b"room.js" in page.read()
        event = {"room": "demo", "speaker": "you", "utterance": 0, "id": "e0", "start": 0, "end": 1}
        event |= {"label": "joy", "probabilities": {"joy": 0.9}, "confidence": 0.9, "modalities": ["text"]}
        post = urllib.request.Request(
            f"{base}/v1/rooms/demo/events",
            data=json.dumps(event).encode(),
            headers={"Authorization": f"Bearer {query['token']}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(post, timeout=10) as r:
            assert json.load(r) == {"accepted": 1}
        read = f"{base}/v1/rooms/demo/events?since=0-0&token={query['watch']}"
        deadline = time.monotonic() + 10
        while True:
            with urllib.request.urlopen(read, timeout=10) as r:
                got = json.load(r)
            if got["events"] or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert [e["event"]["speaker"] for e in got["events"]] == ["you"], got
    finally:
        proc.terminate()
        assert proc.wait(30) == 0
