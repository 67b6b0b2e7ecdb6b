"""The README's tour runs as written: every command of its code blocks exits 0 within a bound.

The blocks are read from README.md itself (so the test follows the text). Commands run in a scratch
folder (``tests/`` linked in, ``out/`` written there) with the venv's ``bin`` first on PATH, as after
``. .venv/bin/activate``. Where the README starts ``redis-server`` the test starts its own real one on
a free port (the README's port and password are swapped for the test's); commands that serve forever
(lines ending in ``&``, ``emostream worker``, ``emostream events``) run in the background, must still be
alive (or have exited 0) after a few seconds, and are stopped with SIGTERM at the end.

A block that keeps shell state (tokens in variables, ``serve &`` then ``kill %1``: the event API
block) runs as one ``bash`` script with ``set -euo pipefail``, exactly as written but for the port
(a free one instead of 8765, given to ``serve`` as ``EMOSTREAM_API_PORT``), within a bound.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from emostream.testing.redis_server import free_port, start_redis

ROOT = Path(__file__).parents[2]
BOUND_S = 300.0
"""Upper bound for one foreground command (a replay on two shared CPUs stays well under it)."""
SERVICE_GRACE_S = 4.0

pytestmark = pytest.mark.slow


SCRIPT_BOUND_S = 900.0
"""Upper bound for the event API block as a whole (models load, a two-speaker analysis, a 5 s bench)."""


def needs_a_shell(body: str) -> bool:
    """A block that keeps shell state between lines ($(...), VAR=, line continuations): the event API
    block, which starts ``emostream serve``; it runs as one script (:func:`shell_blocks`)."""
    return "$(" in body or "\\\n" in body


def _tour_bodies(readme: str) -> list[str]:
    """The code blocks between "## A 60-second tour" and the next "## " heading."""
    section = readme.split("## A 60-second tour", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```[a-z]*\n(.*?)```", section, re.S)


def shell_blocks(readme: str) -> list[str]:
    """The tour's blocks that run as one bash script each."""
    return [body for body in _tour_bodies(readme) if needs_a_shell(body)]


def tour_blocks(readme: str) -> list[list[str]]:
    """The shell lines of the tour's other blocks, run one command at a time."""
    blocks: list[list[str]] = []
    for body in _tour_bodies(readme):
        if needs_a_shell(body):
            continue
        lines = []
        for raw in body.splitlines():
            line = re.sub(r"\s+#.*$", "", raw).strip()  # trailing comments
            if line and not line.startswith("#"):
                lines.append(line)
        blocks.append(lines)
    return blocks


def commands(line: str) -> list[tuple[str, bool]]:
    """Split ``a &   b &`` into (command, background) pairs (``&&`` is left alone)."""
    parts = re.split(r"(?<!&)&(?!&)", line)
    out = [(p.strip(), i < len(parts) - 1) for i, p in enumerate(parts) if p.strip()]
    return [(cmd, bg or cmd.startswith(("emostream worker", "emostream events"))) for cmd, bg in out]


def test_tour_blocks_are_found() -> None:
    blocks = tour_blocks((ROOT / "README.md").read_text())
    flat = [c for block in blocks for line in block for c, _ in commands(line)]
    assert len(blocks) >= 2 and any(c.startswith("emostream replay meld") for c in flat), flat
    assert commands("emostream worker asr &   emostream worker fec &") == [
        ("emostream worker asr", True),
        ("emostream worker fec", True),
    ]


