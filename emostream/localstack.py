"""The compose topology as local processes, for machines without docker (``emostream up``).

docker-compose.yml stays the one definition: this reads it, starts ``redis-server`` with the compose
Redis arguments (AOF included) on a loopback port with its data in a local folder, and one
``emostream ...`` process per service replica with the service's environment. Compose's network names
become loopback addresses: ``@redis:6379`` -> ``@127.0.0.1:<port>``, ``--host 0.0.0.0`` -> 127.0.0.1,
and each worker replica gets its own metrics port. ``restart: unless-stopped`` is honoured a few times.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emostream.errors import UserError

VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
MAX_RESTARTS = 3
EMOSTREAM_COMMANDS = ("serve", "worker")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}``; ``$$`` is a literal ``$``."""

    def sub(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        if env.get(name):
            return env[name]
        if op and op.endswith("?"):
            raise UserError(f"compose variable {name} is not set: {arg}")
        return arg if op else ""

    return VAR.sub(sub, text.replace("$$", "\0")).replace("\0", "$")


def read_env_file(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.strip() and not line.lstrip().startswith("#") and "=" in line:
                key, _, value = line.partition("=")
                out[key.strip()] = value.strip()
    return out


def load_compose(path: Path, env: dict[str, str]) -> dict[str, Any]:
    import yaml

    if not path.is_file():
        raise UserError(f"compose file {path} not found: run from the repo root or pass --compose FILE")
    data: dict[str, Any] = yaml.safe_load(interpolate(path.read_text(), env))
    return data


@dataclass
class Proc:
    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    restart: bool
    popen: subprocess.Popen[bytes] | None = None
    restarts: int = 0

    def start(self) -> None:
        out = self.log.open("ab")
        self.popen = subprocess.Popen(self.argv, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        out.close()

    def tail(self, n: int = 1500) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""


@dataclass
class Stack:
    """A started topology: ``redis_url`` (with password), ``api_url`` (when an api runs), the processes."""

    redis_url: str
    api_url: str
    redis: Proc
    procs: list[Proc]
    metrics_ports: dict[str, int] = field(default_factory=dict)

    def check(self) -> str:
        """Restart crashed processes (``restart:`` policy, a few times); one line about any that gave up."""
        for p in [self.redis, *self.procs]:
            assert p.popen is not None
            code = p.popen.poll()
            if code is None:
                continue
            if p.restart and p.restarts < MAX_RESTARTS:
                p.restarts += 1
                p.start()
                continue
            return f"{p.name} exited {code} (log {p.log}): {p.tail(400)}"
        return ""

    def stop(self, timeout: float = 30.0) -> dict[str, int | None]:
        """SIGTERM the emostream processes (they drain), then Redis; the exit codes by name."""
        codes: dict[str, int | None] = {}
        for group in (self.procs, [self.redis]):
            for p in group:
                if p.popen is not None and p.popen.poll() is None:
                    p.popen.send_signal(signal.SIGTERM)
            for p in group:
                assert p.popen is not None
                try:
                    codes[p.name] = p.popen.wait(timeout)
                except subprocess.TimeoutExpired:
                    p.popen.kill()
                    codes[p.name] = None
        return codes


def start(
    compose_file: Path,
    *,
    data_dir: Path,
    scale: dict[str, int] | None = None,
    services: list[str] | None = None,
    redis_port: int = 0,
    api_port: int = 0,
    env: dict[str, str] | None = None,
) -> Stack:
    """Start Redis and the emostream services of ``compose_file`` (``services``: a subset, in file order)."""
    base = dict(os.environ if env is None else env)
    compose_env = {**read_env_file(compose_file.parent / ".env"), **base}
    compose_env.setdefault("REDIS_PASSWORD", secrets.token_hex(16))
    compose_env.setdefault("EMOSTREAM_API_SECRET", secrets.token_urlsafe(32))
    compose = load_compose(compose_file, compose_env)
    all_services: dict[str, dict[str, Any]] = compose["services"]
    runnable = [
        n
        for n, s in all_services.items()
        if not s.get("profiles") and (s.get("command") or [""])[0] in EMOSTREAM_COMMANDS
    ]
    chosen = runnable if services is None else [n for n in runnable if n in services]
    unknown = sorted(set(services or []) - set(runnable)) + sorted(set(scale or {}) - set(runnable))
    if unknown:
        raise UserError(
            f"no runnable service {unknown[0]!r} in {compose_file}: choose from {', '.join(runnable)}"
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    redis_port = redis_port or free_port()
    redis = _redis_proc(all_services["redis"], redis_port, data_dir)
    redis.start()
    password = compose_env["REDIS_PASSWORD"]
    _wait_redis(redis, redis_port, password)
    local = f"127.0.0.1:{redis_port}"
    api_port = api_port or free_port()
    procs: list[Proc] = []
    metrics: dict[str, int] = {}
    api_url = ""
    for name in chosen:
        svc = all_services[name]
        for i in range(1, (scale or {}).get(name, 1) + 1):
            pname = f"{name}-{i}"
            penv = {**base, **{k: _local(str(v), local) for k, v in (svc.get("environment") or {}).items()}}
            argv = [_local(a, local) for a in svc["command"]]
            if argv[0] == "serve":
                argv = _set_opt(_set_opt(argv, "--host", "127.0.0.1"), "--port", str(api_port))
                api_url = f"http://127.0.0.1:{api_port}"
            else:
                metrics[pname] = free_port()
                penv["EMOSTREAM_STAGE_METRICS_PORT"] = str(metrics[pname])
                penv["EMOSTREAM_STAGE_METRICS_HOST"] = "127.0.0.1"
                argv += ["--consumer", pname]
            restart = str(svc.get("restart", "no")) not in ("no", "")
            procs.append(
                Proc(
                    pname,
                    [sys.executable, "-m", "emostream", *argv],
                    penv,
                    data_dir / f"{pname}.log",
                    restart,
                )
            )
    for p in procs:
        p.start()
    return Stack(f"redis://:{password}@{local}/0", api_url, redis, procs, metrics)


def _local(value: str, hostport: str) -> str:
    return value.replace("@redis:6379", f"@{hostport}")


def _set_opt(argv: list[str], opt: str, value: str) -> list[str]:
    if opt in argv:
        argv = list(argv)
        argv[argv.index(opt) + 1] = value
        return argv
    return [*argv, opt, value]


def _redis_proc(svc: dict[str, Any], port: int, data_dir: Path) -> Proc:
    exe = shutil.which("redis-server")
    if exe is None:
        raise UserError("redis-server is not installed: apt-get install redis-server (or `make apt`)")
    args = [str(a) for a in svc["command"][1:]]
    argv = [exe, *args, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir)]
    return Proc("redis", argv, {}, data_dir / "redis.log", restart=False)


def _wait_redis(proc: Proc, port: int, password: str, timeout: float = 10.0) -> None:
    import redis as redis_client

    client = redis_client.Redis(host="127.0.0.1", port=port, password=password)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                client.ping()
                return
            except redis_client.ConnectionError:
                assert proc.popen is not None
                if proc.popen.poll() is not None or time.monotonic() > deadline:
                    raise UserError(f"redis-server did not start on port {port}: {proc.tail(400)}") from None
                time.sleep(0.05)
    finally:
        client.close()
