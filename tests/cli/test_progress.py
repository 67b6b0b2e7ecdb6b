"""Long commands show a progress bar on a terminal and nothing extra when piped.

Each command runs twice as a real subprocess: with stdout/stderr on pipes (as under ``| jq`` or in
CI), where stderr must carry no bar and stdout exactly the JSON lines; and with both on a
pseudo-terminal (``pty``), where the bar's description must appear and the JSON line still comes out.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
COMMANDS = {
    "bench bus": (
        ["bench", "bus", "--bus", "memory", "--messages", "400", "--seconds", "0.5", "--json"],
        "bench bus memory",
    ),
    "bench events": (
        ["bench", "events", "--subscribers", "2", "--rate", "200", "--seconds", "1", "--json"],
        "bench events",
    ),
}
BAR_MARKS = ("━", "\x1b[?25l")  # rich's bar glyph, and its hide-cursor sequence


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_TERMINAL", "NO_COLOR", "TTY_COMPATIBLE")}
    return {**env, "PYTHONPATH": str(ROOT), "TERM": "xterm-256color", "COLUMNS": "120"}


def _on_a_pty(argv: list[str], timeout_s: float = 120, stdout: int | None = None) -> tuple[int, str]:
    """Run with stdin/stderr (and stdout, unless ``stdout`` is given) on one pseudo-terminal (120x30);
    everything it wrote there, and its status."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
    out_fd = follower if stdout is None else stdout
    proc = subprocess.Popen(argv, stdin=follower, stdout=out_fd, stderr=follower, env=_env())
    os.close(follower)
    out = b""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    return proc.wait(max(1.0, deadline - time.monotonic())), out.decode(errors="replace")


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_progress_only_on_a_terminal(name: str) -> None:
    args, description = COMMANDS[name]
    argv = [sys.executable, "-m", "emostream", *args]

    piped = subprocess.run(argv, capture_output=True, env=_env(), timeout=120, check=False)
    assert piped.returncode == 0, piped.stderr[-2000:]
    err = piped.stderr.decode()
    assert description not in err and not any(m in err for m in BAR_MARKS), err[-2000:]
    lines = piped.stdout.decode().splitlines()
    assert len(lines) == 1 and isinstance(json.loads(lines[0]), dict), lines

    rc, screen = _on_a_pty(argv)
    assert rc == 0, screen[-2000:]
    assert description in screen and "━" in screen, screen[-2000:]
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "\n", screen.replace("\r", "\n"))  # cursor/colour codes
    results = [x for x in plain.splitlines() if x.startswith("{")]
    assert len(results) == 1 and isinstance(json.loads(results[0]), dict), screen[-2000:]


def test_results_stay_on_stdout_when_only_stderr_is_a_terminal(tmp_path: Path) -> None:
    """``bench ... --json > file`` typed at a terminal: the bar shows, the file gets the JSON line."""
    args, description = COMMANDS["bench bus"]
    with (tmp_path / "out.jsonl").open("wb") as out:
        rc, screen = _on_a_pty([sys.executable, "-m", "emostream", *args], stdout=out.fileno())
    assert rc == 0 and description in screen, screen[-2000:]
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["bus"] == "memory", lines
    assert '"messages_per_s"' not in screen