def test_readme_tour_runs_as_written(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    (tmp_path / "tests").symlink_to(ROOT / "tests")
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = str(ROOT)
    env.pop("EMOSTREAM_BUS_URL", None)
    services: list[tuple[str, subprocess.Popen[bytes]]] = []
    redis_port = free_port()
    metrics_port = free_port()

    def local(cmd: str) -> str:
        return cmd.replace("6379", str(redis_port)).replace("9101", str(metrics_port))

    try:
        for block in tour_blocks(readme):
            for line in block:
                if line.startswith((". ", "source ")):
                    continue  # the venv is already first on PATH
                for cmd, background in commands(line):
                    cmd = local(cmd)
                    if cmd.startswith("export "):
                        key, _, value = cmd[len("export ") :].partition("=")
                        env[key] = value
                        continue
                    if cmd.startswith("redis-server"):
                        argv = shlex.split(cmd)
                        extra = argv[argv.index("--requirepass") : argv.index("--requirepass") + 2]
                        services.append((cmd, start_redis(redis_port, *extra)))
                        continue
                    if background:
                        log = (tmp_path / f"service{len(services)}.log").open("wb")
                        proc = subprocess.Popen(
                            cmd, shell=True, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=log, start_new_session=True,
                        )  # fmt: skip
                        services.append((cmd, proc))
                        continue
                    started = time.monotonic()
                    done = subprocess.run(
                        cmd, shell=True, cwd=tmp_path, env=env, capture_output=True, timeout=BOUND_S
                    )
                    took = time.monotonic() - started
                    assert done.returncode == 0, f"{cmd!r} exited {done.returncode}: {done.stderr[-2000:]!r}"
                    assert "Traceback" not in done.stderr.decode(), cmd
                    print(f"{took:6.1f} s  {cmd}")
        time.sleep(SERVICE_GRACE_S)
        for i, (cmd, proc) in enumerate(services):
            code = proc.poll()
            log_file = tmp_path / f"service{i}.log"
            err = log_file.read_text()[-2000:] if log_file.is_file() else ""
            assert code in (None, 0), f"{cmd!r} died with {code}: {err}"
        assert (tmp_path / "out" / "replay" / "report.md").is_file()
    finally:
        for _, proc in reversed(services):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)  # the shell and the command it started
                except (ProcessLookupError, PermissionError):
                    proc.terminate()  # not a group leader (the test's own redis-server)
        for _, proc in services:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_event_api_block_runs_as_one_script(tmp_path: Path) -> None:
    """serve, token, events --url, a POST, analyze and bench events, as a user pastes them."""
    (block,) = shell_blocks((ROOT / "README.md").read_text())
    assert "emostream serve &" in block and "emostream analyze" in block and "kill %1 %2" in block
    port = free_port()
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = str(ROOT)
    env["EMOSTREAM_API_PORT"] = str(port)
    for key in ("EMOSTREAM_BUS_URL", "EMOSTREAM_API_SECRET"):
        env.pop(key, None)
    out_path = tmp_path / "tour.out"
    with out_path.open("wb") as out:
        proc = subprocess.Popen(
            ["bash", "-c", "set -euo pipefail\n" + block.replace("8765", str(port))],
            cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            code = proc.wait(SCRIPT_BOUND_S)
        except subprocess.TimeoutExpired:
            code = None
        finally:  # serve and the subscriber, should the script have stopped before its `kill`
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(20)
    text = out_path.read_text(errors="replace")
    assert code == 0, f"the event API block exited {code} (bound {SCRIPT_BOUND_S:.0f} s): {text[-3000:]}"
    assert "Traceback" not in text, text[-3000:]
    # background writers share the terminal: curl's body and its "\n" are two writes, and the subscriber's
    # event line can land between them, so read every JSON object of each line, not one per line
    objects = [o for ln in text.splitlines() for o in _json_objects(ln)]
    posted = [o for o in objects if o.get("id") == "e0"]
    assert posted and posted[0]["speaker"] == "alice", text[-3000:]  # `events --url` got the POST
    bench = [o for o in objects if "subscribers" in o]
    assert bench and bench[0]["subscribers"] == 50 and bench[0]["lost"] >= 0, text[-3000:]
    assert "alice" in text and "bob" in text  # analyze's events and per-speaker summary


def _json_objects(line: str) -> list[dict[str, Any]]:
    """The JSON objects written one after another on ``line`` (anything else ends the scan)."""
    decoder, found, i = json.JSONDecoder(), [], line.find("{")
    while 0 <= i < len(line):
        try:
            obj, end = decoder.raw_decode(line, i)
        except json.JSONDecodeError:
            break
        if isinstance(obj, dict):
            found.append(obj)
        i = line.find("{", end)
    return found
